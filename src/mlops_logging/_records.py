"""The record: the one builder every writer uses and the field rules; timestamps, the stand-in for a record that
failed, logwrap's own records and the one loss record.

Every writer in the package (the structlog chain, the stdlib handler, the FastAPI middleware, the loss records and
notices of the sinks and files, logwrap's own records and its framer's line records) builds its record with
:func:`build_record` (which redacts the call's fields, :mod:`._redaction`) and renders it with :mod:`._render`, so
all six services write the same field names, order and formats, and every record validates against
``record.schema.json``. Levels are named by :mod:`._level_map`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass

from ._level_map import LEVELS, normalize_level
from ._redaction import redact
from ._render import render_json, render_wrapper_text
from ._traceparent import is_span_id, is_trace_flags, is_trace_id

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "REQUIRED_FIELDS",
    "RESERVED",
    "RESERVED_FIELDS",
    "THIS_PROCESS",
    "TYPED_FIELDS",
    "Loss",
    "access_record",
    "add_fields",
    "build_record",
    "format_timestamp",
    "interpolation_failed",
    "loss_notice",
    "render_wrapper_record",
    "unrenderable_record",
]


# One cached prefix per wall-clock second: strftime is the slow part; the ".mmmZ" suffixes are precomputed. The last
# whole timestamp is kept too: a busy process writes many records within one millisecond.
_ts_cache: tuple[int, str] = (-1, "")
_ms_cache: tuple[int, str] = (-1, "")
_MS_SUFFIX: tuple[str, ...] = tuple(f".{ms:03d}Z" for ms in range(1000))


def format_timestamp(t: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: ``2026-11-26T08:16:47.123Z``."""
    global _ts_cache, _ms_cache
    if t is None:
        t = time.time()
    # Round to microseconds first, then truncate to milliseconds: what datetime.isoformat(timespec="milliseconds") does.
    ms = round(t * 1_000_000) // 1000
    cached = _ms_cache
    if cached[0] == ms:
        return cached[1]
    sec, milli = divmod(ms, 1000)
    cached_sec, prefix = _ts_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache = (sec, prefix)
    text = prefix + _MS_SUFFIX[milli]
    _ms_cache = (ms, text)
    return text


_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


#: ``pid=THIS_PROCESS`` asks :func:`build_record` for this process's pid, kept right across ``fork`` without a
#: syscall per record.
THIS_PROCESS = 0


# --- the builder and the field rules ----------------------------------------------------------------------------------

#: Fields every record has, in the order they are written.
REQUIRED_FIELDS: tuple[str, ...] = ("timestamp", "level", "message", "service")
#: Fields the builder sets on every record it builds; a call's or context's field of the same name is kept as
#: ``<name>_`` (``level_``, ``service_``), the way Python spells an argument named like a keyword.
RESERVED_FIELDS: tuple[str, ...] = ("timestamp", "level", "message", "service", "logger", "pid")
#: The same as a set.
RESERVED = frozenset(RESERVED_FIELDS)


def _is_str(value: object) -> bool:
    return type(value) is str


def _is_bool(value: object) -> bool:
    return type(value) is bool


def _is_stream(value: object) -> bool:
    return type(value) is str and value in ("stdout", "stderr")


#: The schema's typed optional fields (``record.schema.json``) -> whether a value fits: a call's field of that name
#: whose value does not fit is kept as ``<name>_`` too, so every record validates.
TYPED_FIELDS: Mapping[str, Callable[[object], bool]] = {
    "stream": _is_stream,
    "request_id": _is_str,
    "exception": _is_str,
    "partial": _is_bool,
    "raw_b64": _is_str,
    # the W3C trace context of the span current where the record was written (_tracecontext)
    "trace_id": is_trace_id,
    "span_id": is_span_id,
    "trace_flags": is_trace_flags,
}
_CHECKED = RESERVED | frozenset(TYPED_FIELDS)


def build_record(level: str, message: str, service: str, logger: str | None, pid: int | None,
                 fields: MutableMapping[str, Any] | None = None, timestamp: str | None = None) -> dict[str, Any]:
    """The record every writer starts from: the required fields, ``logger`` and ``pid`` (left out when None;
    :data:`THIS_PROCESS`: this process's) in the schema's order, then ``fields`` (the call's own data: redacted in
    place, added by :func:`add_fields`' rule). ``timestamp`` defaults to now.
    """
    record: dict[str, Any]
    if logger is not None and pid is not None:  # one literal: the dict is sized once (the in-process writers)
        record = {"timestamp": timestamp or format_timestamp(), "level": level, "message": message, "service": service,
                  "logger": logger, "pid": pid or _pid}
    else:
        record = {"timestamp": timestamp or format_timestamp(), "level": level, "message": message, "service": service}
        if logger is not None:
            record["logger"] = logger
        if pid is not None:
            record["pid"] = pid or _pid
    if fields:
        redact(fields)
        if _CHECKED.isdisjoint(fields):  # add_fields' fast path, without the call
            record.update(fields)
        else:
            add_fields(record, fields)
    return record


def access_record(level: str, message: str, service: str, logger: str, request_id: str, method: str, path: str,
                  query: str, status_code: int, duration_ms: float, bytes_sent: int, client: str | None,
                  user_agent: str, trace: tuple[str, str, str]) -> dict[str, Any]:
    """The FastAPI middleware's access record when nothing else is bound: exactly ``build_record(level, message,
    service, logger, THIS_PROCESS)`` followed by its own fields and the trace ids, as one dict literal (sized once, no
    merge: it is built on every request). Its fields' types are the schema's (no rule to apply); a test compares the
    two ways across awkward values."""
    return {"timestamp": format_timestamp(), "level": level, "message": message, "service": service, "logger": logger,
            "pid": _pid, "request_id": request_id, "method": method, "path": path, "query": query,
            "status_code": status_code, "duration_ms": duration_ms, "bytes_sent": bytes_sent, "client": client,
            "user_agent": user_agent, "trace_id": trace[0], "span_id": trace[1], "trace_flags": trace[2]}


def _fits(key: str, value: object) -> bool:
    """Whether a call's field may keep its name: not a reserved one, and of the schema's type if the schema types it."""
    check = TYPED_FIELDS.get(key)
    return key not in RESERVED and (check is None or check(value))


def add_fields(record: dict[str, Any], fields: Mapping[str, Any], *, replace: bool = True) -> dict[str, Any]:
    """Add ``fields`` to ``record`` (which holds the reserved fields); return ``record``.

    A field named like a reserved one, or like a typed field of the schema with a value of another type, is added as
    ``<name>_`` (more underscores if that is taken too), so the real timestamp, level, message, service, logger and
    pid always stay and every record validates. ``replace=False`` keeps a field ``record`` already has instead of
    overwriting it.
    """
    if _CHECKED.isdisjoint(fields) or all(_fits(key, fields[key]) for key in _CHECKED.intersection(fields)):
        if replace:  # the fast path: one C-level scan of the keys (a bound request_id: one type check)
            record.update(fields)
        else:
            for key, value in fields.items():
                record.setdefault(key, value)
        return record
    for key, value in fields.items():
        if not _fits(key, value):
            key = f"{key}_"
            while key in fields or (key in record and replace):
                key += "_"
        if replace or key not in record:
            record[key] = value
    return record


def unrenderable_record(record: Mapping[str, Any], error: BaseException) -> dict[str, Any]:
    """The record that stands in for one that could not be built or rendered: the reserved fields of ``record``
    that are usable, a message naming what failed and ``render_error``. Never raises (both logging paths use it)."""
    detail = f"{type(error).__name__}: {_safe_str(error)}"
    tb = error.__traceback__
    if tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        detail += f" (in {code.co_name}, {code.co_filename}:{tb.tb_lineno})"
    message = record.get("message")
    level = record.get("level")
    timestamp = record.get("timestamp")
    service = record.get("service")
    logger = record.get("logger")
    pid = record.get("pid")
    failed = build_record(
        level if level in LEVELS else "ERROR",
        (f"log record {message!r} could not be rendered: {detail}" if type(message) is str
         else f"log record could not be rendered: {detail}"),
        service if type(service) is str else "unconfigured",
        logger if type(logger) is str else "root",
        pid if type(pid) is int else None,
        timestamp=timestamp if type(timestamp) is str else None,
    )
    failed["render_error"] = detail
    return failed


def interpolation_failed(msg: object, args: object, error: BaseException) -> str:
    """The message of a call whose ``msg % args`` failed (both logging paths): what was given and why it failed."""
    return f"{_safe_repr(msg)} % {_safe_repr(args)} (formatting failed: {type(error).__name__}: {_safe_str(error)})"


def _safe_repr(obj: object) -> str:
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001 - a __repr__ that raises
        return object.__repr__(obj)


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises too
        return object.__repr__(obj)


# --- logwrap's own records --------------------------------------------------------------------------------------------

def render_wrapper_record(*, service: str, level: str, message: str, fmt: str = "json", pid: int | None = None,
                          **fields: Any) -> bytes:
    """A record logwrap itself writes (start, child exit, signals, losses): logger ``logwrap``, the same builder and
    field rules as every record, redacted; JSON, or text (:func:`render_wrapper_text`)."""
    record = build_record(normalize_level(level), message, service, "logwrap", pid, fields)
    return render_json(record) if fmt == "json" else render_wrapper_text(record)


# --- loss records: one shape for every writer -------------------------------------------------------------------------


_Bytes = bytes  # Loss has a field named bytes


@dataclass
class Loss:
    """What could not be written: counts, first and last failure time (wall clock), the last error."""

    records: int = 0
    bytes: int = 0
    first: float = 0.0
    last: float = 0.0
    error: str = ""

    def count(self, data: _Bytes, now: float) -> None:
        """Count ``data`` (whole records; a torn one counts as one) as lost at ``now``."""
        if not self.records:
            self.first = now
        self.records += data.count(b"\n") or 1
        self.bytes += len(data)
        self.last = now


def loss_notice(loss: Loss, path: object, *, cause: str = "could not be written", since: float | None = None,
                late: int = 0, budget: int = 0) -> tuple[str, dict[str, Any]]:
    """The message and fields of the WARNING record that reports ``loss`` (the one shape of every loss record:
    ``lost_records``, ``lost_bytes``, ``lost_since``, ``lost_until``, ``outage_since``, ``error``, ``late_records``).

    ``since``: when the outage began (default: the first loss); ``late``: records held in memory through it, written
    after this record; ``budget``: the memory they were held in (bytes), named when records were lost past it.
    """
    start = format_timestamp(loss.first if since is None else since)
    if loss.records:
        lost = (f"{loss.records} records ({loss.bytes} bytes) lost between {format_timestamp(loss.first)} and "
                f"{format_timestamp(loss.last)}{f' past the {budget}-byte memory budget' if budget else ''}")
    else:
        lost = "no records lost"
    held = f"; {late} records held in memory follow, written late" if late else ""
    fields: dict[str, Any] = {"lost_records": loss.records, "lost_bytes": loss.bytes}
    if loss.records:
        fields["lost_since"] = format_timestamp(loss.first)
        fields["lost_until"] = format_timestamp(loss.last)
    fields.update(outage_since=start, error=loss.error, late_records=late)
    return f"log file write failed: {path} {cause} from {start} ({loss.error}): {lost}{held}", fields

