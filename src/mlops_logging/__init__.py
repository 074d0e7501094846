"""mlops-logging: timestamped, levelled, structured log files for every service of an MLOps stack.

``configure_logging(service)`` for Python services, ``logwrap`` for servers we do not control, ``logcheck`` to prove
every service wrote its logs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TAKEOVER_LOGGERS, configure_logging, get_logger
    from .errors import LogSetupError
    from .files import LogFile
    from .records import LEVELS, REQUIRED_FIELDS, format_timestamp, redact, render_json, render_text
    from .settings import LogSettings, resolve_settings, validate_service
    from .stdlib import JsonFormatter, RecordHandler

# Public name -> module. Imported on first use (PEP 562), so that ``logwrap``, which needs neither structlog nor the
# stdlib logging setup, starts in a few milliseconds instead of the ~70 ms importing structlog takes.
_EXPORTS = {
    "TAKEOVER_LOGGERS": "config",
    "configure_logging": "config",
    "get_logger": "config",
    "LogSetupError": "errors",
    "LogFile": "files",
    "LEVELS": "records",
    "REQUIRED_FIELDS": "records",
    "format_timestamp": "records",
    "redact": "records",
    "render_json": "records",
    "render_text": "records",
    "LogSettings": "settings",
    "resolve_settings": "settings",
    "validate_service": "settings",
    "JsonFormatter": "stdlib",
    "RecordHandler": "stdlib",
}

__all__ = [
    "LEVELS",
    "REQUIRED_FIELDS",
    "TAKEOVER_LOGGERS",
    "JsonFormatter",
    "LogFile",
    "LogSettings",
    "LogSetupError",
    "RecordHandler",
    "configure_logging",
    "format_timestamp",
    "get_logger",
    "redact",
    "render_json",
    "render_text",
    "resolve_settings",
    "validate_service",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
