"""Interactive use (``docker run -it``): when our stdin and stdout are a terminal the child gets a pseudo-terminal of
its own (so a shell prompts and has job control); its window size follows ours and our terminal is raw meanwhile."""

from __future__ import annotations

import fcntl
import os
import select
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import describe_os_error
from ._passthrough import Passthrough
from ._process import set_nonblocking

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TTY_INPUT_BUFFER", "Terminal", "open_terminal"]

TTY_INPUT_BUFFER = 64 * 1024  #: keystrokes and pastes waiting for the child's terminal; stdin is not read past it
COOKED_INPUT_MAX = 4096  #: what a cooked Linux terminal holds (N_TTY_BUF_SIZE): at most that many reads take it all


@dataclass
class Terminal:
    """The child's pseudo-terminal, and our stdin feeding it."""

    master: int
    slave: int
    slave_path: str
    keys: Passthrough  # our stdin -> the child's terminal
    stdin: int = -1  # our stdin, on a private non-blocking file description when possible
    stdin_paused: bool = False  # EIO (logwrap in the background of a shell): read again after the next SIGCONT
    eof: bytes = b"\x04"  # the child's terminal's EOF character, sent when our stdin ends
    saved: list[Any] | None = None  # our terminal's attributes while it is in raw mode

    def copy_window_size(self) -> None:
        """Our terminal's size onto the child's (at start and on SIGWINCH; the kernel then signals its foreground
        job with SIGWINCH itself)."""
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass

    def raw_mode(self, on: bool) -> None:
        """Our terminal in raw mode while the child's terminal does the line editing (and back, at exit and while
        stopped). What was typed while it was cooked is taken first (:meth:`take_typed_ahead`)."""
        try:
            if on and self.saved is None:
                self.saved = termios.tcgetattr(0)
                self.take_typed_ahead()
                tty.setraw(0, termios.TCSANOW)
            elif not on and self.saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
                self.saved = None
        except termios.error:
            pass

    def take_typed_ahead(self) -> None:
        """Read what was typed while our terminal is cooked (before logwrap read it, or while it was stopped), while it
        still is, and queue it for the child's terminal.

        Linux keeps a typed end of file (^D) only as a mark in cooked input: switching the terminal to raw mode turns
        it into a NUL byte, so the child would get the lines but never their end (``logwrap -- tac`` with ``1 2 3 ^D``
        typed ahead hung). Cooked, each read returns one line, or the text before a ^D, or nothing for a ^D at the
        start of a line; a ^D becomes the child's terminal's EOF character. A terminal that hung up also reads
        nothing: it is left to the event loop (its end of stdin)."""
        fd = self.stdin
        if fd < 0 or self.saved is None or not self.saved[3] & termios.ICANON:
            return  # not cooked: raw input keeps every byte as typed
        eol = {bytes([c]) if isinstance(c, int) else c for c in (self.saved[6][termios.VEOL],
                                                                  self.saved[6][termios.VEOL2])} - {b"\0"}
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        now = time.monotonic()
        for _ in range(COOKED_INPUT_MAX):
            if not poller.poll(0):
                return
            try:
                data = os.read(fd, COOKED_INPUT_MAX)
            except OSError:  # EAGAIN: nothing after all; EIO: in the background of a shell (the loop handles both)
                return
            if not data:
                try:
                    termios.tcgetattr(fd)
                except termios.error:
                    return  # hung up
            self.keys.push(data, now)
            if not data.endswith(b"\n") and data[-1:] not in eol:
                self.keys.push(self.eof, now)  # the line was ended by a ^D

    def read_stdin(self, now: float) -> bool:
        """Our stdin to the child's terminal; at its end, the terminal's EOF character. False at that end (the caller
        stops watching our stdin, then :meth:`close_stdin`)."""
        try:
            data = os.read(self.stdin, 65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:  # EIO: we run in the background of a shell (TTIN is blocked): wait for the CONT of `fg`
            self.stdin_paused = True
            return True
        self.keys.push(data or self.eof, now)  # nothing read: our terminal hung up
        return bool(data)

    def close_stdin(self) -> None:
        """Our stdin ended: close our own description of it."""
        if self.stdin > 2:
            os.close(self.stdin)
        self.stdin = -1

    def close(self, *, master: bool) -> None:
        """Close our descriptors (``master`` too when no stream took it over: the command did not start)."""
        self.keys.close()
        for fd in (self.slave, self.stdin if self.stdin > 2 else -1, self.master if master else -1):
            if fd >= 0:
                os.close(fd)
        self.slave = -1


def open_terminal(note: Callable[..., None]) -> Terminal | str:
    """A pseudo-terminal for the child, with our terminal's settings and size; a one-line note when none can be made
    (the child then gets pipes). ``note`` writes logwrap's records (for the keys' passthrough)."""
    try:
        master, slave = os.openpty()
    except OSError as exc:
        return f"no pseudo-terminal for the child ({describe_os_error(exc)}): it gets pipes"
    eof = b"\x04"
    try:
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0))  # the user's settings (erase, intr...)
        eof = termios.tcgetattr(slave)[6][termios.VEOF]
    except (termios.error, TypeError):
        pass
    set_nonblocking(master)
    try:
        stdin = os.open("/proc/self/fd/0", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        stdin = 0  # read only when the selector says it is readable
    keys = Passthrough("stdin", os.dup(master), bound=TTY_INPUT_BUFFER, note=note, stuck_after=None, reopen=False,
                       quiet=True)
    term = Terminal(master, slave, os.ttyname(slave), keys, stdin=stdin, eof=eof)
    term.copy_window_size()
    return term
