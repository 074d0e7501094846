"""logwrap's process helpers: the signals it forwards and how it receives them (signalfd, else handlers), spawning
the child, its process group, the subreaper, and malloc tuning. Every syscall error is handled here on purpose."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Sequence

from .._errors import describe_os_error

__all__ = [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_NOT_FOUND",
    "FAULT_SIGNALS",
    "FORWARDED_SIGNALS",
    "JOB_CONTROL_SIGNALS",
    "KILL_AFTER_TRIGGERS",
    "NOT_FORWARDED",
    "PIPE_SIZE",
    "PROG",
    "PYTHON_IGNORED",
    "SignalInbox",
    "become_subreaper",
    "guard_std_fds",
    "make_pipe",
    "process_group_members",
    "say",
    "set_nonblocking",
    "signal_name",
    "spawn",
    "start_reaping",
    "tune_malloc",
]

PROG = "logwrap"
EXIT_CANNOT_EXECUTE = 126  #: the command exists but cannot be run (permission, directory, exec format)
EXIT_NOT_FOUND = 127  #: the command was not found


#: Signals logwrap never forwards: KILL and STOP cannot be caught, CHLD tells it that a child exited.
NOT_FORWARDED = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD})
#: Every other signal is forwarded, as dumb-init does: on Linux 1-31 (HUP, INT, QUIT, ILL, TRAP, ABRT, BUS, FPE, USR1,
#: SEGV, USR2, PIPE, ALRM, TERM, STKFLT, CONT, TSTP, TTIN, TTOU, URG, XCPU, XFSZ, VTALRM, PROF, WINCH, IO, PWR, SYS)
#: and SIGRTMIN..SIGRTMAX.
FORWARDED_SIGNALS = frozenset(int(sig) for sig in signal.valid_signals()) - NOT_FORWARDED
#: The signals a fault raises (and abort()). Sent with kill() they are a request (``docker kill -s ABRT``: a core
#: dump, please) and forwarded, but only while blocked and read from the signalfd: Linux still kills a process with a
#: blocked fault signal it raises itself (it unblocks it and restores the default action; abort() unblocks ABRT), so
#: a real fault of logwrap's own is not hidden. A Python handler would hide it (the C handler returns to the faulting
#: instruction), so without a signalfd they keep their default action and are not forwarded, as tini leaves them.
FAULT_SIGNALS = frozenset({
    signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS, signal.SIGABRT,
})
#: Job control (dumb-init's rule): forwarded, then logwrap stops itself; the CONT that wakes it is forwarded too.
JOB_CONTROL_SIGNALS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
#: Python sets these to SIG_IGN at start-up, so how logwrap was started with them is unknowable: the child gets the
#: default action (as subprocess gives it) and logwrap forwards them like the others.
PYTHON_IGNORED = frozenset({signal.SIGPIPE, signal.SIGXFSZ})
KILL_AFTER_TRIGGERS = (signal.SIGTERM, signal.SIGINT)

PIPE_SIZE = 1024 * 1024  #: asked for with F_SETPIPE_SZ, so a burst does not stall the child while we write
PR_SET_CHILD_SUBREAPER = 36
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def say(message: str) -> None:
    """One line on our own stderr; never raises (stderr may be closed or broken)."""
    try:
        os.write(2, f"{PROG}: {message}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def signal_name(sig: int) -> str:
    if signal.SIGRTMIN < sig < signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def set_nonblocking(fd: int) -> None:
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


def start_reaping(subreaper: bool) -> str | None:
    """Whether logwrap reaps orphaned processes: as PID 1, or asked with ``--subreaper`` (made a subreaper here; a
    failure is said on stderr). The note for the start record, or None."""
    if os.getpid() == 1:
        return "running as PID 1: reaping orphaned processes"
    if subreaper:
        problem = become_subreaper()
        if problem:
            say(f"--subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed: {problem}; orphans will not be reaped here")
            return f"--subreaper failed: {problem}"
        return "subreaper: reaping orphaned processes"
    return None


def guard_std_fds() -> set[int]:
    """Make sure fds 0-2 are open (on /dev/null when closed), so no pipe we create lands on them; the ones that were
    closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.add(fd)
    return closed


def make_pipe() -> tuple[int, int]:
    """A pipe for one of the child's outputs: our end (read, non-blocking, 1 MiB when the kernel allows), its end."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(read_end, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size for an unprivileged user: the default 64 KiB works too
    set_nonblocking(read_end)
    return read_end, write_end


def spawn(command: Sequence[str], stdio: tuple[int | None, int, int], *, mask: set[int] | frozenset[int],
          new_session: bool, controlling_tty: bool) -> subprocess.Popen[bytes] | tuple[int, str]:
    """Start ``command``; return the process, or the exit status and the one-line reason it could not be started.

    It starts with signal mask ``mask`` and the dispositions logwrap was started with (``restore_signals`` gives
    PIPE and XFSZ their default action), in a session of its own when ``new_session`` (its stdin then its
    controlling terminal when ``controlling_tty``), and with ``stdio`` and only the standard descriptors.
    Not ``posix_spawn``: glibc's leaves its internal signals 32 and 33 ignored in the child.
    """

    def child_setup() -> None:  # in the child, between fork and exec
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if controlling_tty:
            try:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the new session's controlling terminal: job control
            except OSError:
                pass

    try:
        return subprocess.Popen(  # noqa: S603 - running the user's command is the point
            list(command), stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], close_fds=True,
            start_new_session=new_session, preexec_fn=child_setup,
        )
    except FileNotFoundError:
        return EXIT_NOT_FOUND, f"command not found: {command[0]!r} (check the name and PATH)"
    except PermissionError as exc:
        return EXIT_CANNOT_EXECUTE, (f"cannot execute {command[0]!r}: {exc.strerror} (is it a directory, or missing "
                                     "the execute permission?)")
    except OSError as exc:
        return EXIT_CANNOT_EXECUTE, f"cannot execute {command[0]!r}: {exc.strerror}"
    except subprocess.SubprocessError as exc:
        return EXIT_CANNOT_EXECUTE, f"cannot execute {command[0]!r}: {exc}"


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
    no sender then, SIGPIPE and SIGXFSZ (which our own writes raise) stay ignored and the :data:`FAULT_SIGNALS` keep
    their default action, so none of them is forwarded.

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
        for sig in self._caught():
            signal.signal(sig, _no_op)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._handled)
        self.forwarded -= FAULT_SIGNALS
        self.mode = "handlers"
        return (f"signalfd failed ({problem}): signals are caught by handlers instead, without their sender; "
                "SIGPIPE and SIGXFSZ are not forwarded, nor the fault signals (ABRT, BUS, FPE, ILL, SEGV, SYS, TRAP), "
                "which keep their default action")

    def _caught(self) -> frozenset[int]:
        """The signals the fallback catches with handlers: our own EPIPE and EFBIG raise PIPE and XFSZ (left
        ignored), and a handler would hide a real fault of logwrap's own (left at their default action)."""
        return self._handled - PYTHON_IGNORED - FAULT_SIGNALS

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
            for sig in self._caught():
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
    members: list[int] = []
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

