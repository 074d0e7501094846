"""The audit: sample the end of each of a service's files, judge the records, and decide the service's status
(the statuses and their order: :mod:`mlops_logging.check`).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from pathlib import Path

from .._errors import describe_os_error
from ._config import CheckSettings, duration_text
from ._files import STREAMS, LogPath, NotAuditable, list_service_files, read_tail
from ._records import LossSeen, judge_lines, parse_time
from ._report import FileReport, Finding, Report, ServiceReport, Status

__all__ = ["audit", "audit_service", "sample_file_lines"]


def sample_file_lines(data: bytes, offset: int, max_lines: int) -> tuple[list[bytes], bool]:
    """Split a tail window into whole lines (the last ``max_lines``); also say whether the window lies inside one
    line longer than itself (a window that starts mid-file drops its first, cut, line)."""
    parts = data.split(b"\n")
    rest = parts.pop()  # after the last newline: a last line without one ("" when the data ends with a newline)
    if offset > 0:
        if not parts or (len(parts) == 1 and not rest):
            return [], True  # no line starts inside the window: the last line is longer than the window
        parts.pop(0)
    if rest:
        parts.append(rest)
    return parts[-max_lines:], False


def _sample_family(files: list[LogPath], settings: CheckSettings, now: float) -> list[FileReport]:
    """Sample one stream: the current file's tail, then older files until the line/byte budget is spent."""
    lines_left, bytes_left = settings.sample_lines, settings.sample_bytes
    reports = []
    for lp in files:
        report = FileReport(lp)
        reports.append(report)
        if lp.kind == "symlink":
            report.problem = "is a symlink (not followed: a log file is never a link)"
            continue
        if lp.kind == "special":
            report.problem = "is not a regular file (a FIFO, socket, device or directory)"
            continue
        if lp.compressed or lines_left <= 0 or bytes_left <= 0:
            continue  # compressed rotated files are listed, not sampled (no seeking into gzip)
        try:
            tail = read_tail(lp.path, bytes_left)
        except NotAuditable as exc:
            report.problem = str(exc)
            continue
        report.log, report.sampled = dataclasses.replace(lp, size=tail.size, mtime=tail.mtime), True
        lines, too_long = sample_file_lines(tail.data, tail.offset, lines_left)
        report.sample = judge_lines(lines, lp.name, now)
        if too_long:
            report.sample.bad_line(f"a line longer than the sample window ({settings.sample_bytes} bytes): not a "
                                   "record any writer of this package makes", tail.data[-160:].decode("utf-8",
                                                                                                      "replace"))
        lines_left -= max(len(lines), 1)
        bytes_left -= len(tail.data)
    return reports


def _loss_time(loss: LossSeen, now: float) -> float | None:
    """When a loss ended: its ``lost_until``, else the time of the record that reported it."""
    until = parse_time(loss.lost_until, now, anywhere=False) if loss.lost_until else None
    return until if until is not None else loss.time


def audit_service(service: str, directory: Path, settings: CheckSettings, *, now: float | None = None,
                  required: bool = True) -> ServiceReport:
    """Audit one service's directory (see the module docstring for the statuses)."""
    now = time.time() if now is None else now
    listing = list_service_files(directory, service)
    report = ServiceReport(service, Status.MISSING, "", directory, required)
    if listing.exists and listing.error:
        report.status, report.reason = Status.INCOMPLETE, f"directory {directory} {listing.error}"
        report.findings.append(Finding(report.reason, True))
        return _unused(report, required)
    if not listing.files:
        if listing.error:
            report.reason = f"{directory} {listing.error}"
        elif not listing.exists:
            report.reason = f"no directory {directory}"
        else:
            report.reason = (f"no log file of {service} in {directory} "
                             f"({service}.log or {service}.stdout.log/.stderr.log)")
        return _unused(report, required)

    for stream in STREAMS:
        family = listing.family(stream)
        if family:
            report.files.extend(_sample_family(family, settings, now))
    for f in report.files:
        report.sample.add(f.sample)
        if f.problem:
            report.findings.append(Finding(f"{f.path.name} {f.problem}", True, f.path.name))
    report.newest_write = max(f.mtime for f in report.files)
    report.age = max(0.0, now - report.newest_write)

    below, recent_losses = _note_findings(report, listing.others or [], settings, now)
    _decide(report, settings, below, recent_losses)
    return _unused(report, required)


def _note_findings(report: ServiceReport, others: list[str], settings: CheckSettings,
                   now: float) -> tuple[bool, list[LossSeen]]:
    """Add the sample's findings to ``report``; return (too few complete records, losses within --max-age)."""
    sample = report.sample
    share = report.complete_share
    below = share is not None and share < settings.min_complete
    for reason, count in sample.problems.most_common():
        report.findings.append(Finding(f"{count} of {sample.records} sampled records: {reason} "
                                       f"(e.g. {sample.examples.get(reason, '')!r})", below))
    recent_losses = []
    for loss in sample.losses:
        when = _loss_time(loss, now)
        recent = when is None or now - when <= settings.max_age
        if recent:
            recent_losses.append(loss)
        span = f" between {loss.lost_since} and {loss.lost_until}" if loss.lost_since else ""
        report.findings.append(Finding(
            f"{loss.file}: {loss.logger} recorded {loss.lost_records} lost lines"
            f"{f' ({loss.lost_bytes} bytes)' if loss.lost_bytes else ''}{span}"
            f"{f': {loss.error}' if loss.error else ''}{'' if recent else ' (older than --max-age)'}",
            recent, loss.file))
    if sample.passthrough_dropped_bytes:
        report.findings.append(Finding(
            f"logwrap's passthrough fell behind: {sample.passthrough_dropped_bytes} bytes not passed to the console "
            "(the log file kept every line)", False))
    if others:
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        report.findings.append(Finding(f"other files in {report.directory}, not audited: {shown}", False))
    return below, recent_losses


def _decide(report: ServiceReport, settings: CheckSettings, below: bool, recent_losses: list[LossSeen]) -> None:
    """Set the status and its one-line reason: the first of EMPTY, STALE, INCOMPLETE that applies, else OK."""
    sample, age = report.sample, report.age or 0.0
    unreadable = [f for f in report.files if f.problem]
    sampled = any(f.sampled for f in report.files)
    if sample.records == 0 and sampled and not unreadable:
        report.status = Status.EMPTY
        report.reason = f"{len(report.files)} log file(s), no record in them"
    elif age > settings.max_age:
        report.status = Status.STALE
        report.reason = f"newest write {duration_text(age)} ago (--max-age {duration_text(settings.max_age)})"
    elif unreadable or below or recent_losses or not sampled:
        report.status = Status.INCOMPLETE
        why = []
        if unreadable:
            why.append(f"{len(unreadable)} file(s) cannot be audited")
        elif not sampled:
            why.append("only compressed rotated files: no current log to sample")
        if below:
            why.append(f"{sample.complete}/{sample.records} sampled records complete "
                       f"(< {settings.min_complete:.0%})")
        if recent_losses:
            why.append(f"{sum(loss.lost_records for loss in recent_losses)} lines lost")
        report.reason = "; ".join(why)
    else:
        report.status = Status.OK
        report.reason = (f"{sample.records} records sampled, {report.complete_share:.0%} complete, newest write "
                         f"{duration_text(age)} ago")


def _unused(report: ServiceReport, required: bool) -> ServiceReport:
    if not required:
        report.reason = f"declared unused (was {report.status}: {report.reason})"
        report.status = Status.UNUSED
    return report


def audit(settings: CheckSettings, *, now: float | None = None) -> Report:
    """Audit every service of ``settings`` under its root."""
    now = time.time() if now is None else now
    root = settings.root
    report = Report(root=root, settings=settings, generated_at=now, services=[])
    try:
        what = "" if stat.S_ISDIR(os.stat(root).st_mode) else "is not a directory"
    except FileNotFoundError:
        what = "does not exist"
    except OSError as exc:
        what = f"cannot be reached ({describe_os_error(exc)})"
    if what:
        report.findings.append(Finding(f"log root {root} {what} (set --root or MLOPS_LOG_ROOT)", True))
    for service in settings.services:
        report.services.append(audit_service(service, root / service, settings, now=now,
                                             required=service not in settings.unused))
    return report
