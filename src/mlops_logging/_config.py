"""``configure_logging(service)``: one call that sends structlog and stdlib records to ``<dir>/<service>.log``.

Idempotent: a second call (or one in a forked worker) replaces what the first installed instead of adding to it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import structlog

from . import _output
from ._console import Console
from ._errors import LogSetupError
from ._files import LogFile, ensure_log_dir
from ._level_map import LEVEL_NUMBERS
from ._output import Output
from ._render import render_json, render_text
from ._settings import LogSettings, resolve_settings
from ._sink import FileSink
from ._stdlib import RecordHandler
from ._structlog import SinkLoggerFactory, bound_logger_class, processors

__all__ = ["TAKEOVER_LOGGERS", "configure_logging", "get_logger", "reopen_log_file", "silence_loggers"]

#: Loggers that servers give handlers of their own; configure_logging routes them to the root handler instead.
TAKEOVER_LOGGERS: tuple[str, ...] = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
    "mlflow",
    "py.warnings",
)

_lock = threading.RLock()
_open_files: dict[Path, LogFile] = {}  # reused across calls, so reconfiguring never leaks descriptors
_silenced: set[str] = set()  # takeover loggers turned off (the servers' access logs under the FastAPI middleware)


def _after_fork_in_child() -> None:
    """A forked worker (gunicorn's post_fork) calls configure_logging: a lock another thread held at fork is gone."""
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def configure_logging(
    service: str | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    level: str | None = None,
    fmt: str | None = None,
    stdout: bool = True,
    strict: bool | None = None,
    max_bytes: int | str | None = None,
    backups: int | str | None = None,
    file_mode: int | str | None = None,
    takeover: Iterable[str] = TAKEOVER_LOGGERS,
) -> Path:
    """Log JSON lines (or ``fmt="text"``) to ``<log_dir>/<service>.log`` and a readable line to stdout.

    Arguments win over ``MLOPS_SERVICE``, ``MLOPS_LOG_DIR`` / ``MLOPS_LOG_ROOT``, ``MLOPS_LOG_LEVEL``,
    ``MLOPS_LOG_FORMAT``, ``MLOPS_LOG_STRICT``, ``MLOPS_LOG_MAX_BYTES``, ``MLOPS_LOG_BACKUPS`` and ``MLOPS_LOG_FILE_MODE`` (the mode of
    the file when it is created: 0640 by default, our images set 0644 so the host's users can read it). Returns the log
    file's path. A bad value (an unknown level or format, an unsafe service name...) raises :class:`LogSetupError`
    naming it, where it came from and the fix. When the file cannot be used (a directory that is not writable, a
    planted symlink): with ``strict`` raises :class:`LogSetupError`; otherwise (the default) warns once on stderr and
    keeps logging to stdout, because a run-time condition of the host must not take the service down.
    """
    with _lock:
        settings = resolve_settings(
            service, log_dir=log_dir, level=level, fmt=fmt, strict=strict, max_bytes=max_bytes, backups=backups,
            file_mode=file_mode,
        )
        logfile: LogFile | None
        try:
            logfile = _open(settings)
        except LogSetupError as exc:
            if settings.strict:
                raise
            _warn(f"{exc}; logging to stdout only")
            logfile = None
        _install(settings, logfile, stdout=stdout or logfile is None, takeover=takeover)
        return settings.log_file


def get_logger(name: str | None = None, **initial_values: object) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger whose records land in the configured file; ``name`` becomes the ``logger`` field."""
    if name is None:
        name = sys._getframe(1).f_globals.get("__name__", "root")
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name, **initial_values)
    return logger


def _open(settings: LogSettings) -> LogFile:
    path = settings.log_file
    existing = _open_files.get(path)
    wanted = (settings.max_bytes, settings.backups, settings.file_mode)
    if existing is not None and (existing.max_bytes, existing.backups, existing.mode) == wanted:
        return existing
    ensure_log_dir(settings.log_dir, fix=settings.dir_fix, file_mode=settings.file_mode)
    logfile = LogFile(path, max_bytes=settings.max_bytes, backups=settings.backups, mode=settings.file_mode)
    if existing is not None:
        existing.close()
    _open_files[path] = logfile
    return logfile


def _install(settings: LogSettings, logfile: LogFile | None, *, stdout: bool, takeover: Iterable[str]) -> None:
    console = Console(log_file=settings.log_file if logfile is not None else None) if stdout else None
    new = Output(service=settings.service, console=console,
                 render=render_text if settings.fmt == "text" else render_json)
    previous = _output.current
    if logfile is not None:
        writer = FileSink(logfile, notice=new.notice)  # no memory budget: write now, or count and report
        if isinstance(previous.writer, FileSink):
            writer.inherit(previous.writer)  # an unreported loss of the previous configuration is reported here
        new.writer = writer
    _output.install(new)

    levelno = LEVEL_NUMBERS[settings.level]
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_mlops_logging", False)]:
        root.removeHandler(handler)
    root.addHandler(RecordHandler())
    root.setLevel(levelno)
    for name in takeover:
        named = logging.getLogger(name)
        for handler in list(named.handlers):
            named.removeHandler(handler)
        if name in _silenced:
            _silence(named)
            continue
        named.propagate = True
        if named.level == logging.NOTSET or named.level < levelno:
            named.setLevel(logging.NOTSET)
    logging.captureWarnings(True)

    structlog.configure(
        processors=processors,
        wrapper_class=bound_logger_class(levelno),
        logger_factory=SinkLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    for path, logfile_open in list(_open_files.items()):
        if logfile_open is not logfile:  # a previous call's file: closed once no thread is writing to it
            logfile_open.close()
            del _open_files[path]


def silence_loggers(names: Iterable[str]) -> None:
    """Turn these loggers off, now and in every later :func:`configure_logging` (which routes its other takeover
    loggers to the root handler): how the FastAPI middleware replaces the servers' own access logs."""
    with _lock:
        for name in names:
            _silenced.add(name)
            _silence(logging.getLogger(name))


def _silence(logger: logging.Logger) -> None:
    logger.handlers.clear()
    logger.propagate = False
    logger.disabled = True


def reopen_log_file() -> None:
    """Reopen the configured log file now (gunicorn's ``USR1``, logrotate's ``postrotate``); never raises."""
    writer = _output.current.writer
    logfile = writer.logfile if isinstance(writer, FileSink) else None
    if logfile is None:
        return
    try:
        logfile.reopen()
    except OSError as exc:
        _warn(f"cannot reopen {logfile.path}: {exc}")


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"mlops_logging: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
