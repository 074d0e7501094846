"""``logcheck``: the audit that says, per service, whether logs are being written and are complete.

    logcheck [--root logs] [--services a,b] [--unused inference] [--max-age 15m] [--json]
    logcheck --trace REQUEST_ID_OR_TRACE_ID
    logcheck --probe fastapi=http://127.0.0.1:8080/health

For each service it looks at ``<root>/<service>/``: the log files (rotated and ``--split-streams`` ones too), their
size, the age of the newest write, and records *sampled from the end* of each file (one ``pread`` of at most
``--sample-bytes``, at most ``--sample-lines`` records: a 10 GB log audits as fast as a 10 KB one). The statuses,
checked in this order (docs/references/LOGGING.md, "logcheck"):

- ``UNUSED``: declared unused (``--unused``, or ``unused`` in the config file); never fails the run;
- ``MISSING``: no directory, or no log file of the service in it;
- ``EMPTY``: log files, but not one record in them (and every file could be read);
- ``STALE``: the newest write (the latest mtime of the service's files) is older than ``--max-age`` (15 min);
- ``INCOMPLETE``: fresh, but a file could not be audited (unreadable, a symlink, not a regular file; only gzip
  rotated files), fewer than
  ``--min-complete`` (99%) of the sampled records have a timestamp, a level and a message, or this package recorded
  lost lines within ``--max-age``;
- ``OK``: none of the above.

The exit status is 0 only when every required (not unused) service is OK; 1 otherwise; 2 for bad usage.
Errors in the logs are counted and shown but are not a logging failure: a service that logs its errors is doing
its job. The logic lives in importable functions (:func:`audit`, :func:`audit_service`, :func:`trace`,
:func:`probe`); :func:`main` only parses, calls and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._check_config import DEFAULT_SERVICES, CheckSettings, duration_text, load_config, resolve
from ._check_files import STREAMS, LogPath, NotAuditable, list_service_files, read_tail
from ._check_follow import trace
from ._check_records import LossSeen, Sample, judge_lines, parse_time
from ._check_trace import ProbeResult, TraceHit, probe
from ._errors import LogSetupError, describe_os_error

__all__ = [
    "CheckSettings",
    "DEFAULT_SERVICES",
    "FileReport",
    "Finding",
    "ProbeResult",
    "Report",
    "ServiceReport",
    "Status",
    "TraceHit",
    "audit",
    "audit_service",
    "main",
    "probe",
    "sample_file_lines",
    "trace",
]


class Status(str, enum.Enum):
    """A service's verdict."""

    OK = "OK"
    STALE = "STALE"
    INCOMPLETE = "INCOMPLETE"
    EMPTY = "EMPTY"
    MISSING = "MISSING"
    UNUSED = "UNUSED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Finding:
    """Something the audit noticed. ``fails``: it is a reason the service is not OK (else a note)."""

    text: str
    fails: bool
    file: str | None = None


@dataclass
class FileReport:
    """One file of a service as the audit saw it: the file (size and mtime as read), its sample, or why not."""

    log: LogPath
    sampled: bool = False
    sample: Sample = field(default_factory=Sample)
    problem: str = ""  # why it could not be audited ("is a symlink ...")

    path = property(lambda self: self.log.path, doc="The file's path.")
    stream = property(lambda self: self.log.stream, doc="``stdout``/``stderr`` for split streams, else None.")
    rotated = property(lambda self: self.log.rotated, doc="An older, rotated file.")
    compressed = property(lambda self: self.log.compressed, doc="A gzip rotated file (listed, not sampled).")
    size = property(lambda self: self.log.size, doc="Its size in bytes.")
    mtime = property(lambda self: self.log.mtime, doc="Its last modification time.")


@dataclass
class ServiceReport:
    """The audit of one service."""

    service: str
    status: Status
    reason: str
    directory: Path
    required: bool
    files: list[FileReport] = field(default_factory=list)
    sample: Sample = field(default_factory=Sample)
    findings: list[Finding] = field(default_factory=list)
    newest_write: float | None = None
    age: float | None = None

    @property
    def size(self) -> int:
        """Bytes in all the service's regular files."""
        return sum(f.size for f in self.files if not f.problem)

    @property
    def complete_share(self) -> float | None:
        """Share of sampled records with timestamp, level and message (None without records)."""
        return self.sample.complete / self.sample.records if self.sample.records else None


@dataclass
class Report:
    """The audit of a log root."""

    root: Path
    settings: CheckSettings
    generated_at: float
    services: list[ServiceReport]
    findings: list[Finding] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)

    @property
    def required(self) -> list[ServiceReport]:
        """Services that must be OK."""
        return [s for s in self.services if s.required]

    @property
    def ok(self) -> bool:
        """True when every required service is OK (and there is one), and every probe passed."""
        required = self.required
        return bool(required) and all(s.status is Status.OK for s in required) and all(p.ok for p in self.probes)

    @property
    def exit_code(self) -> int:
        """0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1

    def verdict(self) -> str:
        """``6/6 services writing complete logs``, naming the others: ``4/5 ... (mlflow STALE; unused: vllm)``."""
        required = self.required
        good = sum(s.status is Status.OK for s in required)
        line = f"{good}/{len(required)} services writing complete logs"
        notes = [f"{s.service} {s.status}" for s in required if s.status is not Status.OK]
        unused = [s.service for s in self.services if not s.required]
        if unused:
            notes.append(f"unused: {', '.join(unused)}")
        failed = [p for p in self.probes if not p.ok]
        if failed:
            notes.append(f"probe failed: {', '.join(p.service for p in failed)}")
        if not required:
            notes.insert(0, "nothing audited: every service is declared unused")
        return f"{line} ({'; '.join(notes)})" if notes else line


# --- sampling -------------------------------------------------------------------------------------------------------


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


# --- the command line -----------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    """logcheck's options (defaults are None: the config file and the built-in defaults fill them in)."""
    parser = argparse.ArgumentParser(
        prog="logcheck", description="Audit the log files of every service: there, fresh, parseable, complete?",
        epilog="Exit status: 0 every required service OK (and every probe passed), 1 otherwise, 2 bad usage. "
               "Statuses and the --json shape: docs/references/LOGGING.md, section logcheck.")
    parser.add_argument("--root", help="log root with one directory per service (default: MLOPS_LOG_ROOT or ./logs)")
    parser.add_argument("--services", action="append", metavar="A,B",
                        help=f"services to audit (default: {','.join(DEFAULT_SERVICES)})")
    parser.add_argument("--unused", action="append", metavar="A,B",
                        help="services declared unused: shown as UNUSED, never fail the run")
    parser.add_argument("--max-age", help="a service is STALE when its newest write is older (default 15m)")
    parser.add_argument("--min-complete", help="share of sampled records that must be complete (default 0.99)")
    parser.add_argument("--sample-lines", help="records sampled from the end of each stream (default 1000)")
    parser.add_argument("--sample-bytes", help="bytes read from the end of each stream (default 1MiB)")
    parser.add_argument("--config", type=Path, help="config file (default ./logcheck.toml, else [tool.logcheck] of "
                                                    "./pyproject.toml)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (shape in LOGGING.md)")
    parser.add_argument("--plain", action="store_true", help="plain table even when rich is installed")
    parser.add_argument("--trace", metavar="ID", help="print every record carrying this request id, in any service, "
                                                      "merged by time; for a W3C trace id, every record of its requests")
    parser.add_argument("--probe", action="append", metavar="SERVICE=URL",
                        help="GET URL with a fresh X-Request-ID, check its record reaches SERVICE's log")
    parser.add_argument("--probe-timeout", help="how long to wait for a probe's record (default 5s)")
    parser.add_argument("--transcript-dir", help="where the run's output is saved (default .context/terminal)")
    parser.add_argument("--no-transcript", dest="transcript", action="store_false", default=None,
                        help="do not save the output")
    return parser


def _settings_from_args(args: argparse.Namespace, *, cwd: Path | None = None) -> CheckSettings:
    """Resolve the parsed command line with the config file and the environment."""
    config, config_file = load_config(args.config, cwd or Path.cwd())
    cli = {key: getattr(args, key) for key in ("root", "services", "unused", "max_age", "min_complete",
                                               "sample_lines", "sample_bytes", "transcript_dir", "transcript",
                                               "probe", "probe_timeout")}
    return resolve(cli, config, config_file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run logcheck; return its exit status."""
    from . import _check_render as render

    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings_from_args(args)
    except LogSetupError as exc:
        print(f"logcheck: {exc}", file=sys.stderr)
        return 2
    out = render.Output(plain=args.plain)
    if args.trace is not None:
        try:
            searched = settings.services if "services" in settings.sources else None  # default: every directory
            hits = trace(settings.root, args.trace, searched)
        except ValueError as exc:
            print(f"logcheck: {exc}", file=sys.stderr)
            return 2
        render.print_trace(out, args.trace, hits, settings, as_json=args.json)
        code = 0 if hits else 1
    else:
        probes = [probe(service, url, settings.root / service, timeout=settings.probe_timeout)
                  for service, url in settings.probes]
        report = audit(settings)
        report.probes = probes
        render.print_report(out, report, as_json=args.json)
        code = report.exit_code
    out.save_transcript(settings.transcript_dir)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
