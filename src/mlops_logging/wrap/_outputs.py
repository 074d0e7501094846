"""The child's outputs (its two pipes, or its pseudo-terminal): read in one place, each chunk passed through first and
then framed into records for the log file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import describe_os_error
from .._framer import StreamFramer
from .._sink import FileSink
from ._passthrough import Passthrough
from ._process import PIPE_SIZE

__all__ = ["READ_CHUNK", "ChildOutput"]

READ_CHUNK = 256 * 1024  #: one os.read from a child pipe


@dataclass
class ChildOutput:
    """One of the child's outputs and what becomes of its bytes: passthrough, then the framer (when there is a log
    file) into its sink."""

    index: int
    name: str
    fd: int
    framer: StreamFramer | None
    sink: FileSink | None
    passthrough: Passthrough
    note: Callable[..., None]  # logwrap's own record (a read that failed)
    open: bool = True
    tty: bool = False  # the child's pseudo-terminal: EIO on read is its end (every slave descriptor closed)
    held: bool = False  # not read while its passthrough is full: the framer's idle clock is stopped

    def read(self, now: float, *, force: bool = False) -> int | None:
        """One read: passed through (``force``: queued beyond passthrough's bound, for the bounded rest read at the
        end of the drain), then framed. Returns the bytes read, 0 at the end (a failed read is said and counts as the
        end), None when nothing is there now."""
        try:
            data = os.read(self.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if not (self.tty and exc.errno == errno.EIO):  # EIO: every descriptor of the terminal is closed
                self.note("WARNING", f"reading the child's {self.name} failed ({describe_os_error(exc)}): treated "
                          "as its end", stream=self.name)
            return 0
        if data:
            self.passthrough.push(data, now, force=force)
            if self.framer is not None and self.sink is not None:
                self.sink.submit(self.framer.feed(data, now))
        return len(data)

    def read_rest(self, now: float) -> bool:
        """Read what the output still holds (at most a pipe's worth and a read; passthrough queues it beyond its
        bound). True when its end was reached, False when it is still held open."""
        budget = PIPE_SIZE + READ_CHUNK
        while budget > 0:
            got = self.read(now, force=True)
            if got is None:
                return False
            if got == 0:
                return True
            budget -= got
        return False

    def close(self, now: float) -> None:
        """Close it (once its selector key is gone); the framer's last records go to the sink."""
        if not self.open:
            return
        self.open = False
        os.close(self.fd)
        if self.framer is not None and self.sink is not None:
            self.sink.submit(self.framer.close(now))

    def idle_deadline(self) -> float | None:
        """When the framer's held bytes are due as records (an unterminated line, an open traceback), or None. While
        logwrap itself is not reading (backpressure) the child is blocked, not idle: a line cut by our own pause
        must not become two records."""
        if not self.open or self.framer is None or self.held:
            return None
        return self.framer.next_deadline()

    def tick(self, now: float) -> None:
        """Timers: the idle clock stops while passthrough holds the output back and restarts when it is read again;
        the framer's idle records; passthrough's stuck reader."""
        if self.held != self.passthrough.full:
            self.held = not self.held
            if not self.held and self.framer is not None:
                self.framer.restart_idle_clock(now)  # read again: idle time counts from now
        deadline = self.idle_deadline()
        if deadline is not None and deadline <= now and self.sink is not None:
            assert self.framer is not None  # a deadline comes from the framer
            self.sink.submit(self.framer.flush_idle(now))
        self.passthrough.check(now)

    def stop_framing(self) -> None:
        """No more records from it (logwrap gave up on its log files): passthrough goes on."""
        self.framer = None
        self.sink = None
