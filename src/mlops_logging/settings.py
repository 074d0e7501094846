"""Where and how a service logs: arguments first, then ``MLOPS_*`` environment variables, then defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import LogSetupError
from .records import LEVELS, normalize_level

__all__ = ["LogSettings", "resolve_settings", "validate_service", "parse_bool", "parse_size"]

_SERVICE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
FORMATS = ("json", "text")


def validate_service(name: str) -> str:
    """Return ``name`` if it is a safe file-name stem (``[A-Za-z0-9_.-]``, no ``..``), else raise LogSetupError."""
    if not isinstance(name, str) or not _SERVICE_RE.fullmatch(name) or ".." in name or name.startswith("."):
        raise LogSetupError(
            f"invalid service name {name!r}: use 1-128 characters from [A-Za-z0-9_.-], "
            "not starting with '.' and without '..' (it becomes a file name)"
        )
    return name


def parse_bool(value: str, *, name: str) -> bool:
    """Parse ``1/0, true/false, yes/no, on/off`` (any case); raise LogSetupError naming the variable otherwise."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise LogSetupError(f"{name}={value!r} is not a boolean: use 1 or 0")


_SIZE_RE = re.compile(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: str | int, *, name: str) -> int:
    """Parse a byte count: ``1048576``, ``64k``, ``1MiB``, ``2G`` (binary units); raise LogSetupError otherwise."""
    if isinstance(value, int):
        if value < 0:
            raise LogSetupError(f"{name}={value} must not be negative")
        return value
    match = _SIZE_RE.fullmatch(value)
    if not match:
        raise LogSetupError(f"{name}={value!r} is not a size: use a number of bytes, or e.g. 64k, 1MiB, 2G")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _SIZE_UNITS[unit]


@dataclass(frozen=True)
class LogSettings:
    """Resolved logging settings for one service."""

    service: str
    log_dir: Path
    level: str = "INFO"
    fmt: str = "json"
    strict: bool = False
    max_bytes: int = 0
    backups: int = 0

    @property
    def log_file(self) -> Path:
        """``<log_dir>/<service>.log``."""
        return self.log_dir / f"{self.service}.log"


def default_log_dir(service: str, env: Mapping[str, str]) -> Path:
    """``MLOPS_LOG_DIR`` exactly, else ``$MLOPS_LOG_ROOT/<service>`` (root defaults to ``./logs``)."""
    if env.get("MLOPS_LOG_DIR"):
        return Path(env["MLOPS_LOG_DIR"])
    return Path(env.get("MLOPS_LOG_ROOT") or "logs") / service


def resolve_settings(
    service: str | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    level: str | None = None,
    fmt: str | None = None,
    strict: bool | None = None,
    max_bytes: int | str | None = None,
    backups: int | str | None = None,
    env: Mapping[str, str] | None = None,
) -> LogSettings:
    """Combine arguments (which win) with ``MLOPS_SERVICE``, ``MLOPS_LOG_DIR``, ``MLOPS_LOG_ROOT``,
    ``MLOPS_LOG_LEVEL``, ``MLOPS_LOG_FORMAT``, ``MLOPS_LOG_STRICT``, ``MLOPS_LOG_MAX_BYTES``, ``MLOPS_LOG_BACKUPS``.

    Raises LogSetupError with a one-line message for any bad value.
    """
    env = os.environ if env is None else env
    service = service or env.get("MLOPS_SERVICE")
    if not service:
        raise LogSetupError("no service name: pass service=... (or --service) or set MLOPS_SERVICE")
    validate_service(service)

    raw_level = level if level is not None else env.get("MLOPS_LOG_LEVEL", "INFO")
    if str(raw_level).upper() not in LEVELS and str(raw_level).upper() not in {"WARN", "FATAL"}:
        raise LogSetupError(f"log level {raw_level!r} is not known: use one of {', '.join(LEVELS)} (MLOPS_LOG_LEVEL)")
    raw_fmt = (fmt if fmt is not None else env.get("MLOPS_LOG_FORMAT", "json")).lower()
    if raw_fmt not in FORMATS:
        raise LogSetupError(f"log format {raw_fmt!r} is not known: use json or text (MLOPS_LOG_FORMAT)")
    if strict is None:
        strict = parse_bool(env.get("MLOPS_LOG_STRICT", "0"), name="MLOPS_LOG_STRICT")
    size = parse_size(max_bytes if max_bytes is not None else env.get("MLOPS_LOG_MAX_BYTES", "0"),
                      name="MLOPS_LOG_MAX_BYTES")
    raw_backups = backups if backups is not None else env.get("MLOPS_LOG_BACKUPS", "5" if size else "0")
    try:
        n_backups = int(raw_backups)
    except ValueError:
        raise LogSetupError(f"MLOPS_LOG_BACKUPS={raw_backups!r} is not a whole number") from None
    if n_backups < 0 or (size and n_backups < 1):
        raise LogSetupError(f"MLOPS_LOG_BACKUPS={n_backups}: size rotation needs at least 1 backup")

    directory = Path(log_dir) if log_dir else default_log_dir(service, env)
    return LogSettings(
        service=service,
        log_dir=directory,
        level=normalize_level(str(raw_level)),
        fmt=raw_fmt,
        strict=strict,
        max_bytes=size,
        backups=n_backups,
    )
