"""mlops-logging: timestamped, levelled, structured log files for every service of an MLOps stack.

``configure_logging(service)`` for Python services, ``logwrap`` for servers we do not control, ``logcheck`` to prove
every service wrote its logs. The public modules are this package and :mod:`.fastapi`, :mod:`.gunicorn_conf`,
:mod:`.uvicorn_conf`, :mod:`.wrap`, :mod:`.check`, :mod:`.system` and :mod:`.testing`; every ``_module`` is private
(``docs/architecture.md`` maps them).
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

    from structlog.contextvars import (
        bind_contextvars,
        bound_contextvars,
        clear_contextvars,
        get_contextvars,
        unbind_contextvars,
    )

    from ._config import TAKEOVER_LOGGERS, configure_logging, get_logger
    from ._errors import LogSetupError

__all__ = [
    "LogSetupError",
    "TAKEOVER_LOGGERS",
    "__version__",
    "bind_contextvars",
    "bound_contextvars",
    "clear_contextvars",
    "configure_logging",
    "get_contextvars",
    "get_logger",
    "unbind_contextvars",
]


# Public name -> the module that defines it, imported on first use (PEP 562): ``logwrap`` needs neither structlog nor
# the stdlib logging setup, so it starts in a few milliseconds instead of the ~70 ms importing structlog takes.
# The binding helpers are structlog's own: a value bound with them is in every record of both logging paths.
_EXPORTS = {
    "TAKEOVER_LOGGERS": "._config",
    "configure_logging": "._config",
    "get_logger": "._config",
    "LogSetupError": "._errors",
    "bind_contextvars": "structlog.contextvars",
    "bound_contextvars": "structlog.contextvars",
    "clear_contextvars": "structlog.contextvars",
    "get_contextvars": "structlog.contextvars",
    "unbind_contextvars": "structlog.contextvars",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # here: logwrap imports this package and needs none of these

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
