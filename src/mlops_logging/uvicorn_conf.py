"""uvicorn's logging in the mlops schema: ``uvicorn --log-config`` / ``uvicorn.run(log_config=...)``.

``LOG_CONFIG`` (also shipped as ``uvicorn_log_config.json`` next to this module, see :data:`LOG_CONFIG_FILE`) is a
``logging.config.dictConfig`` dict whose one handler is built by :func:`handler`: it runs ``configure_logging`` in the
process that applies the config, which uvicorn does in the supervisor and again in each ``--workers N`` process, so
every process opens the log file itself. uvicorn's own loggers propagate to that handler; ``uvicorn.access`` is off
because :class:`mlops_logging.fastapi.RequestLoggingMiddleware` writes one richer record per request instead.

    uvicorn app:app --workers 2 --log-config "$(python -m mlops_logging.uvicorn_conf)"
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from ._config import configure_logging

__all__ = ["LOG_CONFIG", "LOG_CONFIG_FILE", "handler", "log_config"]

#: The JSON copy of :data:`LOG_CONFIG` inside the installed package (for ``--log-config``).
LOG_CONFIG_FILE: Path = Path(__file__).with_name("uvicorn_log_config.json")

#: dictConfig for uvicorn: root -> the mlops handler; uvicorn's loggers propagate to it; its access log is off.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"mlops": {"()": "mlops_logging.uvicorn_conf.handler"}},
    "root": {"handlers": ["mlops"]},
    "loggers": {
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}


def log_config(**handler_kwargs: Any) -> dict[str, Any]:
    """A fresh copy of :data:`LOG_CONFIG`; ``handler_kwargs`` (``service=``, ``log_dir=``...) go to :func:`handler`."""
    config = copy.deepcopy(LOG_CONFIG)
    config["handlers"]["mlops"].update(handler_kwargs)
    return config


def handler(service: str | None = None, **configure_kwargs: Any) -> logging.Handler:
    """dictConfig factory: ``configure_logging`` in this process, then return the root handler it installed.

    ``service`` defaults to ``MLOPS_SERVICE``, else ``"fastapi"``; other keys of the handler's dict are passed on
    (``log_dir``, ``level``, ``fmt``, ``stdout``...). dictConfig then attaches the returned handler to the root logger
    in place of the one ``configure_logging`` installed (the same object), so there is exactly one.
    """
    configure_logging(service or os.environ.get("MLOPS_SERVICE") or "fastapi", **configure_kwargs)
    for installed in logging.getLogger().handlers:
        if getattr(installed, "_mlops_logging", False):
            return installed
    raise RuntimeError("configure_logging did not install its handler")  # pragma: no cover - a bug, not a state


if __name__ == "__main__":  # `python -m mlops_logging.uvicorn_conf` prints the path for --log-config
    print(LOG_CONFIG_FILE)
