"""logcheck's output: the table (rich when installed, plain otherwise), the verdict, traces, ``--json`` documents,
the activity sparkline, and the transcript of every run (``.context/terminal/logging_audit_<unix time>.log``).

The ``--json`` shapes (:func:`report_document`, :func:`trace_document`) are a documented interface
(docs/references/LOGGING.md, "logcheck --json"): fields are only ever added, and ``"logcheck": 1`` names the shape.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from .._records import format_timestamp
from ._config import CheckSettings, duration_text
from ._report import Report, ServiceReport
from ._trace import Trace

__all__ = ["Output", "activity", "print_report", "print_trace", "report_document", "sparkline", "trace_document"]

#: The version of the --json shapes.
SHAPE = 1
BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20
RICH_HINT = "plain table: pip install 'mlops-logging[check]' for the rich one"
_STATUS_STYLE = {"OK": "bold green", "UNUSED": "dim", "STALE": "bold yellow", "INCOMPLETE": "bold red",
                 "EMPTY": "bold red", "MISSING": "bold red"}


# --- activity -------------------------------------------------------------------------------------------------------


#: Bucket sizes the activity column chooses from: the smallest that fits the sampled span into the width.
BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def activity(times: Sequence[float], width: int = SPARK_WIDTH) -> tuple[int, list[int]]:
    """Records per bucket over the sampled span (oldest bucket first): ``(bucket_seconds, counts)``.

    The bucket is the smallest of :data:`BUCKETS` that fits the span into ``width`` bars (a minute-long demo gets
    5 s bars, a day of logs 2 h bars); rates are shown per minute whatever the bucket.
    """
    if not times:
        return 60, []
    lo, hi = min(times), max(times)
    bucket = next((b for b in BUCKETS if (hi - lo) / b < width), BUCKETS[-1])
    n = min(width, int((hi - lo) // bucket) + 1)
    counts = [0] * n
    for t in times:
        counts[max(0, n - 1 - int((hi - t) // bucket))] += 1
    return bucket, counts


def sparkline(counts: Sequence[int]) -> str:
    """One bar a bucket, ``▁`` to ``█`` relative to the busiest; a space for a bucket without records."""
    peak = max(counts, default=0)
    if not peak:
        return ""
    return "".join(" " if not c else BARS[min(len(BARS) - 1, math.ceil(c / peak * len(BARS)) - 1)] for c in counts)


def _activity_cell(times: Sequence[float]) -> str:
    bucket, counts = activity(times)
    if not counts:
        return "-"
    rate = sum(counts) / max(len(counts) * bucket, 60) * 60  # over the sampled span, at least a minute
    return f"{sparkline(counts)} {rate:.0f}/min"


# --- small formats --------------------------------------------------------------------------------------------------


def _size(count: int) -> str:
    n = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{duration_text(seconds)} ago"


def _ts(t: float | None) -> str | None:
    return None if t is None else format_timestamp(t)


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --- the output of one run ------------------------------------------------------------------------------------------


def _load_rich() -> Any:
    try:
        import rich.console
        import rich.table
        import rich.text
    except ImportError:
        return None
    return rich


class Output:
    """The terminal (rich or plain) plus a plain-text copy of everything printed, for the transcript."""

    def __init__(self, *, plain: bool = False, file: TextIO | None = None) -> None:
        self.file = file if file is not None else sys.stdout
        self.rich: Any = None if plain else _load_rich()  # the rich package (untyped: an optional extra)
        self.hint = not plain and self.rich is None
        self._copy = io.StringIO()
        self.console: Any = None
        tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.width = width = shutil.get_terminal_size((160, 24)).columns if tty else 160
        if self.rich is not None:
            self.console = self.rich.console.Console(file=self.file, width=width, highlight=False, soft_wrap=False)
            self._recorder = self.rich.console.Console(file=self._copy, width=width, highlight=False,
                                                       color_system=None, soft_wrap=False)

    def line(self, text: str = "", style: str | None = None) -> None:
        """Print one line (``style``: a rich style, ignored in plain mode)."""
        if self.console is not None:
            rendered = self.rich.text.Text(text, style=style or "")
            self.console.print(rendered)
            self._recorder.print(rendered)
        else:
            self._write(text + "\n")

    def raw(self, text: str) -> None:
        """Print ``text`` as is (JSON): no markup, no wrapping."""
        self._write(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str | None]) -> None:
        """A table; ``styles[i]`` styles row i's second cell (the status)."""
        if self.console is not None:
            table = self.rich.table.Table(show_lines=False, header_style="bold", expand=False)
            for i, header in enumerate(headers):
                table.add_column(header, overflow="fold" if i == len(headers) - 1 else "ellipsis",
                                 no_wrap=i != len(headers) - 1, justify="right" if header in _RIGHT else "left")
            for row, style in zip(rows, styles, strict=True):
                cells = [self.rich.text.Text(c, style=style or "") if i == 1 else self.rich.text.Text(c)
                         for i, c in enumerate(row)]
                table.add_row(*cells)
            self.console.print(table)
            self._recorder.print(table)
            return
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        widths[-1] = len(headers[-1])  # the notes column is last and not padded

        def fmt(cells: Sequence[str]) -> str:
            out = [c.rjust(w) if headers[i] in _RIGHT else c.ljust(w)
                   for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
            return "  ".join(out).rstrip()

        self._write(fmt(headers) + "\n")
        self._write("  ".join("-" * w for w in widths) + "\n")
        for row in rows:
            self._write(fmt(row) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.file.write(text)
        except UnicodeEncodeError:  # a terminal that cannot show the sparkline's blocks
            self.file.write(text.encode("ascii", "replace").decode("ascii"))
        self._copy.write(text)

    @property
    def text(self) -> str:
        """Everything printed so far, as plain text."""
        return self._copy.getvalue()

    def save_transcript(self, directory: Path | None, *, now: float | None = None) -> Path | None:
        """Write :attr:`text` to ``<directory>/logging_audit_<unix time>.log`` (``_2``, ``_3``... if taken).

        A transcript that cannot be written is said on stderr; it never changes the exit status.
        """
        if directory is None:
            return None
        stamp = int(time.time() if now is None else now)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for n in range(1, 1000):
                path = directory / (f"logging_audit_{stamp}.log" if n == 1 else f"logging_audit_{stamp}_{n}.log")
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(self.text)
                print(f"logcheck: transcript saved to {path}", file=sys.stderr)
                return path
            raise OSError(f"no free name for logging_audit_{stamp}.log")
        except OSError as exc:
            print(f"logcheck: transcript not saved in {directory} ({exc}); use --transcript-dir or --no-transcript",
                  file=sys.stderr)
            return None


_RIGHT = frozenset({"files", "size", "records", "complete", "errors"})


# --- the audit ------------------------------------------------------------------------------------------------------


def _service_row(s: ServiceReport) -> list[str]:
    share = s.complete_share
    files = [f for f in s.files]
    rotated = sum(f.rotated or f.compressed for f in files)
    note = s.reason if s.status.value != "OK" else ""
    if s.sample.last_error is not None:
        last = f"last error: {_cut(s.sample.last_error.message, 90)}"
        note = f"{note}; {last}" if note else last
    return [
        s.service,
        s.status.value,
        f"{len(files)}" + (f" ({rotated} rot.)" if rotated else ""),
        _size(s.size) if files else "-",
        _age(s.age),
        s.sample.format if files else "-",
        str(s.sample.records) if files else "-",
        f"{share:.0%}" if share is not None else "-",
        str(s.sample.errors) if files else "-",
        _activity_cell(s.sample.times),
        _cut(note, 160),
    ]


HEADERS = ("service", "status", "files", "size", "last write", "format", "records", "complete", "errors",
           "activity", "notes")


def print_report(out: Output, report: Report, *, as_json: bool = False) -> None:
    """The table, the findings, the probes and the verdict line (or the --json document)."""
    if as_json:
        out.raw(orjson.dumps(report_document(report), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out.line(f"logcheck: {report.root} (fresh = written in the last {duration_text(report.settings.max_age)}; "
             f"sampled from the end: {report.settings.sample_lines} records / "
             f"{_size(report.settings.sample_bytes)} per stream)", style="dim")
    for finding in report.findings:
        out.line(f"! {finding.text}", style="bold red")
    out.table(HEADERS, [_service_row(s) for s in report.services],
              [_STATUS_STYLE.get(s.status.value) for s in report.services])
    for s in report.services:
        if not s.findings:
            continue
        out.line(f"{s.service} ({s.status.value}):", style=_STATUS_STYLE.get(s.status.value))
        for finding in s.findings:
            out.line(f"  {'✗' if finding.fails else '·'} {_cut(finding.text, 300)}")
    for p in report.probes:
        if p.ok:
            out.line(f"probe {p.service} {p.url}: record {p.request_id} in {p.found_in} after {p.after_s:.2f} s "
                     f"(HTTP {p.status_code})", style="green")
        else:
            status = f" (HTTP {p.status_code})" if p.status_code is not None else ""
            out.line(f"probe {p.service} {p.url}: FAILED{status}: {p.error}", style="bold red")
    if out.hint:
        out.line(f"({RICH_HINT})", style="dim")
    out.line(report.verdict(), style="bold green" if report.ok else "bold red")


def report_document(report: Report) -> dict[str, Any]:
    """The ``logcheck --json`` document (shape 1, documented in LOGGING.md)."""
    settings: CheckSettings = report.settings
    return {
        "logcheck": SHAPE,
        "root": str(report.root),
        "generated_at": format_timestamp(report.generated_at),
        "ok": report.ok,
        "exit_code": report.exit_code,
        "verdict": report.verdict(),
        "settings": {
            "services": list(settings.services),
            "unused": list(settings.unused),
            "max_age_s": settings.max_age,
            "min_complete": settings.min_complete,
            "sample_lines": settings.sample_lines,
            "sample_bytes": settings.sample_bytes,
        },
        "findings": [{"text": f.text, "fails": f.fails} for f in report.findings],
        "services": [_service_document(s) for s in report.services],
        "probes": [
            {"service": p.service, "url": p.url, "request_id": p.request_id, "ok": p.ok,
             "status_code": p.status_code, "found_in": p.found_in, "after_s": p.after_s, "error": p.error}
            for p in report.probes
        ],
    }


def _service_document(s: ServiceReport) -> dict[str, Any]:
    sample = s.sample
    bucket, counts = activity(sample.times)
    last = sample.last_error
    return {
        "service": s.service,
        "status": s.status.value,
        "required": s.required,
        "reason": s.reason,
        "directory": str(s.directory),
        "size_bytes": s.size,
        "newest_write": _ts(s.newest_write),
        "age_s": None if s.age is None else round(s.age, 3),
        "sampled_records": sample.records,
        "complete_records": sample.complete,
        "complete_share": None if s.complete_share is None else round(s.complete_share, 6),
        "format": sample.format,
        "formats": dict(sample.formats),
        "levels": {level: sample.levels[level] for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")},
        "errors": sample.errors,
        "last_error": None if last is None else {"timestamp": _ts(last.time), "level": last.level,
                                                 "message": last.message, "file": last.file},
        "newest_record": _ts(sample.newest),
        "losses": [
            {"file": loss.file, "logger": loss.logger, "reported_at": _ts(loss.time), "lost_records": loss.lost_records,
             "lost_bytes": loss.lost_bytes, "lost_since": loss.lost_since, "lost_until": loss.lost_until,
             "error": loss.error}
            for loss in sample.losses
        ],
        "passthrough_dropped_bytes": sample.passthrough_dropped_bytes,
        "activity": {"bucket_s": bucket, "counts": counts, "sparkline": sparkline(counts),
                     "first": _ts(min(sample.times)) if sample.times else None, "last": _ts(sample.newest)},
        "files": [
            {"name": f.path.name, "path": str(f.path), "stream": f.stream, "rotated": f.rotated,
             "compressed": f.compressed, "size_bytes": f.size, "mtime": _ts(f.mtime), "sampled": f.sampled,
             "records": f.sample.records, "complete_records": f.sample.complete,
             "format": f.sample.format if f.sampled else None, "problem": f.problem or None}
            for f in s.files
        ],
        "findings": [{"text": f.text, "fails": f.fails, "file": f.file} for f in s.findings],
    }


# --- traces ---------------------------------------------------------------------------------------------------------


def trace_document(result: Trace) -> dict[str, Any]:
    """The ``logcheck --trace ID --json`` document."""
    return {
        "logcheck": SHAPE,
        "trace": result.request_id,
        "request_ids": result.request_ids,
        "services": result.services,
        "records": [
            {"service": h.service, "file": h.file, "timestamp": _ts(h.time), "level": h.level, "message": h.message,
             "record": h.record, "line": None if h.record is not None else h.line}
            for h in result.hits
        ],
        "skipped": result.skipped,
    }


def print_trace(out: Output, request_id: str, result: Trace, settings: CheckSettings, *, as_json: bool = False) -> None:
    """One line per record carrying the id, oldest first, or the --json document."""
    if as_json:
        out.raw(orjson.dumps(trace_document(result), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    what = f"trace id {request_id} (requests {', '.join(result.request_ids)})" if result.request_ids \
        else f"request id {request_id}"
    if not result.hits:
        out.line(f"{what}: no record under {settings.root}", style="bold red")
    else:
        out.line(f"{what}: {len(result.hits)} records in {len(result.services)} services "
                 f"({' -> '.join(result.services)})", style="bold")
        width = max(len(h.service) for h in result.hits)
        room = max(40, out.width - 36 - width)
        for h in result.hits:
            out.line(f"{_ts(h.time) or '-':<24}  {h.service:<{width}}  {h.level or '-':<8} {_cut(h.message, room)}",
                     style=_LEVEL_STYLE.get(h.level or ""))
    for skipped in result.skipped:
        out.line(f"! not searched: {skipped}", style="yellow")


_LEVEL_STYLE = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red", "DEBUG": "dim"}
