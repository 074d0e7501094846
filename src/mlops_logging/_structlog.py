"""The native structlog processor chain: contextvars, then one processor that builds the schema dict.

No trip through stdlib ``logging`` (``ProcessorFormatter`` costs about 70% of throughput): the bound logger's last
processor hands the finished dict to :class:`SinkLogger`, which passes it to the process-wide output.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from types import FrameType
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from . import _output
from ._context import REGISTRY, merge_bound_context
from ._level_map import LEVEL_NUMBERS, METHOD_LEVELS, level_from_number
from ._records import THIS_PROCESS, build_record, interpolation_failed, unrenderable_record
from ._tracecontext import add_trace_fields

__all__ = ["SinkLogger", "SinkLoggerFactory", "bound_logger_class", "processors", "to_record"]


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


def to_record(logger: WrappedLogger, method_name: str,
              event_dict: EventDict) -> tuple[tuple[dict[str, Any]], dict[str, Any]]:
    """The chain's last processor: structlog's event dict -> the record (:func:`records.build_record`, the same
    builder as the stdlib path's), handed to :class:`SinkLogger` as its one argument.

    Never raises: an event that cannot be built (a ``__str__`` that raises, a bad ``exc_info``...) becomes the
    record :func:`records.unrenderable_record` makes, at the call's level.
    """
    return (_record(getattr(logger, "name", None) or "root", METHOD_LEVELS.get(method_name, "INFO"),
                    event_dict.pop("event", ""), event_dict),), {}


def _record(name: str, level: str, event: Any, fields: MutableMapping[str, Any]) -> dict[str, Any]:
    """The record of one call (``fields``: its own, then the bound context); never raises (see :func:`to_record`)."""
    service = _output.current.service
    message: Any = None  # str() of the event may raise
    try:
        message = event if type(event) is str else str(event)
        add_trace_fields(fields)  # the current span's ids, after the bound context (as on the stdlib path)
        if "exc_info" in fields:
            exc_info = _exc_info(fields.pop("exc_info"))
            if exc_info is not None:
                fields["exception"] = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
        return build_record(level, message, service, name, THIS_PROCESS, fields)
    except Exception as exc:  # noqa: BLE001 - logging never raises into the caller
        known = {"level": level, "message": message, "service": service, "logger": name, "pid": THIS_PROCESS}
        return unrenderable_record(known, exc)


processors: list[Any] = [merge_bound_context, to_record]


# --- the bound logger: structlog's filtering one, with an interpolation that never raises -----------------------------

_LEVEL_NUMBERS = {level.lower(): number for level, number in LEVEL_NUMBERS.items()}
_ALIASES = {alias: METHOD_LEVELS[alias].lower() for alias in ("warn", "fatal", "msg")}  # structlog's method aliases


def _interpolate(event: Any, args: tuple[Any, ...]) -> Any:
    """``event % args`` as structlog does it; a failure gives the stdlib path's "formatting failed" message."""
    try:
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            return event % args[0]
        return event % args
    except Exception as exc:  # noqa: BLE001 - a bad format string must not raise into the caller
        return interpolation_failed(event, args, exc)


def _method(name: str) -> Callable[..., Any]:
    level = METHOD_LEVELS[name]

    def meth(self: Any, event: Any, *args: Any, **kw: Any) -> Any:
        if args:
            event = _interpolate(event, args)
        logger = self._logger
        context = self._context
        if self._processors is not processors or type(logger) is not SinkLogger or "event" in context:
            return self._proxy_to_logger(name, event, **kw)  # another chain or logger: structlog's own way
        # Our chain, run inline: the same event dict (bound values, the call's, then the context's), without
        # structlog's event dict, processor loop and wrapped-logger lookup (a third of a record's cost).
        if context:
            fields = context.copy()
            fields.update(kw)
        else:
            fields = kw  # a new dict on every call
        if REGISTRY is None or REGISTRY:  # (merge_bound_context's own test, without the call)
            merge_bound_context(logger, name, fields)
        _output.current.emit(_record(logger.name or "root", level, "" if event is None else event, fields))
        return None

    meth.__name__ = name
    return meth


def _async_method(base: Callable[..., Any]) -> Callable[..., Any]:
    async def ameth(self: Any, event: Any, *args: Any, **kw: Any) -> Any:
        return await base(self, _interpolate(event, args) if args else event, **kw)

    ameth.__name__ = base.__name__
    return ameth


@functools.cache
def bound_logger_class(min_level: int) -> type:
    """structlog's filtering bound logger for ``min_level`` (levels below it cost one ``return None``), except that
    a ``%`` interpolation that fails gives a message saying so and ``log()`` takes any level number (25 -> INFO),
    instead of raising into the caller."""
    base = structlog.make_filtering_bound_logger(min_level)
    methods: dict[str, Any] = {}
    for name, number in _LEVEL_NUMBERS.items():
        if number >= min_level:  # disabled levels keep structlog's no-op
            methods[name] = _method(name)
            methods[f"a{name}"] = _async_method(getattr(base, f"a{name}"))
    for alias, name in _ALIASES.items():
        if name in methods:
            methods[alias], methods[f"a{alias}"] = methods[name], methods[f"a{name}"]

    def log(self: Any, level: int, event: Any, *args: Any, **kw: Any) -> Any:
        if level < min_level:
            return None
        return base.log(self, _LEVEL_NUMBERS[level_from_number(level).lower()],
                        _interpolate(event, args) if args else event, **kw)

    async def alog(self: Any, level: int, event: Any, *args: Any, **kw: Any) -> Any:
        if level < min_level:
            return None
        return await base.alog(self, _LEVEL_NUMBERS[level_from_number(level).lower()],
                               _interpolate(event, args) if args else event, **kw)

    methods["log"], methods["alog"] = log, alog
    return type(base.__name__, (base,), methods)


class SinkLogger:
    """The wrapped logger at the end of the chain: every method sends the schema dict to the current output."""

    __slots__ = ("name",)

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def msg(self, record: dict[str, Any]) -> None:
        """Write one record."""
        _output.current.emit(record)

    debug = info = warning = warn = error = err = critical = fatal = exception = log = failure = msg

    def __repr__(self) -> str:
        return f"<SinkLogger {self.name!r}>"


class SinkLoggerFactory:
    """``structlog.get_logger(name)`` -> a :class:`SinkLogger` carrying ``name`` for the ``logger`` field."""

    def __call__(self, *args: Any) -> SinkLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        if name is None:
            frame: FrameType | None = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith("structlog"):
                frame = frame.f_back
            name = frame.f_globals.get("__name__") if frame is not None else None
        return SinkLogger(name)
