"""logcheck's settings: command line first, then the config file (``logcheck.toml`` or ``[tool.logcheck]``), then
``MLOPS_LOG_ROOT``, then the defaults. A bad value fails at start with one line naming it, where it came from and
the fix (exit 2), as ``configure_logging`` and logwrap do.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import LogSetupError
from .._settings import parse_size, validate_service

__all__ = ["DEFAULT_SERVICES", "CheckSettings", "duration_text", "load_config", "parse_duration", "resolve"]

#: The six services of the stack, audited by default.
DEFAULT_SERVICES: tuple[str, ...] = ("fastapi", "inference", "mlflow", "system", "training", "vllm")
DEFAULT_MAX_AGE = 15 * 60.0
DEFAULT_MIN_COMPLETE = 0.99
DEFAULT_SAMPLE_LINES = 1000
DEFAULT_SAMPLE_BYTES = 1024 * 1024
DEFAULT_TRANSCRIPT_DIR = Path(".context") / "terminal"
DEFAULT_PROBE_TIMEOUT = 5.0

_KEYS = ("root", "services", "unused", "max_age", "min_complete", "sample_lines", "sample_bytes", "transcript_dir",
         "transcript", "probe", "probe_timeout")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h|d)?\s*", re.IGNORECASE)
_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float, *, name: str) -> float:
    """Seconds from ``900``, ``90s``, ``15m``, ``2h``, ``1d``; LogSetupError naming ``name`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if not match:
            raise LogSetupError(f"{name}={value!r} is not a duration: use seconds or e.g. 90s, 15m, 2h")
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if seconds <= 0:
        raise LogSetupError(f"{name}={value!r} must be more than 0")
    return seconds


def duration_text(seconds: float) -> str:
    """``42 s``, ``15 min``, ``2.5 h``, ``3 d``: the inverse of :func:`parse_duration`, for people."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def _names(value: Any, *, name: str) -> list[str]:
    """A list of service names from ``"a,b"`` or ``["a", "b"]`` (or several of either), each validated."""
    items: Iterable[Any] | None = ([value] if isinstance(value, str) else value if isinstance(value, (list, tuple))
                                   else None)
    if items is None:
        raise LogSetupError(f"{name}={value!r} is not a list of service names: use e.g. \"fastapi,vllm\"")
    out: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if part:
                try:
                    validate_service(part)
                except LogSetupError as exc:
                    raise LogSetupError(f"{name}: {exc}") from None
                if part not in out:
                    out.append(part)
    return out


def _probes(value: Any, *, name: str) -> list[tuple[str, str]]:
    """``["fastapi=http://127.0.0.1:8080/health", ...]`` -> ``[(service, url)]``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise LogSetupError(f"{name}={value!r}: use SERVICE=URL, e.g. fastapi=http://127.0.0.1:8080/health")
    out = []
    for item in items:
        service, sep, url = str(item).partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise LogSetupError(f"{name}={item!r}: use SERVICE=URL, e.g. fastapi=http://127.0.0.1:8080/health")
        out.append((_names(service, name=name)[0], url))
    return out


@dataclass(frozen=True)
class CheckSettings:
    """Everything one logcheck run needs to know."""

    root: Path = Path("logs")
    services: tuple[str, ...] = DEFAULT_SERVICES
    unused: tuple[str, ...] = ()
    max_age: float = DEFAULT_MAX_AGE
    min_complete: float = DEFAULT_MIN_COMPLETE
    sample_lines: int = DEFAULT_SAMPLE_LINES
    sample_bytes: int = DEFAULT_SAMPLE_BYTES
    transcript_dir: Path | None = DEFAULT_TRANSCRIPT_DIR
    probes: tuple[tuple[str, str], ...] = ()
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # setting -> where its value came from


def load_config(path: Path | None, cwd: Path) -> tuple[dict[str, Any], Path | None]:
    """The config table and its file: ``path``, else ``./logcheck.toml``, else ``[tool.logcheck]`` of
    ``./pyproject.toml``, else nothing."""
    candidates: Sequence[tuple[Path, bool]]
    if path is not None:
        candidates = [(path, path.name == "pyproject.toml")]
    else:
        candidates = [(cwd / "logcheck.toml", False), (cwd / "pyproject.toml", True)]
    for candidate, is_pyproject in candidates:
        if path is None and not candidate.is_file():
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LogSetupError(f"config file {candidate} does not exist: check --config") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LogSetupError(f"config file {candidate} cannot be read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise LogSetupError(f"config file {candidate} is not valid TOML ({exc}): fix it or pass --config") from None
        if is_pyproject:
            table = data.get("tool", {}).get("logcheck")
            if table is None:
                if path is not None:
                    raise LogSetupError(f"{candidate} has no [tool.logcheck] table")
                continue
            return dict(table), candidate
        return data, candidate
    return {}, None


def resolve(cli: Mapping[str, Any], config: Mapping[str, Any], config_file: Path | None,
            env: Mapping[str, str] | None = None) -> CheckSettings:
    """Combine the command line (``cli``: only the options given), the config table and the environment."""
    env = os.environ if env is None else env
    where = str(config_file) if config_file else "config"
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for raw_key, value in config.items():
        key = str(raw_key).replace("-", "_")
        if key not in _KEYS:
            raise LogSetupError(f"{where}: unknown key {raw_key!r}: use one of {', '.join(_KEYS)}")
        values[key], sources[key] = value, f"{where}: {raw_key}"
    if config_file is not None:
        for key in ("root", "transcript_dir"):  # paths in a config file are relative to that file
            if key in values and isinstance(values[key], str):
                values[key] = str(config_file.parent / values[key])
    for key, value in cli.items():
        if value is not None:
            values[key], sources[key] = value, f"--{key.replace('_', '-')}"
    if "root" not in values and env.get("MLOPS_LOG_ROOT"):
        values["root"], sources["root"] = env["MLOPS_LOG_ROOT"], "MLOPS_LOG_ROOT"

    def src(key: str) -> str:
        return sources.get(key, key)

    out: dict[str, Any] = {"sources": sources}
    if "root" in values:
        out["root"] = Path(str(values["root"]))
    if "services" in values:
        out["services"] = tuple(_names(values["services"], name=src("services")))
        if not out["services"]:
            raise LogSetupError(f"{src('services')}: no service named: list at least one, e.g. fastapi,vllm")
    services = out.get("services", DEFAULT_SERVICES)
    if "unused" in values:
        unused = _names(values["unused"], name=src("unused"))
        strays = [name for name in unused if name not in services]
        if strays:
            raise LogSetupError(f"{src('unused')}: {', '.join(strays)} is not an audited service "
                                f"({', '.join(services)}): add it to --services or drop it")
        out["unused"] = tuple(unused)
    if "max_age" in values:
        out["max_age"] = parse_duration(values["max_age"], name=src("max_age"))
    if "min_complete" in values:
        out["min_complete"] = _share(values["min_complete"], name=src("min_complete"))
    if "sample_lines" in values:
        out["sample_lines"] = _positive_int(values["sample_lines"], name=src("sample_lines"))
    if "sample_bytes" in values:
        size = parse_size(values["sample_bytes"], name=src("sample_bytes"))
        if size < 1024:
            raise LogSetupError(f"{src('sample_bytes')}={values['sample_bytes']!r} is too small: use at least 1k")
        out["sample_bytes"] = size
    if "transcript_dir" in values:
        out["transcript_dir"] = Path(str(values["transcript_dir"]))
    if values.get("transcript") is False:
        out["transcript_dir"] = None
    if "probe" in values:
        out["probes"] = tuple(_probes(values["probe"], name=src("probe")))
    if "probe_timeout" in values:
        out["probe_timeout"] = parse_duration(values["probe_timeout"], name=src("probe_timeout"))
    return CheckSettings(**out)


def _share(value: Any, *, name: str) -> float:
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise LogSetupError(f"{name}={value!r} is not a share: use e.g. 0.99 or 99%") from None
    if not 0.0 <= share <= 1.0:
        raise LogSetupError(f"{name}={value!r} must be between 0 and 1 (or 0% and 100%)")
    return share


def _positive_int(value: Any, *, name: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise LogSetupError(f"{name}={value!r} is not a whole number") from None
    if number < 1:
        raise LogSetupError(f"{name}={value!r} must be at least 1")
    return number
