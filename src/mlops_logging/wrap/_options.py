"""logwrap's parsed command line (:class:`Options`) and its defaults: what the command line module parses into and
the supervisor runs by."""

from __future__ import annotations

from dataclasses import dataclass

from ._passthrough import DEFAULT_PASSTHROUGH_TIMEOUT

__all__ = ["DEFAULT_BUFFER_BYTES", "DEFAULT_DRAIN_TIMEOUT", "DEFAULT_MAX_LINE_BYTES", "Options"]

DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
DEFAULT_DRAIN_TIMEOUT = 2.0
DEFAULT_MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Options:
    """The parsed command line. ``None`` means "not given": the environment or the default decides."""

    command: tuple[str, ...] = ()
    service: str | None = None
    log_dir: str | None = None
    fmt: str | None = None
    split_streams: bool = False
    passthrough: bool = True
    passthrough_timeout: float = DEFAULT_PASSTHROUGH_TIMEOUT
    tty: bool = True
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_bytes: int | None = None
    backups: int | None = None
    file_mode: str | None = None
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    strict: bool | None = None
    signal_group: bool = False
    kill_after: float | None = None
    subreaper: bool = False
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    help: bool = False
    version: bool = False
