"""logwrap: the container entrypoint shim that runs a server, passes its output through and tees it into log files.

``logwrap [options] -- CMD [ARGS...]`` (or ``python -m mlops_logging.wrap ...``). Modelled on tini, dumb-init and
s6-log: one event loop (``selectors`` over the child's two pipes or its pseudo-terminal, a signalfd, and, when they
have bytes waiting, our own stdout/stderr) with timers for idle flushes, write retries, stuck readers,
``--kill-after`` and the drain deadline; explicit states STARTING -> RUNNING -> DRAINING -> EXITED; every syscall
error handled on purpose.

Signals (tini's and dumb-init's rules): every signal a process can catch is forwarded, but CHLD (logwrap reaps) and
the faults of logwrap itself (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT); TSTP/TTIN/TTOU are forwarded, then logwrap stops
itself until a CONT, which is forwarded too. The child starts with the signal mask and dispositions logwrap was
started with (an ignored signal stays ignored and is not forwarded).

Failure policy: the child is never blocked by the log file (records are buffered up to ``--buffer-bytes`` and retried
every second, the oldest dropped and counted past the bound, the loss reported in a WARNING record once writing works)
and only slowed down by a slow passthrough reader (while 1 MiB waits for it, the child's pipe is not read); a reader
that takes nothing for ``--passthrough-timeout`` seconds is stuck: passthrough bytes are dropped and counted until it
reads again, the log file keeps every line. A failing passthrough is turned off. Records are written whole: a write
cut short by a full disk is trimmed back to the last complete record, so the file never holds a torn line.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import os
import re
import select
import selectors
import shlex
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ._errors import LogSetupError, describe_os_error
from ._files import LogFile, ensure_log_dir
from ._records import REDACTED, format_timestamp, is_secret_key, render_wrapper_record
from ._settings import LogSettings, parse_size, resolve_settings
from ._sink import WRITE_SLICE, FileSink

__all__ = [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "EXIT_SETUP",
    "EXIT_USAGE",
    "Options",
    "Passthrough",
    "SignalInbox",
    "State",
    "Supervisor",
    "UsageError",
    "main",
    "parse_args",
    "redact_argv",
    "service_from_command",
]

PROG = "logwrap"
EXIT_USAGE = 2  #: bad options, bad settings (CLI or MLOPS_* environment)
EXIT_SETUP = 125  #: --strict and the log file cannot be set up (like env/timeout/docker run: "the wrapper failed")
EXIT_CANNOT_EXECUTE = 126  #: the command exists but cannot be run (permission, directory, exec format)
EXIT_NOT_FOUND = 127  #: the command was not found

#: Signals logwrap never forwards: KILL and STOP cannot be caught, CHLD tells it that a child exited, and a fault of
#: logwrap itself (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT) keeps its default action, as tini leaves them.
NOT_FORWARDED = frozenset({
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
    signal.SIGTRAP, signal.SIGSYS, signal.SIGABRT,
})
#: Every other signal is forwarded: on Linux 1-31 (HUP, INT, QUIT, USR1, USR2, PIPE, ALRM, TERM, STKFLT, CONT, TSTP,
#: TTIN, TTOU, URG, XCPU, XFSZ, VTALRM, PROF, WINCH, IO, PWR) and SIGRTMIN..SIGRTMAX.
FORWARDED_SIGNALS = frozenset(int(sig) for sig in signal.valid_signals()) - NOT_FORWARDED
#: Job control (dumb-init's rule): forwarded, then logwrap stops itself; the CONT that wakes it is forwarded too.
JOB_CONTROL_SIGNALS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
#: Python sets these to SIG_IGN at start-up, so how logwrap was started with them is unknowable: the child gets the
#: default action (as subprocess gives it) and logwrap forwards them like the others.
PYTHON_IGNORED = frozenset({signal.SIGPIPE, signal.SIGXFSZ})
KILL_AFTER_TRIGGERS = (signal.SIGTERM, signal.SIGINT)

READ_CHUNK = 256 * 1024  #: one os.read from a child pipe
PIPE_SIZE = 1024 * 1024  #: asked for with F_SETPIPE_SZ, so a burst does not stall the child while we write
PASSTHROUGH_BUFFER = 1024 * 1024  #: per stream; when this much waits for a reader, the child's pipe is not read
DEFAULT_PASSTHROUGH_TIMEOUT = 2.0  #: a reader that takes nothing for this long while the buffer is full is stuck
TTY_INPUT_BUFFER = 64 * 1024  #: keystrokes and pastes waiting for the child's terminal; stdin is not read past it
GROUP_POLL_INTERVAL = 0.05  #: how often the process group of an exited child is checked for leftovers
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
DEFAULT_DRAIN_TIMEOUT = 2.0
DEFAULT_MAX_LINE_BYTES = 64 * 1024
PR_SET_CHILD_SUBREAPER = 36
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class UsageError(Exception):
    """A bad command line or setting: one line naming the problem and the fix; exit status 2."""


class State(Enum):
    """The supervisor's life: set up, run the child, drain its pipes after it exited, done."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    EXITED = "exited"


# --- command line -----------------------------------------------------------------------------------------------------

USAGE = """\
usage: logwrap [options] -- CMD [ARGS...]

Run CMD, pass its stdout/stderr through, write one record per line to <log dir>/<service>.log,
forward signals, reap zombies and exit with CMD's status (128+N when it died of signal N).

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
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    strict: bool | None = None
    signal_group: bool = False
    kill_after: float | None = None
    subreaper: bool = False
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    help: bool = False
    version: bool = False


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


# option -> (Options field, converter or None for a flag, value a flag sets)
_OPTIONS: dict[str, tuple[str, Callable[[str, str], Any] | None, Any]] = {
    "--service": ("service", _name, None),
    "--log-dir": ("log_dir", lambda _n, v: v, None),
    "--format": ("fmt", _format, None),
    "--split-streams": ("split_streams", None, True),
    "--no-passthrough": ("passthrough", None, False),
    "--passthrough-timeout": ("passthrough_timeout", _seconds, None),
    "--no-tty": ("tty", None, False),
    "--max-line-bytes": ("max_line_bytes", _line_bytes, None),
    "--max-bytes": ("max_bytes", _size, None),
    "--backups": ("backups", _count, None),
    "--buffer-bytes": ("buffer_bytes", _size, None),
    "--strict": ("strict", None, True),
    "--signal-group": ("signal_group", None, True),
    "--kill-after": ("kill_after", _seconds, None),
    "--subreaper": ("subreaper", None, True),
    "--drain-timeout": ("drain_timeout", _seconds, None),
    "--help": ("help", None, True),
    "-h": ("help", None, True),
    "--version": ("version", None, True),
}


def parse_args(argv: Sequence[str]) -> Options:
    """Parse ``[options] -- CMD [ARGS...]``; raise :class:`UsageError` with a one-line message on bad usage."""
    values: dict[str, Any] = {}
    i = 0
    command: list[str] | None = None
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            command = list(argv[i + 1:])
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = _OPTIONS.get(name)
        if spec is None:
            if arg.startswith("-") and arg != "-":
                raise UsageError(f"unknown option {name!r}: see 'logwrap --help'")
            raise UsageError(f"missing '--' before the command: use 'logwrap [options] -- {arg} ...'")
        field_name, convert, flag_value = spec
        if convert is None:
            if eq:
                raise UsageError(f"option {name} takes no value")
            values[field_name] = flag_value
        else:
            if not eq:
                i += 1
                if i >= len(argv) or argv[i] == "--":
                    raise UsageError(f"option {name} needs a value")
                value = argv[i]
            values[field_name] = convert(name, value)
        i += 1
    if values.get("help") or values.get("version"):
        return Options(**values)
    if command is None:
        raise UsageError("missing '--' and a command: use 'logwrap [options] -- CMD [ARGS...]'")
    if not command or command[0] == "":
        raise UsageError("no command after '--': use 'logwrap [options] -- CMD [ARGS...]'")
    return Options(command=tuple(command), **values)


_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_PYTHON = re.compile(r"(?:python|pypy)(?:\d+(?:\.\d+)*)?[a-z]?")  #: python, python3, python3.11, python3.13t, pypy3
_PYTHON_VALUE_FLAGS = "WX"  #: python's one-letter options that take a value (-c and -m end the options)
_ENV_VALUE_FLAGS = ("-u", "--unset", "-C", "--chdir")  #: env's options that take a value
_LAUNCHERS = ("uv", "poetry", "pdm", "pipenv", "hatch", "rye")  #: `<launcher> run CMD ...` runs CMD


def _as_name(word: str) -> str:
    name = _NOT_NAME.sub("_", word)
    return re.sub(r"\.{2,}", ".", name).lstrip("._")[:128]


def _python_target(args: Sequence[str]) -> str | None:
    """What ``python ARGS`` runs, as a name: ``-m pkg.mod`` -> ``pkg``, ``path/train.py`` -> ``train``; None for
    ``-c CODE``, ``-`` (stdin) and a bare interpreter. Options before ``-m`` are skipped as python parses them."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--check-hash-based-pycs":
            i += 2
            continue
        if arg == "--":
            return _python_target([args[i + 1]]) if i + 1 < len(args) and not args[i + 1].startswith("-") else None
        if arg.startswith("--"):
            i += 1
            continue
        if arg == "-" or not arg.startswith("-"):
            return None if arg == "-" else os.path.basename(arg).removesuffix(".py")
        skip = 1
        for j, flag in enumerate(arg[1:], 1):
            if flag in "cm" or flag in _PYTHON_VALUE_FLAGS:
                value = arg[j + 1:] or (args[i + 1] if i + 1 < len(args) else "")
                if flag == "c":
                    return None
                if flag == "m":
                    return value.split(".", 1)[0] or None
                skip = 1 if arg[j + 1:] else 2
                break
        i += skip
    return None


def _skip_env(args: Sequence[str]) -> list[str]:
    """``env [OPTIONS] [NAME=VALUE]... CMD ARGS`` -> ``CMD ARGS`` (``-S STRING`` is split into words as env does)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _ENV_VALUE_FLAGS:
            i += 2
        elif arg.startswith(("-S", "--split-string")):
            if arg in ("-S", "--split-string"):
                text, rest = (args[i + 1] if i + 1 < len(args) else ""), args[i + 2:]
            else:
                text, rest = (arg.split("=", 1)[-1] if arg.startswith("--") else arg[2:]), args[i + 1:]
            try:
                return [*shlex.split(text), *rest]
            except ValueError:  # unbalanced quotes: env itself will refuse them; the name stays "env"
                return []
        elif arg == "--":
            return list(args[i + 1:])
        elif (arg.startswith("-") and arg != "-") or _ENV_ASSIGN.fullmatch(arg):
            i += 1
        else:
            return list(args[i:])
    return []


def service_from_command(command: str | Sequence[str]) -> str:
    """The service name logwrap uses when none is given, from the command line it runs.

    The program's base name (``/usr/bin/vllm serve`` -> ``vllm``, ``mlflow server`` -> ``mlflow``), except that a
    Python interpreter (``python``, ``python3.11``, ``pypy3``...) is named after what it runs: ``python -m
    vllm.entrypoints.cli.main`` -> ``vllm`` (the top package), ``python -u -X dev -m pkg`` -> ``pkg``, ``python
    train.py`` -> ``train``; ``env [NAME=VALUE...] CMD`` and ``uv/poetry/pdm/pipenv/hatch/rye run CMD`` are named
    after CMD. Anything else, and a launcher given options of its own, keeps the program's base name: pass
    ``--service`` there. Made into a valid name (``[A-Za-z0-9_.-]``, no leading dot, at most 128 characters).
    """
    argv = [command] if isinstance(command, str) else list(command)
    name = ""
    while argv:
        program = os.path.basename(argv[0].rstrip("/"))
        name = _as_name(program)
        if program == "env":
            argv = _skip_env(argv[1:])
        elif program in _LAUNCHERS and len(argv) > 2 and argv[1] == "run" and not argv[2].startswith("-"):
            argv = argv[2:]
        else:
            target = _python_target(argv[1:]) if _PYTHON.fullmatch(program) else None
            name = _as_name(target) if target and _as_name(target) else name
            break
    return name or "service"


#: How logwrap spells the settings, for resolve_settings' messages.
SETTING_NAMES = {"service": "--service", "log_dir": "--log-dir", "fmt": "--format", "strict": "--strict",
                 "max_bytes": "--max-bytes", "backups": "--backups"}


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
        env=env,
        names=SETTING_NAMES,
    )


# --- redaction of the echoed command line ---------------------------------------------------------------------------

_ENV_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(.*)", re.S)
_HEADER = re.compile(r"([A-Za-z0-9-]+):\s*\S.*", re.S)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^/@\s]*@")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Hide secrets in a command line: ``--api-key X``, ``--token=X``, ``HF_TOKEN=X``, ``Authorization: X``, URL
    passwords (flag and variable names judged by :func:`records.is_secret_key`)."""
    out: list[str] = []
    hide_next = False
    for index, arg in enumerate(argv):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if index > 0 and arg.startswith("-") and len(arg) > 1:
            name, eq, _value = arg.partition("=")
            if is_secret_key(name.lstrip("-")):
                if eq:
                    out.append(f"{name}={REDACTED}")
                else:
                    out.append(arg)
                    hide_next = True
                continue
        assign = _ENV_ASSIGN.fullmatch(arg)
        if assign and is_secret_key(assign.group(1)):
            out.append(f"{assign.group(1)}={REDACTED}")
            continue
        header = _HEADER.fullmatch(arg)
        if header and is_secret_key(header.group(1)):
            out.append(f"{header.group(1)}: {REDACTED}")
            continue
        out.append(_URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", arg))
    return out


# --- small helpers ----------------------------------------------------------------------------------------------------


def _say(message: str) -> None:
    """One line on our own stderr; never raises (stderr may be closed or broken)."""
    try:
        os.write(2, f"{PROG}: {message}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _signal_name(sig: int) -> str:
    if signal.SIGRTMIN < sig < signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _set_nonblocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


def become_subreaper() -> str | None:
    """``prctl(PR_SET_CHILD_SUBREAPER, 1)``: orphaned descendants are re-parented to us. Returns an error or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            return describe_os_error(OSError(err, os.strerror(err)))
    except (OSError, AttributeError) as exc:
        return str(exc)
    return None


# --- signals ------------------------------------------------------------------------------------------------------


_SIGINFO = struct.Struct("=IiiI")  #: ssi_signo, ssi_errno, ssi_code, ssi_pid: the head of a struct signalfd_siginfo
_SIGINFO_SIZE = 128


def _signalfd(signals: frozenset[int]) -> int:
    """signalfd(2) for ``signals`` (non-blocking, close-on-exec); raises OSError where it cannot be made."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        make = libc.signalfd
    except (OSError, AttributeError) as exc:
        raise OSError(errno.ENOSYS, f"no signalfd: {exc}") from None
    mask = (ctypes.c_uint64 * 16)()  # glibc's sigset_t: 1024 bits
    for sig in signals:
        mask[(sig - 1) // 64] |= 1 << ((sig - 1) % 64)
    fd = make(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC)  # SFD_NONBLOCK, SFD_CLOEXEC
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def _no_op(signum: int, frame: object) -> None:
    """The Python-level handler of the fallback: the work happens when the wakeup fd wakes the loop."""


class SignalInbox:
    """The signals logwrap handles, read by the event loop as ``(signal, sender pid)`` from one descriptor.

    Normally a signalfd(2): the signals are blocked, as tini blocks them for ``sigtimedwait``, so none can kill
    logwrap or interrupt a system call, a signal blocked when logwrap started is received all the same, and each one
    comes with its sender (the SIGPIPE that our own write to a closed reader raises has our pid: not forwarded).
    Where signalfd cannot be made (seccomp, not Linux) it falls back to Python handlers and ``signal.set_wakeup_fd``:
    no sender then, and SIGPIPE and SIGXFSZ (which our own writes raise) stay ignored, so they are not forwarded.

    What logwrap was started with is kept for the child: a signal that was ignored is not handled at all (the child
    inherits it ignored, and it is never forwarded), and ``child_mask`` is the mask to restore in the child.
    """

    def __init__(self) -> None:
        self.child_mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        self.ignored = frozenset(sig for sig in FORWARDED_SIGNALS - PYTHON_IGNORED
                                 if signal.getsignal(sig) == signal.SIG_IGN)
        self.forwarded = FORWARDED_SIGNALS - self.ignored
        self.mode = ""
        self._handled = self.forwarded | {signal.SIGCHLD}
        self._chld = signal.getsignal(signal.SIGCHLD)
        self._fd = -1
        self._wake_w = -1

    def open(self) -> str | None:
        """Start receiving; returns a one-line note when only the fallback could be set up."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an ignored CHLD would let the kernel reap the child for us
        signal.pthread_sigmask(signal.SIG_BLOCK, self._handled)  # first: none of them may kill us from here on
        try:
            self._fd = _signalfd(self._handled)
            self.mode = "signalfd"
            return None
        except OSError as exc:
            problem = describe_os_error(exc)
        self._fd, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in self._handled - PYTHON_IGNORED:  # our own EPIPE and EFBIG raise these: left ignored
            signal.signal(sig, _no_op)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._handled)
        self.mode = "handlers"
        return (f"signalfd failed ({problem}): signals are caught by handlers instead, without their sender; "
                "SIGPIPE and SIGXFSZ are not forwarded")

    def fileno(self) -> int:
        """The descriptor that is readable when signals arrived."""
        return self._fd

    def read(self) -> list[tuple[int, int]]:
        """The signals that arrived, oldest first, with the sender's pid (0: the kernel, or not known)."""
        try:
            data = os.read(self._fd, _SIGINFO_SIZE * 64)
        except (BlockingIOError, InterruptedError):
            return []
        if self.mode == "handlers":
            return [(sig, 0) for sig in data]
        return [(info[0], info[3]) for info in
                (_SIGINFO.unpack_from(data, offset) for offset in range(0, len(data), _SIGINFO_SIZE))]

    def close(self) -> None:
        """Give the signals back their dispositions and mask (logwrap is about to exit, or a test goes on)."""
        if self.mode == "handlers":
            for sig in self._handled - PYTHON_IGNORED:
                try:
                    signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
                except (OSError, ValueError):
                    pass
            signal.set_wakeup_fd(-1)
        for fd in (self._fd, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._fd = self._wake_w = -1
        if self.mode:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.child_mask)
            signal.signal(signal.SIGCHLD, self._chld if self._chld is not None else signal.SIG_DFL)
        self.mode = ""


def process_group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, from /proc."""
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(name))
    return sorted(members)


# --- passthrough ------------------------------------------------------------------------------------------------------


class Passthrough:
    """Copies one stream byte for byte to a target without ever blocking: the child's output to our stdout or stderr,
    or (on a terminal) our stdin to the child's pseudo-terminal.

    How it writes depends on what the target is: a regular file or ``/dev/null`` is written directly (it never
    blocks); a pipe, FIFO or terminal is reopened through ``/proc/self/fd`` with ``O_NONBLOCK`` on a private file
    description (so the shared one, maybe also the child's stdin, keeps its flags); a socket gets
    ``send(MSG_DONTWAIT)``; when reopening fails, writes of at most PIPE_BUF bytes are made only after ``poll`` says
    the target is writable; ``reopen=False``: a descriptor of our own, already non-blocking.

    Backpressure: bytes the target cannot take yet are queued, and once ``bound`` bytes wait, :attr:`full` tells the
    event loop to stop reading the source (the child then waits on its pipe, as with any slow pipe reader) for as long
    as the reader makes progress. A reader that takes nothing for ``stuck_after`` seconds while bytes wait for it is
    stuck: the source is read again (so the log file keeps every line and the child never blocks for good) and bytes
    past the bound are dropped and counted, until the reader takes bytes again; then a WARNING record says how many
    were lost. ``stuck_after=None``: never stuck. A write error (EPIPE, EBADF, EIO...) turns it off for the rest of
    the run, with a WARNING record unless ``quiet``.
    """

    def __init__(self, stream: str, fd: int, *, bound: int, note: Callable[..., None], enabled: bool = True,
                 stuck_after: float | None = DEFAULT_PASSTHROUGH_TIMEOUT, reopen: bool = True,
                 quiet: bool = False) -> None:
        self.stream = stream
        self.bound = bound
        self.stuck_after = stuck_after
        self._note = note
        self._quiet = quiet
        self._queue: deque[bytes | memoryview] = deque()
        self._queued = 0
        self.stuck = False
        self._progress_at = 0.0  # monotonic: the target's last write, or when the queue started to fill
        self.dropped = 0
        self._drop_first = 0.0
        self._drop_last = 0.0
        self.failed = False
        self.enabled = enabled
        self.mode = "off"
        self.fd = -1
        self._sock: socket.socket | None = None
        self._owned = False  # self.fd is ours to close
        if enabled:
            if reopen:
                self._open(fd)
            else:
                self.fd, self.mode, self._owned = fd, "direct", True

    def _open(self, fd: int) -> None:
        try:
            st = os.fstat(fd)
        except OSError:
            self.enabled = False
            return
        self.fd = fd
        if stat.S_ISREG(st.st_mode) or (stat.S_ISCHR(st.st_mode) and not os.isatty(fd)):
            self.mode = "direct"
            return
        if stat.S_ISSOCK(st.st_mode):  # journald's stdout stream, a log shipper's socket
            copy = os.dup(fd)
            try:
                self._sock = socket.socket(fileno=copy)
                self.fd = self._sock.fileno()
                self.mode = "socket"
                return
            except OSError:
                os.close(copy)
        try:
            self.fd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            self.mode = "nonblocking"
            self._owned = True
        except OSError:
            self.fd = fd
            self.mode = "guarded"

    @property
    def wants_write(self) -> bool:
        """True when bytes are queued waiting for the target to become writable."""
        return bool(self._queue)

    @property
    def queued(self) -> int:
        """Bytes waiting for the target."""
        return self._queued

    @property
    def full(self) -> bool:
        """True while the source should not be read: ``bound`` bytes wait and the reader is not stuck."""
        return self._queued >= self.bound and not self.stuck

    def next_deadline(self) -> float | None:
        """Monotonic time at which the reader counts as stuck if it takes nothing (None: nothing waits, already
        stuck, or never stuck)."""
        if self.stuck_after is None or self.stuck or not self._queue:
            return None
        return self._progress_at + self.stuck_after

    def check(self, now: float) -> None:
        """Declare the reader stuck once it took nothing for ``stuck_after`` seconds while bytes waited for it."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self.stuck = True

    def push(self, data: bytes, now: float, *, force: bool = False) -> None:
        """Pass ``data`` through now, or queue it; while the reader is stuck and the queue full, drop and count it
        (``force``: queue it anyway, for the bounded rest of a pipe read at exit)."""
        if not self.enabled or not data:
            return
        if self._queue:
            if self.stuck and not force and self._queued + len(data) > self.bound:
                self._count_drop(len(data))
                return
            self._queue.append(data)
            self._queued += len(data)
            return
        self._progress_at = now  # the reader is waited for from now on
        self._queue.append(data)
        self._queued += len(data)
        self.on_writable(now)

    def on_writable(self, now: float) -> None:
        """Write as much of the queue as the target takes without blocking."""
        while self._queue and self.enabled:
            chunk = self._queue[0]
            try:
                n = self._send(chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail(exc)
                return
            if n:
                self._progress_at = now
                self.stuck = False
            self._queued -= n
            if n >= len(chunk):
                self._queue.popleft()
            else:
                self._queue[0] = memoryview(chunk)[n:]
        if self.dropped and not self.stuck:
            self.report_drops()

    def _send(self, chunk: bytes | memoryview) -> int:
        if self.mode == "socket":
            assert self._sock is not None
            return self._sock.send(chunk, socket.MSG_DONTWAIT)
        if self.mode == "guarded":
            ready = select.poll()
            ready.register(self.fd, select.POLLOUT)
            if not ready.poll(0):
                raise BlockingIOError(errno.EAGAIN, "not writable")
            return os.write(self.fd, chunk[: select.PIPE_BUF])
        return os.write(self.fd, chunk)

    def _count_drop(self, n: int) -> None:
        now = time.time()
        if not self.dropped:
            self._drop_first = now
        self.dropped += n
        self._drop_last = now

    def report_drops(self, why: str = "") -> None:
        """Write the WARNING record about passthrough bytes dropped, if any (``why``: other than a stuck reader)."""
        if self.dropped:
            why = why or f"its reader took nothing for {self.stuck_after or 0:g}s, --passthrough-timeout"
            self._note(
                "WARNING",
                f"passthrough of {self.stream} fell behind ({why}): {self.dropped} bytes were not passed through "
                f"between {format_timestamp(self._drop_first)} and {format_timestamp(self._drop_last)}; the log "
                "file has every line",
                stream=self.stream,
                passthrough_dropped_bytes=self.dropped,
            )
            self.dropped = 0

    def abandon(self) -> None:
        """At exit: whatever is still queued counts as dropped, and is reported."""
        queued = self._queued
        if queued:
            self._count_drop(queued)
            self._queue.clear()
            self._queued = 0
        self.report_drops("" if self.stuck or not queued else
                          f"logwrap exited with {queued} bytes still waiting for a reader that was not stuck")

    def _fail(self, exc: OSError) -> None:
        self.enabled = False
        self.failed = True
        lost = self._queued
        self._queue.clear()
        self._queued = 0
        if self._quiet:
            return
        self._note(
            "WARNING",
            f"passthrough of {self.stream} failed ({describe_os_error(exc)}): turned off for the rest of the run "
            f"({lost} queued bytes not passed through); the log file keeps every line",
            stream=self.stream,
            error=describe_os_error(exc),
        )

    def close(self) -> None:
        """Close a private descriptor (never our fd 1/2)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        elif self._owned and self.fd > 2:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = -1


# --- the supervisor ---------------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    """One of the child's outputs (a pipe, or its pseudo-terminal) and what becomes of its bytes."""

    index: int
    name: str
    fd: int
    framer: Any  # lines.StreamFramer, or None without a log file
    sink: FileSink | None
    passthrough: Passthrough
    open: bool = True
    tty: bool = False  # the child's pseudo-terminal: EIO on read is its end (every slave descriptor closed)


@dataclass
class _Terminal:
    """Interactive use (``docker run -it``): our stdin and stdout are a terminal, so the child gets one of its own."""

    master: int
    slave: int
    slave_path: str
    stdin: int = -1  # our stdin, on a private non-blocking file description when possible
    stdin_paused: bool = False  # EIO (logwrap in the background of a shell): read again after the next SIGCONT
    keys: Passthrough | None = None  # our stdin -> the child's terminal
    eof: bytes = b"\x04"  # the child's terminal's EOF character, sent when our stdin ends
    saved: list[Any] | None = None  # our terminal's attributes while it is in raw mode


class Supervisor:
    """Runs the child and the event loop; ``run()`` returns the exit status."""

    def __init__(self, opts: Options, settings: LogSettings) -> None:
        self.opts = opts
        self.settings = settings
        self.state = State.STARTING
        self.child: subprocess.Popen[bytes] | None = None
        self.child_pid = 0
        self.child_status: int | None = None  # raw wait status of the direct child
        self.orphans_reaped = 0
        self._children_left = True  # until waitpid says otherwise
        self.sinks: dict[str, FileSink] = {}  # stream -> sink (both streams share one unless --split-streams)
        self.streams: list[_Stream] = []
        self.signals = SignalInbox()
        self._pid = os.getpid()
        self._sel: selectors.BaseSelector | None = None  # made in run(), after fds 0-2 are known to be taken
        self._watched: dict[tuple[str, int], int] = {}  # selector key data -> fd registered for it
        self._terminal: _Terminal | None = None
        self._kill_at: float | None = None
        self._drain_deadline: float | None = None
        self._drain_ended = False
        self._stop_now = False  # a TERM/INT/QUIT while draining: exit without waiting for passthrough
        self._group_kill_at: float | None = None  # --signal-group --kill-after: KILL for the leftovers of the group
        self._group_check_at: float | None = None  # next look at whether the group's leftovers are gone
        self._group_left = False
        self._forwarded: list[int] = []
        self._kill_trigger = 0  # the TERM/INT that started the --kill-after clock
        self._render: Callable[..., bytes] | None = None
        self._closed_std: set[int] = set()
        self._degraded = False

    @property
    def selector(self) -> selectors.BaseSelector:
        """The event loop's selector (exists once ``run`` started)."""
        assert self._sel is not None
        return self._sel

    # -- records ----------------------------------------------------------------------------------------------------

    def note(self, level: str, message: str, *, stream: str | None = None, **fields: Any) -> None:
        """Queue one logwrap record: in the file of ``stream``, or in every file when no stream is named."""
        if self._render is None or not self.sinks:
            return
        if stream is not None:
            self.sinks[stream].submit(self._render(level, message, stream=stream, **fields))
            return
        data = self._render(level, message, **fields)
        for sink in self._unique_sinks():
            sink.submit(data)

    def _unique_sinks(self) -> list[FileSink]:
        seen: list[FileSink] = []
        for sink in self.sinks.values():
            if sink not in seen:
                seen.append(sink)
        return seen

    def _flush_now(self) -> None:
        """Write what is queued at once (the start records: on disk before the child runs, whatever it does)."""
        now = time.monotonic()
        for sink in self._unique_sinks():
            sink.flush(now)

    # -- setup --------------------------------------------------------------------------------------------------------

    def _guard_std_fds(self) -> None:
        """Make sure fds 0-2 are open (on /dev/null when closed), so no pipe we create lands on them."""
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
                self._closed_std.add(fd)

    def _open_files(self) -> str | None:
        """Create the directory and open the log file(s). Returns the one-line error, or None."""
        s = self.settings
        try:
            ensure_log_dir(s.log_dir)
            names = ("stdout", "stderr") if self.opts.split_streams else (None,)
            opened: dict[str | None, LogFile] = {}
            try:
                for stream in names:
                    path = s.log_dir / (f"{s.service}.{stream}.log" if stream else f"{s.service}.log")
                    # check_interval=0: look at the path before every batch, so a deleted or renamed file is
                    # replaced at once and nothing goes to an unlinked inode (one lstat per batch).
                    opened[stream] = LogFile(path, max_bytes=s.max_bytes, backups=s.backups, check_interval=0.0,
                                             exclusive=True)
            except LogSetupError:
                for logfile in opened.values():
                    logfile.close()
                raise
        except LogSetupError as exc:
            return str(exc)
        service, fmt = s.service, s.fmt

        def render(level: str, message: str, **fields: Any) -> bytes:
            return render_wrapper_record(service=service, level=level, message=message, fmt=fmt, **fields)

        def notice(message: str, fields: dict[str, Any]) -> bytes:
            return render("WARNING", message, **fields)

        self._render = render
        # With size rotation, write at most 1/16 of --max-bytes at a time, so a file overshoots it by little.
        slice_bytes = min(WRITE_SLICE, max(4096, s.max_bytes // 16)) if s.max_bytes else WRITE_SLICE
        sinks = {k: FileSink(v, notice=notice, buffer_bytes=self.opts.buffer_bytes, slice_bytes=slice_bytes)
                 for k, v in opened.items()}
        if self.opts.split_streams:
            self.sinks = {"stdout": sinks["stdout"], "stderr": sinks["stderr"]}
        else:
            self.sinks = {"stdout": sinks[None], "stderr": sinks[None]}
        return None

    def _open_terminal(self) -> str | None:
        """Our stdin and stdout on a terminal (``docker run -it``): make the child a pseudo-terminal of its own, so
        an interactive shell prompts and has job control. Returns a note when that fails (the child gets pipes)."""
        if not self.opts.tty or self._closed_std or not (os.isatty(0) and os.isatty(1)):
            return None
        try:
            master, slave = os.openpty()
        except OSError as exc:
            return f"no pseudo-terminal for the child ({describe_os_error(exc)}): it gets pipes"
        term = _Terminal(master, slave, os.ttyname(slave))
        try:
            termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0))  # the user's settings (erase, intr...)
            term.eof = termios.tcgetattr(slave)[6][termios.VEOF]
        except (termios.error, TypeError):
            pass
        _set_nonblocking(master)
        try:
            term.stdin = os.open("/proc/self/fd/0", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            term.stdin = 0  # read only when the selector says it is readable
        term.keys = Passthrough("stdin", os.dup(master), bound=TTY_INPUT_BUFFER, note=self.note, stuck_after=None,
                                reopen=False, quiet=True)
        self._terminal = term
        self._copy_window_size()
        return None

    def _copy_window_size(self) -> None:
        """Our terminal's size onto the child's (at start and on SIGWINCH; the kernel then signals its foreground
        job with SIGWINCH itself)."""
        if self._terminal is not None:
            try:
                fcntl.ioctl(self._terminal.master, termios.TIOCSWINSZ, fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass

    def _raw_mode(self, on: bool) -> None:
        """Our terminal in raw mode while the child's terminal does the line editing (and back, at exit and while
        stopped)."""
        term = self._terminal
        if term is None:
            return
        try:
            if on and term.saved is None:
                term.saved = termios.tcgetattr(0)
                tty.setraw(0, termios.TCSANOW)
            elif not on and term.saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, term.saved)
                term.saved = None
        except termios.error:
            pass

    def _spawn(self) -> int | None:
        """Start the child on two fresh pipes, or on its pseudo-terminal. Returns an exit status when it cannot be
        started, else None.

        It starts with the signal mask and dispositions logwrap was started with (see :class:`SignalInbox`;
        ``restore_signals`` gives PIPE and XFSZ their default action), in a session of its own with ``--signal-group``
        or a terminal (then its controlling terminal), and with stdin and only the standard descriptors, as before.
        Not ``posix_spawn``: glibc's leaves its internal signals 32 and 33 ignored in the child.
        """
        command = list(self.opts.command)
        term = self._terminal
        mask = self.signals.child_mask

        def child_setup() -> None:  # in the child, between fork and exec
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if term is not None:
                try:
                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the new session's controlling terminal: job control
                except OSError:
                    pass

        stdio: tuple[int | None, int, int]
        if term is not None:
            stdio = (term.slave, term.slave, term.slave)
            outputs = [("stdout", term.master, 1)]
            ours = [term.slave]
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            for fd in (out_r, err_r):
                try:
                    fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass  # over /proc/sys/fs/pipe-max-size for an unprivileged user: the default 64 KiB works too
                _set_nonblocking(fd)
            stdio = (None, out_w, err_w)  # stdin inherited: `docker run -i` keeps working
            outputs = [("stdout", out_r, 1), ("stderr", err_r, 2)]
            ours = [out_w, err_w]
        failure: tuple[int, str] | None = None
        try:
            self.child = subprocess.Popen(  # noqa: S603 - running the user's command is the point
                command, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], close_fds=True,
                start_new_session=self.opts.signal_group or term is not None, preexec_fn=child_setup,
            )
            self.child_pid = self.child.pid
        except FileNotFoundError:
            failure = (EXIT_NOT_FOUND, f"command not found: {command[0]!r} (check the name and PATH)")
        except PermissionError as exc:
            failure = (EXIT_CANNOT_EXECUTE, f"cannot execute {command[0]!r}: {exc.strerror} (is it a directory, "
                                            "or missing the execute permission?)")
        except OSError as exc:
            failure = (EXIT_CANNOT_EXECUTE, f"cannot execute {command[0]!r}: {exc.strerror}")
        except subprocess.SubprocessError as exc:
            failure = (EXIT_CANNOT_EXECUTE, f"cannot execute {command[0]!r}: {exc}")
        finally:
            for fd in ours:
                os.close(fd)
            if term is not None:
                term.slave = -1
        if failure is not None:
            for _name, fd, _target in outputs:
                if term is None:
                    os.close(fd)
            status, message = failure
            _say(message)
            self.note("ERROR", f"logwrap could not start the command: {message}", exit_code=status,
                      command=shlex.join(redact_argv(command)))
            return status
        s = self.settings
        for name, fd, target in outputs:
            sink = self.sinks.get(name)
            framer = None
            if sink is not None:
                from .lines import StreamFramer

                framer = StreamFramer(service=s.service, stream=name, fmt=s.fmt,
                                      max_line_bytes=self.opts.max_line_bytes, pid=self.child_pid)
            enabled = self.opts.passthrough and target not in self._closed_std
            passthrough = Passthrough(name, target, bound=PASSTHROUGH_BUFFER, enabled=enabled, note=self.note,
                                      stuck_after=self.opts.passthrough_timeout)
            self.streams.append(_Stream(len(self.streams), name, fd, framer, sink, passthrough, tty=term is not None))
        return None

    # -- run ----------------------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Set up, start the child, loop until it exited and its pipes are drained; return its exit status."""
        self._guard_std_fds()
        self._sel = selectors.DefaultSelector()
        error = self._open_files()
        if error is not None:
            if self.settings.strict:
                _say(f"{error} (--strict: not starting {self.opts.command[0]!r})")
                return EXIT_SETUP
            _say(f"{error}; running {self.opts.command[0]!r} without log files, output passed through only "
                 "(use --strict / MLOPS_LOG_STRICT=1 to refuse instead)")
        try:
            notes = [self.signals.open(), self._setup_reaping(), self._open_terminal()]
            self._startup_record(*notes)
            self._flush_now()  # the start record is on disk before the child runs
            status = self._spawn()
            if status is not None:
                self._finish_files()
                return status
            self.state = State.RUNNING
            self.note("INFO", f"the child is running (pid {self.child_pid})", child_pid=self.child_pid)
            self._flush_now()
            self._raw_mode(True)
            self._loop()
            return self._finish()
        finally:
            self._raw_mode(False)
            self.signals.close()
            for stream in self.streams:
                stream.passthrough.close()
            term = self._terminal
            if term is not None:
                if term.keys is not None:
                    term.keys.close()
                for fd in (term.slave, term.stdin if term.stdin > 2 else -1):
                    if fd >= 0:
                        os.close(fd)
                if not self.streams:  # the master was never handed to a stream (the command did not start)
                    os.close(term.master)
            if self._sel is not None:
                self._sel.close()

    def _setup_reaping(self) -> str | None:
        if os.getpid() == 1:
            return "running as PID 1: reaping orphaned processes"
        if self.opts.subreaper:
            problem = become_subreaper()
            if problem:
                _say(f"--subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed: {problem}; orphans will not be reaped here")
                return f"--subreaper failed: {problem}"
            return "subreaper: reaping orphaned processes"
        return None

    def _startup_record(self, signals_note: str | None, reaper_note: str | None, tty_note: str | None) -> None:
        s = self.settings
        command = shlex.join(redact_argv(self.opts.command))
        fields: dict[str, Any] = {
            "command": command,
            "pid": self._pid,
            "passthrough": self.opts.passthrough,
            "format": s.fmt,
            "tty": self._terminal is not None,
        }
        if self.sinks:
            from .lines import speedups_enabled

            fields["speedups"] = speedups_enabled()  # the framer's C extension (a slow logwrap says why here)
        if reaper_note:
            fields["reaper"] = reaper_note
        self.note("INFO", f"logwrap started (pid {self._pid}): running {command}", **fields)
        for problem in (signals_note, tty_note):
            if problem:
                self.note("WARNING", f"logwrap: {problem}")
        for fd in sorted(self._closed_std - {0}):
            name = "stdout" if fd == 1 else "stderr"
            self.note("WARNING", f"logwrap's {name} is closed: no passthrough of the child's {name}", stream=name)

    def _loop(self) -> None:
        self.selector.register(self.signals.fileno(), selectors.EVENT_READ, ("signal", -1))
        self._reap()  # the child may already be gone: its SIGCHLD is queued too, but be sure
        while self.state is not State.EXITED:
            self._update_interest()
            now = time.monotonic()
            timeout = self._timeout(now)
            try:
                events = self.selector.select(timeout)
            except InterruptedError:
                events = []
            now = time.monotonic()
            try:
                for key, _mask in events:
                    kind, index = key.data
                    if kind == "read":
                        self._read(self.streams[index], now)
                    elif kind == "signal":
                        self._signals(now)
                    elif kind == "write":
                        self.streams[index].passthrough.on_writable(now)
                    elif kind == "stdin":
                        self._read_stdin(now)
                    elif kind == "keys" and self._terminal is not None and self._terminal.keys is not None:
                        self._terminal.keys.on_writable(now)
                self._tick(now)
            except Exception as exc:  # noqa: BLE001 - a bug in logging must not take the service down
                if self._degraded:
                    raise
                self._degrade(exc)

    def _degrade(self, exc: Exception) -> None:
        """An unexpected error in the record path: say so, then go on with passthrough, signals and reaping only."""
        self._degraded = True
        _say(f"internal error ({type(exc).__name__}: {exc}); log files are off for the rest of the run, "
             "output is still passed through and the child keeps running")
        try:
            self.note("CRITICAL", f"logwrap internal error ({type(exc).__name__}: {exc}): log files are off for the "
                      "rest of the run")
            for sink in self._unique_sinks():
                sink.flush(time.monotonic(), force=True)
                sink.close()
        except Exception:  # noqa: BLE001, S110 - best effort: the files are being given up on
            pass
        self.sinks = {}
        for stream in self.streams:
            stream.framer = None
            stream.sink = None

    def _watch(self, key: tuple[str, int], fd: int, events: int, want: bool) -> None:
        """Keep ``fd`` registered in the selector under ``key`` exactly while ``want``."""
        registered = self._watched.get(key)
        if want and registered is None and fd >= 0:
            try:
                self.selector.register(fd, events, key)
            except (ValueError, KeyError, OSError):
                return  # cannot be watched (never the case for pipes, ttys, sockets): retried next turn
            self._watched[key] = fd
        elif not want and registered is not None:
            try:
                self.selector.unregister(registered)
            except (ValueError, KeyError, OSError):
                pass
            del self._watched[key]

    def _update_interest(self) -> None:
        """Watch what can make progress: a child's output unless its passthrough is full (backpressure), our
        stdout/stderr while passthrough bytes wait for them, on a terminal our stdin and the child's terminal."""
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        for stream in self.streams:
            pt = stream.passthrough
            self._watch(("read", stream.index), stream.fd, read, stream.open and not pt.full)
            self._watch(("write", stream.index), pt.fd, write, pt.wants_write and pt.enabled)
        term = self._terminal
        if term is not None and term.keys is not None:
            self._watch(("stdin", -1), term.stdin, read,
                        term.stdin >= 0 and not term.stdin_paused and not term.keys.full and term.keys.enabled)
            self._watch(("keys", -1), term.keys.fd, write, term.keys.wants_write and term.keys.enabled)

    def _timeout(self, now: float) -> float | None:
        deadlines = [d for d in (self._kill_at, self._drain_deadline, self._group_kill_at, self._group_check_at)
                     if d is not None]
        for stream in self.streams:
            if stream.open and stream.framer is not None:
                deadline = stream.framer.next_deadline()
                if deadline is not None:
                    deadlines.append(deadline)
            deadline = stream.passthrough.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        for sink in self._unique_sinks():
            deadline = sink.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _read(self, stream: _Stream, now: float) -> bool:
        """One read of the child's output: passed through, framed. Returns False at its end."""
        try:
            data = os.read(stream.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            if not (stream.tty and exc.errno == errno.EIO):  # EIO: every descriptor of the terminal is closed
                self.note("WARNING", f"reading the child's {stream.name} failed ({describe_os_error(exc)}): treated as its "
                          "end", stream=stream.name)
            data = b""
        if not data:
            self._close_stream(stream, now)
            return False
        stream.passthrough.push(data, now)
        if stream.framer is not None and stream.sink is not None:
            stream.sink.submit(stream.framer.feed(data, now))
        return True

    def _read_stdin(self, now: float) -> None:
        """Our stdin (a terminal) to the child's terminal; at its end, the terminal's EOF character."""
        term = self._terminal
        assert term is not None and term.keys is not None
        try:
            data = os.read(term.stdin, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: we run in the background of a shell (TTIN is blocked): wait for the CONT of `fg`
            term.stdin_paused = True
            return
        if data:
            term.keys.push(data, now)
            return
        term.keys.push(term.eof, now)  # our terminal hung up
        self._watch(("stdin", -1), term.stdin, selectors.EVENT_READ, False)
        if term.stdin > 2:
            os.close(term.stdin)
        term.stdin = -1

    def _close_stream(self, stream: _Stream, now: float) -> None:
        if not stream.open:
            return
        stream.open = False
        self._watch(("read", stream.index), stream.fd, selectors.EVENT_READ, False)
        os.close(stream.fd)
        if stream.framer is not None and stream.sink is not None:
            stream.sink.submit(stream.framer.close(now))

    def _signals(self, now: float) -> None:
        for sig, sender in self.signals.read():
            if sig == signal.SIGCHLD:
                self._reap()
            elif sender == self._pid:
                continue  # raised by our own write (SIGPIPE for a closed reader, SIGXFSZ past RLIMIT_FSIZE)
            elif sig == signal.SIGWINCH and self._terminal is not None:
                self._copy_window_size()  # the kernel signals the child's foreground job itself
            else:
                if sig == signal.SIGCONT and self._terminal is not None:
                    self._terminal.stdin_paused = False
                self._forward(sig, sender, now)

    def _forward(self, sig: int, sender: int, now: float) -> None:
        if self.child_status is not None:
            # The child is gone and we are draining: a TERM/INT/QUIT asks us to stop now.
            if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) and self._drain_deadline is not None:
                self._drain_deadline = min(self._drain_deadline, now)
                self._stop_now = True
            return
        sent = sig
        if sig in JOB_CONTROL_SIGNALS and self.opts.signal_group:
            # The child's session is not ours, so its process group is orphaned and the kernel would discard these:
            # stop it for real (dumb-init's rule); the CONT that resumes us resumes it.
            sent = signal.SIGSTOP
        try:
            if self.opts.signal_group:
                os.killpg(self.child_pid, sent)
            else:
                os.kill(self.child_pid, sent)
        except ProcessLookupError:
            return
        except OSError as exc:
            self.note("WARNING", f"could not forward {_signal_name(sig)} to the child: {describe_os_error(exc)}",
                      signal=_signal_name(sig))
            return
        if sig != signal.SIGWINCH:
            target = "process group" if self.opts.signal_group else "pid"
            how = f" as {_signal_name(sent)}" if sent != sig else ""
            fields: dict[str, Any] = {"signal": _signal_name(sig)}
            if sender:
                fields["sender_pid"] = sender
            self.note("INFO", f"forwarded {_signal_name(sig)}{how} to the child ({target} {self.child_pid})",
                      **fields)
        self._forwarded.append(sig)
        if sig in KILL_AFTER_TRIGGERS and self.opts.kill_after is not None and self._kill_at is None:
            self._kill_at = now + self.opts.kill_after
            self._kill_trigger = sig
        if sig in JOB_CONTROL_SIGNALS:
            self._stop_self()

    def _stop_self(self) -> None:
        """dumb-init's job-control rule: after forwarding TSTP/TTIN/TTOU, stop ourselves too, until a CONT (which is
        forwarded like any signal). Our terminal leaves raw mode meanwhile."""
        self._flush_now()
        self._raw_mode(False)
        os.kill(self._pid, signal.SIGSTOP)
        self._raw_mode(True)

    def _reap(self) -> None:
        """``waitpid(-1, WNOHANG)`` until nothing is left: the direct child's status is kept, orphans are reaped."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children_left = False  # neither the child nor any adopted orphan is alive
                return
            except InterruptedError:
                continue
            if pid == 0:
                self._children_left = True
                return
            if pid == self.child_pid and self.child_status is None:
                now = time.monotonic()
                self.child_status = status
                if self.child is not None:
                    self.child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
                self._kill_at = None
                self.state = State.DRAINING
                self._drain_deadline = now + self.opts.drain_timeout
                if self.opts.signal_group:
                    self._signal_leftovers(signal.SIGTERM, now)
            else:
                self.orphans_reaped += 1

    def _signal_leftovers(self, sig: int, now: float) -> None:
        """``--signal-group``, the child exited: what it left in its process group gets TERM (dumb-init's rule),
        and KILL ``--kill-after`` seconds later if any of it is still alive. Each step is a record."""
        left = process_group_members(self.child_pid)
        if left:
            try:
                os.killpg(self.child_pid, sig)
            except ProcessLookupError:
                left = []
            except OSError as exc:
                self.note("WARNING", f"could not send {_signal_name(sig)} to what the child left in its process group: "
                          f"{describe_os_error(exc)}", left_in_group=left)
                left = []
        self._group_left = bool(left)
        self._group_check_at = now + GROUP_POLL_INTERVAL if left else None
        if not left:
            return
        count = f"{len(left)} process{'es' if len(left) > 1 else ''}"
        if sig == signal.SIGTERM:
            self.note("INFO", f"the child exited: sent SIGTERM to the {count} it left in its process group "
                      "(--signal-group)", left_in_group=left, signal="SIGTERM")
            if self.opts.kill_after is not None:
                self._group_kill_at = now + self.opts.kill_after
                assert self._drain_deadline is not None
                self._drain_deadline = max(self._drain_deadline, self._group_kill_at + self.opts.drain_timeout)
        else:
            self.note("WARNING", f"{count} the child left in its process group still alive "
                      f"{self.opts.kill_after:g}s after SIGTERM (--kill-after): sent SIGKILL", left_in_group=left,
                      signal="SIGKILL")

    def _tick(self, now: float) -> None:
        """Timers: idle flushes, stuck readers, kill-after, the group's leftovers, drain end; then write what the
        file sinks hold."""
        for stream in self.streams:
            if stream.open and stream.framer is not None and stream.sink is not None:
                deadline = stream.framer.next_deadline()
                if deadline is not None and deadline <= now:
                    stream.sink.submit(stream.framer.flush_idle(now))
            stream.passthrough.check(now)
        if self._kill_at is not None and now >= self._kill_at and self.child_status is None:
            self._kill_at = None
            try:
                if self.opts.signal_group:
                    os.killpg(self.child_pid, signal.SIGKILL)
                else:
                    os.kill(self.child_pid, signal.SIGKILL)
                self.note("WARNING", f"the child was still alive {self.opts.kill_after:g}s after "
                          f"{_signal_name(self._kill_trigger)} (--kill-after): sent SIGKILL", signal="SIGKILL")
            except ProcessLookupError:
                pass
        if self._group_kill_at is not None and now >= self._group_kill_at:
            self._group_kill_at = None
            self._signal_leftovers(signal.SIGKILL, now)
        elif self._group_check_at is not None and now >= self._group_check_at:
            self._group_left = bool(process_group_members(self.child_pid))
            self._group_check_at = now + GROUP_POLL_INTERVAL if self._group_left else None
        if self.state is State.DRAINING:
            self._drain(now)
        for sink in self._unique_sinks():
            sink.flush(now)

    def _drain(self, now: float) -> None:
        """After the child exited: done when its outputs are closed, passthrough has delivered (or its reader is
        stuck) and, as a reaper, adopted orphans and (``--signal-group``) the group's leftovers are gone. At the
        drain deadline the outputs are read one last time and closed, and what was still open or running is said."""
        if self._drain_deadline is not None and now >= self._drain_deadline and not self._drain_ended:
            self._end_drain(now)
        outputs_done = not any(s.open for s in self.streams)
        passthrough_done = self._stop_now or not any(s.passthrough.wants_write and not s.passthrough.stuck
                                                     for s in self.streams)
        # As a reaper, adopted orphans (vLLM's engine, a resource tracker) are waited for too, so they are reaped
        # here instead of ending up as zombies of whoever adopts them after we exit.
        waiting = (self._children_left or self._group_left) and not self._drain_ended
        if outputs_done and passthrough_done and not waiting:
            self.state = State.EXITED

    def _end_drain(self, now: float) -> None:
        self._drain_ended = True
        held = [stream.name for stream in self.streams if stream.open and not self._read_rest(stream, now)]
        for stream in self.streams:
            self._close_stream(stream, now)
        timeout = f"{self.opts.drain_timeout:g}s (--drain-timeout)"
        if held:
            self.note("WARNING", f"the child exited but its {' and '.join(held)} {'is' if len(held) == 1 else 'are'} "
                      f"still held open by another process (a background or grandchild process?): stopped reading "
                      f"after {timeout}", held_open=held)
        elif self._group_left:
            self.note("WARNING", f"processes the child left in its process group are still running after {timeout}: "
                      "exiting without them", left_in_group=process_group_members(self.child_pid))
        elif self._children_left:
            self.note("WARNING", f"the child exited but orphaned processes it left are still running after {timeout}: "
                      "exiting without them", orphans_left=True)

    def _read_rest(self, stream: _Stream, now: float) -> bool:
        """Read what the child's output still holds (at most a pipe's worth and a read; passthrough queues it
        beyond its bound). True when its end was reached, False when it is still held open."""
        budget = PIPE_SIZE + READ_CHUNK
        while budget > 0:
            try:
                data = os.read(stream.fd, READ_CHUNK)
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError:
                return True
            if not data:
                return True
            budget -= len(data)
            stream.passthrough.push(data, now, force=True)
            if stream.framer is not None and stream.sink is not None:
                stream.sink.submit(stream.framer.feed(data, now))
        return False

    def _finish(self) -> int:
        """The child exited and the pipes are drained (or the wait ran out): last records, exit status."""
        now = time.monotonic()
        for stream in self.streams:
            self._close_stream(stream, now)
            stream.passthrough.abandon()
        status = self.child_status if self.child_status is not None else 0
        code = os.waitstatus_to_exitcode(status)
        fields: dict[str, Any] = {"child_pid": self.child_pid}
        if code < 0:
            sig = -code
            exit_status = 128 + sig
            level = "INFO" if sig in self._forwarded or (sig == signal.SIGKILL and self._forwarded) else "ERROR"
            message = f"the child (pid {self.child_pid}) was killed by {_signal_name(sig)}: exit status {exit_status}"
            fields.update(signal=_signal_name(sig), exit_code=exit_status)
        else:
            exit_status = code
            level = "INFO" if code == 0 else "ERROR"
            message = f"the child (pid {self.child_pid}) exited with code {code}"
            fields["exit_code"] = code
        if self.orphans_reaped:
            fields["orphans_reaped"] = self.orphans_reaped
        framers = [stream.framer for stream in self.streams if stream.framer is not None]
        if framers:  # which framer path ran (the C one is meant to, unless MLOPS_LOG_SPEEDUPS=0 or not built)
            fields["framer_chunks"] = {path: sum(f.paths[path] for f in framers) for path in framers[0].paths}
        self.note(level, message, **fields)
        self._finish_files()
        return exit_status

    def _finish_files(self) -> None:
        """One last write of everything queued; what still cannot be written is reported on stderr."""
        now = time.monotonic()
        for sink in self._unique_sinks():
            if not sink.flush(now, force=True):
                dropped = sink.loss.records
                _say(f"could not write {sink.path} ({sink.error}) at exit: {sink.pending_bytes} bytes of records "
                     f"lost{f', after {dropped} lines dropped earlier' if dropped else ''}")
            sink.close()


def tune_malloc() -> bool:
    """Keep freed chunk buffers in the heap (glibc): without it every 256 KiB read grows and trims the heap.

    Measured with bench/wrap.py: thousands of brk() calls and ~0.5 s of system time per 246 MB in text mode.
    A no-op (False) where mallopt is not glibc's; peak RSS is unchanged, it is a high-water mark either way.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_TRIM_THRESHOLD, 64 << 20)) and bool(mallopt(M_MMAP_THRESHOLD, 16 << 20))


def main(argv: Sequence[str] | None = None) -> int:
    """``logwrap [options] -- CMD [ARGS...]``: returns the exit status (the child's, or 2/125/126/127)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = parse_args(args)
    except UsageError as exc:
        _say(f"{exc}")
        return EXIT_USAGE
    if opts.help:
        sys.stdout.write(USAGE)
        sys.stdout.flush()
        return 0
    if opts.version:
        from . import __version__

        sys.stdout.write(f"logwrap (mlops-logging) {__version__}\n")
        sys.stdout.flush()
        return 0
    try:
        settings = settings_for(opts, os.environ)
        from .lines import speedups_requested

        speedups_requested(os.environ)  # MLOPS_LOG_SPEEDUPS=2 is a bad setting too, refused here (the import is lenient)
    except LogSetupError as exc:
        _say(f"{exc}")
        return EXIT_USAGE
    tune_malloc()
    # Everything imported so far lives as long as the process: keep it out of the cyclic GC's scans (the loop itself
    # makes no reference cycles; measured with perf: ~3% of logwrap's time went to collecting).
    gc.freeze()
    return Supervisor(opts, settings).run()


if __name__ == "__main__":
    sys.exit(main())
