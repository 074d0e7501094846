"""gunicorn settings that send the master's and every worker's records to the mlops log file.

    MLOPS_SERVICE=fastapi gunicorn -c python:mlops_logging.gunicorn_conf -k uvicorn_worker.UvicornWorker app:app

- ``logger_class`` :class:`GunicornLogger`: gunicorn's messages (``Starting gunicorn``, ``Booting worker``, worker
  timeouts and exits, errors) go through ``configure_logging``'s handler in the shared schema; ``USR1`` reopens the
  log file (``kill -USR1 <master>`` after renaming it; the file also notices a rename within a second by itself).
- ``post_fork``: each worker re-runs ``configure_logging`` (idempotent: it replaces, never adds, a handler and reuses
  the inherited O_APPEND descriptor), re-attaching ``uvicorn.error`` that UvicornWorker detached from the root.
- gunicorn's and uvicorn's access logs are off: :mod:`mlops_logging.fastapi`'s middleware writes one record per
  request. The service name comes from ``MLOPS_SERVICE`` (default ``fastapi``).

To combine with settings of your own, ``from mlops_logging.gunicorn_conf import *`` in your config module.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from gunicorn.glogging import Logger

from ._config import configure_logging, reopen_log_file
from .fastapi import disable_server_access_logs

__all__ = ["GunicornLogger", "accesslog", "logger_class", "post_fork", "worker_class"]


def _service() -> str:
    return os.environ.get("MLOPS_SERVICE") or "fastapi"


def _configure() -> None:
    configure_logging(_service())
    disable_server_access_logs()


class GunicornLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type information
    """gunicorn's logger, writing through ``configure_logging`` instead of its own stderr/file handlers."""

    def setup(self, cfg: Any) -> None:
        """Let gunicorn read its settings, then replace the handlers it attached with ours."""
        super().setup(cfg)
        self._access_log_enabled = False
        _configure()

    def access(self, *args: Any, **kwargs: Any) -> None:
        """Off: the request middleware writes the access record."""

    def reopen_files(self) -> None:
        """``USR1``: reopen the log file (and whatever gunicorn itself opened).

        Runs in a helper thread: in a worker this is a signal handler, which may interrupt the main thread while it
        holds the log file's lock.
        """
        super().reopen_files()
        thread = threading.Thread(target=reopen_log_file, name="mlops-logging-reopen", daemon=True)
        thread.start()
        thread.join(timeout=1.0)


def post_fork(server: Any, worker: Any) -> None:
    """In each worker, right after fork: configure logging for this process, server access logs off."""
    _configure()


logger_class = GunicornLogger
worker_class = "uvicorn_worker.UvicornWorker"
accesslog = None
