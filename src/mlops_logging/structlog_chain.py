"""The native structlog processor chain: contextvars, then one processor that builds the schema dict.

No trip through stdlib ``logging`` (``ProcessorFormatter`` costs about 70% of throughput): the bound logger's last
processor hands the finished dict to :class:`SinkLogger`, which passes it to the process-wide output.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from . import output
from .context import merge_bound_context
from .records import format_timestamp, redact

__all__ = ["SinkLogger", "SinkLoggerFactory", "build_record", "processors"]

_METHOD_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "msg": "INFO",
    "log": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "err": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
}


def _exc_info(value: Any) -> Any:
    """``exc_info=True`` / an exception / a 3-tuple -> a 3-tuple or None (structlog's own rules)."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3:
        return value
    if value:
        info = sys.exc_info()
        return info if info[0] is not None else None
    return None


def build_record(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> tuple[tuple[dict[str, Any]], dict]:
    """Turn structlog's event dict into the schema dict (same field order and formats as the stdlib path)."""
    message = event_dict.pop("event", "")
    level = event_dict.pop("level", None)
    name = event_dict.pop("logger", None)
    if "exc_info" in event_dict:
        exc_info = _exc_info(event_dict.pop("exc_info"))
        if exc_info is not None:
            event_dict["exception"] = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    current = output._current
    record: dict[str, Any] = {
        "timestamp": format_timestamp(),
        "level": level.upper() if isinstance(level, str) else _METHOD_LEVELS.get(method_name, "INFO"),
        "message": message if type(message) is str else str(message),
        "service": current.service,
        "logger": name or getattr(logger, "name", None) or "root",
        "pid": output._pid,
    }
    if event_dict:
        record.update(redact(event_dict))
    return (record,), {}


processors: list[Any] = [merge_bound_context, build_record]


class SinkLogger:
    """The wrapped logger at the end of the chain: every method sends the schema dict to the current output."""

    __slots__ = ("name",)

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def msg(self, record: dict[str, Any]) -> None:
        """Write one record."""
        output._current.emit(record)

    debug = info = warning = warn = error = err = critical = fatal = exception = log = failure = msg

    def __repr__(self) -> str:
        return f"<SinkLogger {self.name!r}>"


class SinkLoggerFactory:
    """``structlog.get_logger(name)`` -> a :class:`SinkLogger` carrying ``name`` for the ``logger`` field."""

    def __call__(self, *args: Any) -> SinkLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        if name is None:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith("structlog"):
                frame = frame.f_back  # type: ignore[assignment]
            name = frame.f_globals.get("__name__") if frame is not None else None
        return SinkLogger(name)
