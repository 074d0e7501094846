"""mlops-logging: timestamped, levelled, structured log files for every service of an MLOps stack.

``configure_logging(service)`` for Python services, ``logwrap`` for servers we do not control, ``logcheck`` to prove
every service wrote its logs.
"""

from __future__ import annotations

from .config import TAKEOVER_LOGGERS, configure_logging, get_logger
from .errors import LogSetupError
from .files import LogFile
from .records import LEVELS, REQUIRED_FIELDS, format_timestamp, redact, render_json, render_text
from .settings import LogSettings, resolve_settings, validate_service
from .stdlib import JsonFormatter, RecordHandler

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
