"""logwrap's command line: parsing it into :class:`Options`, how they and ``MLOPS_*`` resolve into settings, and
:func:`main`."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from .._errors import LogSetupError
from .._framer import speedups_enabled
from .._settings import LogSettings, parse_size, resolve_settings, speedups_requested
from .._version import __version__
from ._command import service_from_command
from ._options import Options
from ._process import say, tune_malloc
from ._supervisor import Supervisor

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "EXIT_USAGE",
    "SETTING_NAMES",
    "USAGE",
    "UsageError",
    "main",
    "parse_args",
    "settings_for",
]

EXIT_USAGE = 2  #: bad options, bad settings (CLI or MLOPS_* environment)


class UsageError(Exception):
    """A bad command line or setting: one line naming the problem and the fix; exit status 2."""


USAGE = """\
usage: logwrap [options] [--] CMD [ARGS...]

Run CMD, pass its stdout/stderr through, write one record per line to <log dir>/<service>.log,
forward signals, reap zombies and exit with CMD's status (128+N when it died of signal N).
The first argument that is not an option starts CMD; '--' is needed only when CMD starts with '-'.

options (environment variable in brackets):
  --service NAME        service name [MLOPS_SERVICE]; default: named after CMD
                        (its base name; python -m pkg.mod and python pkg.py: pkg)
  --log-dir DIR         log directory [MLOPS_LOG_DIR, else $MLOPS_LOG_ROOT/<service>, root ./logs]
  --format json|text    record format [MLOPS_LOG_FORMAT]; default json
  --split-streams       write <service>.stdout.log and <service>.stderr.log instead of <service>.log
  --no-passthrough      do not copy CMD's output to our stdout/stderr
  --passthrough-timeout S
                        a reader of our stdout/stderr that takes nothing for S seconds while bytes wait
                        for it is stuck: past 1 MiB its bytes are dropped (counted) until it reads again
                        (default 2); a slower reader only slows CMD down, as a pipe does
  --no-tty              do not give CMD a pseudo-terminal when our stdin and stdout are one (docker run -it)
  --max-line-bytes N    split longer lines into records marked partial (default 64KiB)
  --max-bytes N         rotate the file at N bytes (k/M/G suffixes) [MLOPS_LOG_MAX_BYTES]; default off
  --backups K           rotated files to keep [MLOPS_LOG_BACKUPS]; default 5 with --max-bytes
  --file-mode MODE      mode of the log file when created [MLOPS_LOG_FILE_MODE]; default 0640 (the images: 0644)
  --buffer-bytes N      records held in memory while the file cannot be written (default 16MiB)
  --strict              exit 125 before starting CMD when the log file cannot be set up [MLOPS_LOG_STRICT=1]
  --signal-group        run CMD in its own session and signal its whole process group; when CMD
                        exits, what it left in its group gets TERM (and KILL after --kill-after)
  --kill-after S        SIGKILL CMD when it is still alive S seconds after the first TERM/INT (default off)
  --subreaper           reap orphaned grandchildren (automatic as PID 1)
  --drain-timeout S     after CMD exits, wait at most S more seconds for its pipes to close and
                        (as a reaper) its orphans to exit (default 2)
  -h, --help            show this help
  --version             show the version

exit status: CMD's; 2 bad usage; 125 --strict setup failure; 126 CMD not executable; 127 CMD not found.
"""


def _size(name: str, value: str) -> int:
    try:
        return parse_size(value, name=name)
    except LogSetupError as exc:
        raise UsageError(str(exc)) from None


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (0 <= seconds < 1e9):
        raise UsageError(f"{name} {value!r} is not a number of seconds: use e.g. 2 or 0.5")
    return seconds


def _count(name: str, value: str) -> int:
    if not value.isdigit():
        raise UsageError(f"{name} {value!r} is not a whole number")
    return int(value)


def _format(name: str, value: str) -> str:
    if value.lower() not in ("json", "text"):
        raise UsageError(f"{name} {value!r} is not known: use json or text")
    return value.lower()


def _name(name: str, value: str) -> str:
    if not value:
        raise UsageError(f"{name} needs a non-empty name (leave the option out to use the command's base name)")
    return value


def _line_bytes(name: str, value: str) -> int:
    size = _size(name, value)
    if size < 64:
        raise UsageError(f"{name} {value!r} is too small: use at least 64 bytes (default 64KiB)")
    return size


def _text(name: str, value: str) -> str:
    return value


#: Options that take a value -> (the Options field, what checks and converts the value).
_VALUED: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "--service": ("service", _name), "--log-dir": ("log_dir", _text), "--format": ("fmt", _format),
    "--passthrough-timeout": ("passthrough_timeout", _seconds), "--max-line-bytes": ("max_line_bytes", _line_bytes),
    "--max-bytes": ("max_bytes", _size), "--backups": ("backups", _count), "--file-mode": ("file_mode", _text),
    "--buffer-bytes": ("buffer_bytes", _size), "--kill-after": ("kill_after", _seconds),
    "--drain-timeout": ("drain_timeout", _seconds),
}
#: Flags -> (the Options field, the value the flag sets).
_FLAGS: dict[str, tuple[str, bool]] = {
    "--split-streams": ("split_streams", True), "--no-passthrough": ("passthrough", False), "--no-tty": ("tty", False),
    "--strict": ("strict", True), "--signal-group": ("signal_group", True), "--subreaper": ("subreaper", True),
    "--help": ("help", True), "-h": ("help", True), "--version": ("version", True),
}


def parse_args(argv: Sequence[str]) -> Options:
    """Parse ``[options] [--] CMD [ARGS...]``; raise :class:`UsageError` with a one-line message on bad usage.

    As with tini, dumb-init and ``env``, the first argument that is not an option starts the command (``--`` is only
    needed when the command itself starts with ``-``); everything after it is the command's, untouched."""
    values: dict[str, Any] = {}
    i = 0
    command: list[str] | None = None
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            command = list(argv[i + 1:])
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAGS:
            if eq:
                raise UsageError(f"option {name} takes no value")
            field_name, flag_value = _FLAGS[name]
            values[field_name] = flag_value
        elif name in _VALUED:
            if not eq:
                i += 1
                if i >= len(argv) or argv[i] == "--":
                    raise UsageError(f"option {name} needs a value")
                value = argv[i]
            field_name, convert = _VALUED[name]
            values[field_name] = convert(name, value)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {name!r}: see 'logwrap --help'")
        else:
            command = list(argv[i:])
            break
        i += 1
    if values.get("help") or values.get("version"):
        return Options(**values)
    if not command:
        raise UsageError("no command given: use 'logwrap [options] [--] CMD [ARGS...]'")
    if command[0] == "":
        raise UsageError("the command is an empty string: use 'logwrap [options] [--] CMD [ARGS...]'")
    return Options(command=tuple(command), **values)


SETTING_NAMES = {"service": "--service", "log_dir": "--log-dir", "fmt": "--format", "strict": "--strict",
                 "max_bytes": "--max-bytes", "backups": "--backups", "file_mode": "--file-mode"}


def settings_for(opts: Options, env: Mapping[str, str]) -> LogSettings:
    """Resolve service, directory, format, strictness and rotation from the options, then ``MLOPS_*``, then defaults."""
    service = opts.service or env.get("MLOPS_SERVICE") or service_from_command(opts.command)
    return resolve_settings(
        service,
        log_dir=opts.log_dir,
        fmt=opts.fmt,
        strict=opts.strict,
        max_bytes=opts.max_bytes,
        backups=opts.backups,
        file_mode=opts.file_mode,
        env=env,
        names=SETTING_NAMES,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``logwrap [options] [--] CMD [ARGS...]``: returns the exit status (the child's, or 2/125/126/127)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = parse_args(args)
    except UsageError as exc:
        say(f"{exc}")
        return EXIT_USAGE
    if opts.help:
        sys.stdout.write(USAGE)
        sys.stdout.flush()
        return 0
    if opts.version:
        framer = "C speedups" if speedups_enabled() else "pure Python (no C speedups)"
        sys.stdout.write(f"logwrap (mlops-logging) {__version__}, framer: {framer}\n")
        sys.stdout.flush()
        return 0
    try:
        settings = settings_for(opts, os.environ)
        speedups_requested(os.environ)  # MLOPS_LOG_SPEEDUPS=2 is a bad setting, refused here (the framer is lenient)
    except LogSetupError as exc:
        say(f"{exc}")
        return EXIT_USAGE
    tune_malloc()
    # Everything imported so far lives as long as the process: keep it out of the cyclic GC's scans (the loop itself
    # makes no reference cycles; measured with perf: ~3% of logwrap's time went to collecting).
    gc.freeze()
    return Supervisor(opts, settings).run()

