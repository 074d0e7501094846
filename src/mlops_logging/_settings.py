"""Where and how a service logs: arguments first, then ``MLOPS_*`` environment variables, then defaults.

A value that is not valid fails here, with one line naming the value, where it came from (the caller's argument or
option, or the variable) and the fix: a bad configuration must stop a service at start, not quietly lose its log file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._errors import LogSetupError
from ._files import DIR_FIX, FILE_MODE
from ._level_map import LEVELS, level_from_number, normalize_level

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ARGUMENT_NAMES",
    "ENV_NAMES",
    "LogSettings",
    "parse_bool",
    "parse_file_mode",
    "parse_size",
    "resolve_settings",
    "speedups_requested",
    "validate_service",
]

_SERVICE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
FORMATS = ("json", "text")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: How :func:`resolve_settings`'s (and ``configure_logging``'s) arguments are spelled in messages; a caller with
#: other spellings (logwrap: ``--format``, ``--log-dir``) passes its own ``names``.
ARGUMENT_NAMES: Mapping[str, str] = {
    "service": "service=",
    "log_dir": "log_dir=",
    "level": "level=",
    "fmt": "fmt=",
    "strict": "strict=",
    "max_bytes": "max_bytes=",
    "backups": "backups=",
    "file_mode": "file_mode=",
}
#: The variable each setting falls back to.
ENV_NAMES: Mapping[str, str] = {
    "service": "MLOPS_SERVICE",
    "log_dir": "MLOPS_LOG_DIR",
    "level": "MLOPS_LOG_LEVEL",
    "fmt": "MLOPS_LOG_FORMAT",
    "strict": "MLOPS_LOG_STRICT",
    "max_bytes": "MLOPS_LOG_MAX_BYTES",
    "backups": "MLOPS_LOG_BACKUPS",
    "file_mode": "MLOPS_LOG_FILE_MODE",
}


def _where(spelling: str) -> str:
    """``level=`` -> ``argument level=``; an option (``--format``) or a variable reads as it is."""
    return f"argument {spelling}" if spelling.endswith("=") else spelling


def validate_service(name: str, *, source: str | None = None) -> str:
    """Return ``name`` if it is a safe file-name stem (``[A-Za-z0-9_.-]``, no ``..``), else raise LogSetupError
    (naming ``source``, the argument or variable the name came from, when given)."""
    if not isinstance(name, str) or not _SERVICE_RE.fullmatch(name) or ".." in name or name.startswith("."):
        where = f" from {source}" if source else ""
        raise LogSetupError(
            f"invalid service name {name!r}{where}: use 1-128 characters from [A-Za-z0-9_.-], "
            "not starting with '.' and without '..' (it becomes a file name)"
        )
    return name


def parse_bool(value: str | bool, *, name: str) -> bool:
    """Parse ``1/0, true/false, yes/no, on/off`` (any case; empty means false); raise LogSetupError naming ``name``
    (the variable or option the value came from) otherwise."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower() if isinstance(value, str) else None
    if lowered in _TRUE:
        return True
    if lowered in _FALSE or lowered == "":
        return False
    raise LogSetupError(f"{value!r} from {name} is not a boolean: use 1/0, true/false, yes/no or on/off (any case)")


def speedups_requested(env: Mapping[str, str]) -> bool:
    """``MLOPS_LOG_SPEEDUPS``: whether logwrap's framer may run its C extension (unset or empty: yes); raises
    LogSetupError naming the variable for a value that is not a boolean."""
    value = env.get("MLOPS_LOG_SPEEDUPS", "")
    return parse_bool(value, name="MLOPS_LOG_SPEEDUPS") if value.strip() else True


_SIZE_RE = re.compile(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: str | int, *, name: str) -> int:
    """Parse a byte count: ``1048576``, ``64k``, ``1MiB``, ``2G`` (binary units); raise LogSetupError naming ``name``
    (the variable or option the value came from) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise LogSetupError(f"{value} from {name} is not a size: it must not be negative (0 turns rotation off)")
        return value
    match = _SIZE_RE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise LogSetupError(f"{value!r} from {name} is not a size: use a number of bytes, or e.g. 64k, 1MiB, 2G")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _parse_count(value: str | int, *, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and value.strip().isdigit():
        count = int(value)
    else:
        raise LogSetupError(f"{value!r} from {name} is not a whole number: use e.g. 5")
    if count < 0:
        raise LogSetupError(f"{value!r} from {name} is not a whole number: use e.g. 5")
    return count


def _parse_level(value: str | int, *, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return level_from_number(value)  # logging.DEBUG and friends
    if isinstance(value, str) and value.strip().upper() in (*LEVELS, "WARN", "FATAL"):
        return normalize_level(value.strip())
    raise LogSetupError(f"log level {value!r} from {name} is not known: use one of {', '.join(LEVELS)}")


def _parse_format(value: str, *, name: str) -> str:
    if isinstance(value, str) and value.strip().lower() in FORMATS:
        return value.strip().lower()
    raise LogSetupError(f"log format {value!r} from {name} is not known: use json or text")


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
    #: Mode of the log files created (directories: whoever reads the files may enter); the images set 0644.
    file_mode: int = FILE_MODE
    #: How a message about an unusable log directory says to choose another one (the caller's own spelling).
    dir_fix: str = DIR_FIX

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
    level: str | int | None = None,
    fmt: str | None = None,
    strict: bool | str | None = None,
    max_bytes: int | str | None = None,
    backups: int | str | None = None,
    file_mode: int | str | None = None,
    env: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
) -> LogSettings:
    """Combine arguments (which win) with ``MLOPS_SERVICE``, ``MLOPS_LOG_DIR``, ``MLOPS_LOG_ROOT``,
    ``MLOPS_LOG_LEVEL``, ``MLOPS_LOG_FORMAT``, ``MLOPS_LOG_STRICT``, ``MLOPS_LOG_MAX_BYTES``, ``MLOPS_LOG_BACKUPS``,
    ``MLOPS_LOG_FILE_MODE``.

    Raises LogSetupError with a one-line message for any bad value, naming where it came from: the argument as
    ``names`` spells it (default :data:`ARGUMENT_NAMES`; logwrap passes its options), or the variable.
    """
    env = os.environ if env is None else env
    spelled = {**ARGUMENT_NAMES, **(names or {})}

    def pick(key: str, argument: object, default: str | None = None) -> tuple[Any, str]:
        """The value (of any type a caller passed: each parser checks it) and where it came from: the argument if
        given, else the variable (or the default)."""
        if argument is not None:
            return argument, _where(spelled[key])
        return env.get(ENV_NAMES[key], default), ENV_NAMES[key]

    raw_service, service_from = pick("service", service)
    if raw_service is None or (raw_service == "" and service_from == ENV_NAMES["service"]):
        raise LogSetupError(f"no service name: use {spelled['service']} or set MLOPS_SERVICE")
    name = validate_service(raw_service, source=service_from)

    raw_level, level_from = pick("level", level, "INFO")
    raw_fmt, fmt_from = pick("fmt", fmt, "json")
    raw_strict, strict_from = pick("strict", strict, "0")
    raw_size, size_from = pick("max_bytes", max_bytes, "0")
    size = parse_size(raw_size, name=size_from)
    raw_backups, backups_from = pick("backups", backups, "5" if size else "0")
    n_backups = _parse_count(raw_backups, name=backups_from)
    if size and n_backups < 1:
        raise LogSetupError(f"{n_backups} backups from {backups_from}: size rotation ({size_from}) needs at least "
                            "1 backup")

    raw_mode, mode_from = pick("file_mode", file_mode, None)
    mode = FILE_MODE if raw_mode is None or raw_mode == "" else parse_file_mode(raw_mode, name=mode_from)

    if log_dir is not None and str(log_dir) != "":
        directory = Path(log_dir)
    else:
        directory = default_log_dir(name, env)
    return LogSettings(
        service=name,
        log_dir=directory,
        level=_parse_level(raw_level, name=level_from),
        fmt=_parse_format(raw_fmt, name=fmt_from),
        strict=parse_bool(raw_strict, name=strict_from),
        max_bytes=size,
        backups=n_backups,
        file_mode=mode,
        dir_fix=f"choose another {spelled['log_dir']} / MLOPS_LOG_DIR",
    )


def parse_file_mode(value: int | str, *, name: str) -> int:
    """An octal file mode (``0644``, ``644``, ``0o644``, or an int) that lets the owner read and write, executes
    nothing, and lets no one but the owner and the group write (anyone who may write can forge records)."""
    try:
        mode = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value).strip(), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise LogSetupError(f"{value!r} from {name} is not a file mode: use octal digits, e.g. 0640 (owner and "
                            "group read; the default) or 0644 (everyone reads)")
    if mode & 0o600 != 0o600 or mode & 0o111 or mode & 0o002:
        raise LogSetupError(f"file mode {mode:04o} from {name} is not allowed for log files: the owner must read "
                            "and write, nothing is executable and others may not write; e.g. 0640 or 0644")
    return mode
