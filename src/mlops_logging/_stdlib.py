"""Stdlib ``logging`` in the shared schema: a python-json-logger formatter and the handler that writes its records.

Third-party loggers (uvicorn, gunicorn, mlflow, httpx) and ``logging.getLogger(__name__)`` go through here; the
structlog chain (:mod:`mlops_logging._structlog`) builds the same dict, and both render with
:func:`mlops_logging._render.render_json`, so their lines agree byte for byte on field names and formats.
"""

from __future__ import annotations

import logging
from itertools import islice
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from . import _output, _records
from ._context import REGISTRY, bound_context
from ._level_map import level_from_number
from ._records import (
    RESERVED,
    THIS_PROCESS,
    TYPED_FIELDS,
    build_record,
    format_timestamp,
    interpolation_failed,
    unrenderable_record,
)
from ._redaction import is_secret_key
from ._render import render_json
from ._tracecontext import add_trace_fields, current

__all__ = ["JsonFormatter", "RecordHandler"]

# LogRecord attributes that are not user data, plus uvicorn's `color_message` (an ANSI copy of the message).
_SKIP = frozenset(RESERVED_ATTRS) | {"color_message", "message", "asctime", "taskName", "_mlops_record"}


class JsonFormatter(OrjsonFormatter):
    """python-json-logger formatter that emits the mlops-logging schema.

    ``timestamp`` RFC 3339 UTC ms ``Z``, ``level`` upper-case, ``message``, ``service``, ``logger``, ``pid``, then
    ``exception`` (the traceback), ``extra=`` fields and bound contextvars (``request_id``, ``run_id``); secrets
    redacted. Usable on its own in a ``dictConfig`` (``"()": "mlops_logging.JsonFormatter"``).
    """

    def __init__(self, *args: Any, service: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", list(_SKIP))
        super().__init__(*args, **kwargs)
        self.service = service

    def to_record(self, record: logging.LogRecord) -> dict[str, Any]:
        """The schema dict for ``record`` (what :meth:`format` serialises)."""
        msg = record.msg
        extra_from_msg: dict[str, Any] | None = None
        if isinstance(msg, dict):
            extra_from_msg = dict(msg)
            message: Any = extra_from_msg.pop("message", extra_from_msg.pop("event", ""))
            if type(message) is not str:
                message = str(message)
        else:
            try:
                message = record.getMessage()
            except Exception as exc:  # noqa: BLE001 - a bad %-format must not lose the record
                if not record.args:
                    raise  # str(msg) itself failed: RecordHandler.emit writes the record that says so
                message = interpolation_failed(msg, record.args, exc)
        # Same order and precedence as structlog's merge_contextvars: the call's own fields, then bound context
        # (a call's field wins over a bound one), then the traceback.
        fields: dict[str, Any] = {}
        attrs = record.__dict__
        if len(attrs) > _BASE_ATTR_COUNT:
            # `extra=` attributes are set after LogRecord.__init__, so they follow the standard ones in __dict__.
            skip = self._skip_fields
            for key in islice(attrs, _BASE_ATTR_COUNT, None):
                if key not in skip and key[:1] != "_":
                    fields[key] = attrs[key]
        if extra_from_msg:
            fields.update(extra_from_msg)
        if REGISTRY is None or REGISTRY:  # an empty registry: nothing was ever bound in any context
            for key, value in bound_context().items():
                fields.setdefault(key, value)
        add_trace_fields(fields)  # the current span's ids, after the bound context (as on the structlog path)
        if record.exc_info and not record.exc_text:
            text = self.formatException(record.exc_info)  # python-json-logger's may give a list of lines
            record.exc_text = text if isinstance(text, str) else "\n".join(text)
        if record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        level = _LEVEL_AT.get(record.levelno) or level_from_number(record.levelno)
        return build_record(level, message, self.service or _output.current.service,
                            record.name, record.process or THIS_PROCESS,  # None when logging.logProcesses is off
                            fields, format_timestamp(record.created))

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line, without the trailing newline (``logging`` handlers add their own)."""
        return render_json(self.to_record(record))[:-1].decode("utf-8")


#: The five standard level numbers -> their level (level_from_number's answer, without the call).
_LEVEL_AT = {number: level_from_number(number) for number in (10, 20, 30, 40, 50)}

# A plain record has this many attributes; more means `extra=` fields (cheap test before the full merge).
_BASE_ATTR_COUNT = len(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None).__dict__)


class RecordHandler(logging.Handler):
    """Hands each stdlib record, as a schema dict, to the process-wide output (file + console)."""

    _mlops_logging = True  # marks handlers we own, so reconfiguring replaces them instead of stacking

    def __init__(self, level: int = logging.NOTSET, service: str | None = None) -> None:
        super().__init__(level)
        self.formatter = JsonFormatter(service=service)

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the output does one write() per record, which is atomic with O_APPEND.
        if self.filters and not self.filter(record):
            return False
        try:
            built = _plain_record(record, self.formatter.service)  # type: ignore[union-attr]  # a JsonFormatter
        except Exception:  # noqa: BLE001 - anything unusual: the formatter's path, which says what failed
            built = None
        if built is None:
            self.emit(record)
        else:
            _output.current.emit(built)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``; one that cannot be built becomes the record that says so (as on the structlog path)."""
        current = _output.current
        formatter = self.formatter
        assert isinstance(formatter, JsonFormatter)  # set in __init__, never replaced
        try:
            built = formatter.to_record(record)
        except Exception as exc:  # noqa: BLE001 - logging never takes the service down
            known = {
                "timestamp": format_timestamp(record.created),
                "level": level_from_number(record.levelno),
                "message": record.msg if isinstance(record.msg, str) else None,
                "service": formatter.service or current.service,
                "logger": record.name,
                "pid": record.process or THIS_PROCESS,
            }
            built = unrenderable_record(known, exc)
        current.emit(built)


#: ``extra=`` keys a record may carry as they are: not secret, not reserved or typed, not skipped, not private.
_PLAIN_KEYS: set[str] = set()
_NOT_PLAIN = _SKIP | RESERVED | frozenset(TYPED_FIELDS)
_SCALARS = frozenset({str, int, float, bool, type(None)})  # values redaction leaves as they are


def _plain_record(record: logging.LogRecord, service: str | None) -> dict[str, Any] | None:
    """:meth:`JsonFormatter.to_record` of the usual record, in one pass, or None when it is not one (then the
    formatter builds it): a ``str`` message, no exception or stack, nothing bound, no span current, ``extra=`` keys
    that are not secret, reserved or typed, with scalar values (what redaction and the field rules leave alone).
    The same dict, in the same order; a unit test compares the two.
    """
    msg = record.msg
    if type(msg) is not str or record.exc_info or record.exc_text or record.stack_info:
        return None
    if record.args:
        try:
            msg = msg % record.args  # LogRecord.getMessage, without the call (msg is a str)
        except Exception:  # noqa: BLE001 - the formatter says what failed
            return None
    if (REGISTRY is None or REGISTRY) or current() is not None:
        return None
    level = _LEVEL_AT.get(record.levelno)
    name = record.name
    if level is None or name is None:
        return None
    built = {"timestamp": format_timestamp(record.created), "level": level, "message": msg,
             "service": service or _output.current.service, "logger": name, "pid": record.process or _records._pid}
    attrs = record.__dict__
    if len(attrs) > _BASE_ATTR_COUNT:
        plain = _PLAIN_KEYS
        for key in islice(attrs, _BASE_ATTR_COUNT, None):
            if key in plain:
                value = attrs[key]
                if type(value) not in _SCALARS:
                    return None
                built[key] = value
            elif key in _SKIP or key[:1] == "_":
                continue
            elif type(key) is str and key not in _NOT_PLAIN and not is_secret_key(key):
                if len(plain) < 4096:
                    plain.add(key)
                value = attrs[key]
                if type(value) not in _SCALARS:
                    return None
                built[key] = value
            else:
                return None
    return built
