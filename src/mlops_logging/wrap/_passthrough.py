"""Passthrough: the child's output copied byte for byte to our stdout/stderr (or our stdin to its terminal),
never blocking logwrap, with backpressure on the child while a live reader catches up."""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from collections import deque
from collections.abc import Callable

from .._errors import describe_os_error
from .._records import format_timestamp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    import socket

__all__ = ["DEFAULT_PASSTHROUGH_TIMEOUT", "PASSTHROUGH_BUFFER", "Passthrough"]

PASSTHROUGH_BUFFER = 1024 * 1024  #: per stream; when this much waits for a reader, the child's pipe is not read
DEFAULT_PASSTHROUGH_TIMEOUT = 2.0  #: a reader that takes nothing for this long while the buffer is full is stuck


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
        self._send_flags = 0
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
            import socket  # here: a socket is rare and the module costs ~10% of logwrap's start-up

            self._send_flags = socket.MSG_DONTWAIT
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
            return self._sock.send(chunk, self._send_flags)
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

