"""The human-readable stdout line: ``<time> <LEVEL> <logger>: <message> key=value``.

Writes straight to the stdout descriptor. Under Docker and Kubernetes stdout is a pipe, where only a write of at most
PIPE_BUF bytes (4 KiB) is atomic: every line is written to completion under one lock per descriptor, so threads (and
configurations replaced while a thread still writes) never tear each other's lines, and on a pipe, FIFO or socket a
line is at most PIPE_BUF bytes, so no other process (gunicorn's workers, a pool's children: no lock reaches them)
tears it either. A longer line is cut there, at a character boundary and never inside an escape, and says so:
``... …[cut: N bytes; whole record in <log file>]``; without a log file (it could not be opened) it is written as
several lines instead, each with the console head, the first ending ``…[continues]``, the next starting
``…[continued]``, so nothing is lost. A regular file or a terminal gets whole lines however long (the kernel keeps
each ``write()`` to them whole). A broken stdout (``EPIPE``, closed) turns the console off with one note on stderr;
the file keeps everything.

A full stdout never blocks the service for long: a line waits at most :attr:`Console.stall_timeout` for the reader.
When stdout is a blocking pipe (the usual case: Docker, Kubernetes, ``| tee``), the console writes through a private
non-blocking open file description of the same pipe (``/proc/self/fd/1`` opened again), so the service's own
descriptor, which its parent and children share, keeps its flags; a reader that stops reading then costs console
lines, never the service. A line that has not started when the pipe is full is dropped and counted; one that has
started is completed first thing on a later write (nothing else is written before it), so a line is never torn. Once
writing works again one WARNING line says how many lines were dropped (the log file has all of them).
"""

from __future__ import annotations

import atexit
import os
import select
import stat
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, TextIO

from ._locks import acquire, hold
from ._records import build_record, unrenderable_record
from ._render import escape_text, render_text

__all__ = ["Console", "cut_line", "split_line"]

_HIDDEN = ("service", "pid")  # on every record; noise on a terminal


class _Channel:
    """What all consoles writing to one descriptor share: the lock, the descriptor written to, and a line the pipe
    has not taken whole yet."""

    def __init__(self, fd: int) -> None:
        self.lock = threading.RLock()  # re-entrant: a signal handler that logs may interrupt a write
        self.fd = fd  # the descriptor the console was given (stdout: 1)
        self.out = fd  # the one written to: ``fd``, or a private non-blocking description of the same pipe
        self.target: tuple[int, int] | None = None  # (st_dev, st_ino) of what ``out`` was opened for
        self.pending = b""  # the rest of a started line, written before anything else
        self.dropped = 0  # lines dropped since writing last worked
        self.stuck = False  # a wait timed out: do not wait again until a write goes through whole
        self.limit = 0  # the longest line (bytes) a write keeps whole across processes: PIPE_BUF on a pipe; 0: any

    def attach(self) -> None:
        """Under the lock: point ``out`` at what ``fd`` is now (stdout may have been redirected since the last
        configuration). A blocking pipe gets a private non-blocking description, so a full pipe can be waited for
        with a bound; anything else (a file, a terminal, a socket) is written through ``fd`` itself."""
        try:
            st = os.fstat(self.fd)
        except OSError:
            return  # closed: the first write fails and turns the console off
        target = (st.st_dev, st.st_ino)
        if target == self.target:
            return
        if self.out != self.fd:
            os.close(self.out)  # safe: every write reads ``out`` under this lock
        self.out, self.target = self.fd, target
        self.limit = select.PIPE_BUF if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode) else 0
        if stat.S_ISFIFO(st.st_mode) and os.get_blocking(self.fd):
            try:
                self.out = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                pass  # no /proc (or not Linux): the blocking descriptor, as before


_channels: dict[int, _Channel] = {}
_channels_lock = threading.Lock()
_consoles: weakref.WeakSet[Console] = weakref.WeakSet()


def _channel(fd: int) -> _Channel:
    with _channels_lock:
        channel = _channels.get(fd)
        if channel is None:
            channel = _channels[fd] = _Channel(fd)
    if fd >= 0:
        with channel.lock:
            channel.attach()
    return channel


class Console:
    """Renders records as one text line each on a stream (stdout by default)."""

    #: Seconds a line may wait for a full stdout (then: dropped, or completed on a later write).
    stall_timeout = 1.0

    def __init__(self, stream: TextIO | None = None, *, log_file: str | os.PathLike[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        #: How a line cut to PIPE_BUF ends (``{}``: the bytes left out); None: no log file, split long lines instead.
        self.cut_tail: str | None = None if log_file is None else _cut_tail(os.path.abspath(log_file))
        self.enabled = True
        try:
            self._fd: int | None = self.stream.fileno()
            self.stream.flush()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # a StringIO, pytest's capture...: use the stream API
        self._channel = _channel(self._fd if self._fd is not None else -id(self.stream))
        _consoles.add(self)

    @property
    def dropped(self) -> int:
        """Lines dropped (not yet reported) because a non-blocking stdout was full."""
        return self._channel.dropped

    def write(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as a text line; disable the console on the first failure instead of raising."""
        if not self.enabled:
            return
        line = _line(record)
        channel = self._channel
        lock = channel.lock
        # (acquire/release: half the cost of a `with` block on this hot path; at interpreter exit a bounded wait)
        held = lock.acquire(False) or acquire(lock)
        try:
            if self._fd is None:
                self.stream.write(line.decode("utf-8"))
                self.stream.flush()
            elif not channel.limit or len(line) <= channel.limit:
                self._write_line(channel, line)
            elif self.cut_tail is not None:
                self._write_line(channel, cut_line(line, channel.limit, self.cut_tail))
            else:
                for piece in split_line(line, channel.limit, len(_line(_head_only(record))) - 1):
                    self._write_line(channel, piece)
        except (OSError, ValueError) as exc:
            self.enabled = False
            try:
                sys.stderr.write(f"mlops_logging: stdout failed ({exc}); console output off, the log file continues\n")
            except (OSError, ValueError):
                pass
        finally:
            if held:
                lock.release()

    def _write_line(self, channel: _Channel, line: bytes) -> None:
        """Under the channel's lock: finish a started line, report drops, then write ``line`` whole (or drop it)."""
        written = 0
        if not (channel.pending or channel.dropped):
            try:
                written = os.write(channel.out, line)  # usually the whole line at once
            except BlockingIOError:
                pass
            if written == len(line):
                channel.stuck = False
                return
        wait = 0.0 if channel.stuck else self.stall_timeout
        if channel.pending:
            channel.pending = self._send(channel, channel.pending, wait, started=True) or b""
            if channel.pending:
                channel.dropped += 1
                return
        if channel.dropped:  # (nothing of ``line`` was written yet)
            note = self._drop_note(channel)
            if channel.limit and len(note) + len(line) > channel.limit:  # one write of both could tear: two
                rest = self._send(channel, note, wait, started=False)
                if rest is None:
                    channel.dropped += 1
                    return
                channel.pending, channel.dropped = rest, 1 if rest else 0
                if rest:
                    return
            else:
                line = note + line
                channel.dropped = 0
        rest = self._send(channel, memoryview(line)[written:], wait, started=written > 0)
        if rest is None:  # the pipe was full before any of it went in
            channel.dropped += 1
        else:
            channel.pending = rest
            if not rest:
                channel.stuck = False

    def _send(self, channel: _Channel, data: bytes | memoryview, wait: float, *, started: bool) -> bytes | None:
        """Write ``data``, waiting up to ``wait`` seconds for a full non-blocking pipe; return what it did not take
        (``b""``: it took everything; ``None``: nothing, and ``data`` was not a started line)."""
        fd = channel.out
        view = memoryview(data)
        deadline = 0.0
        while view:
            try:
                view = view[os.write(fd, view):]
                started = True
                continue
            except BlockingIOError:
                pass
            now = time.monotonic()
            if not deadline:
                deadline = now + wait
            if now >= deadline or not _writable(fd, deadline - now):
                channel.stuck = True  # later lines do not wait for this reader until it takes a line whole
                return bytes(view) if started else None
        return b""

    def flush_pending(self, timeout: float | None = None) -> None:
        """Finish a started line and report dropped ones, waiting up to ``timeout`` seconds for each (default
        :attr:`stall_timeout`): at exit, so the last line on the pipe is whole and no drop goes unsaid."""
        channel = self._channel
        if self._fd is None or not self.enabled or not (channel.pending or channel.dropped):
            return
        wait = self.stall_timeout if timeout is None else timeout
        with hold(channel.lock):
            try:
                if channel.pending:
                    channel.pending = self._send(channel, channel.pending, wait, started=True) or b""
                if channel.dropped and not channel.pending and self._send(channel, self._drop_note(channel), wait,
                                                                          started=False) == b"":
                    channel.dropped = 0
            except OSError:
                channel.pending = b""

    @staticmethod
    def _drop_note(channel: _Channel) -> bytes:
        return _line(build_record("WARNING", f"{channel.dropped} console lines dropped while stdout was full (the log "
                                  "file has every record)", "-", "mlops_logging", None))


def _cut_tail(path: str) -> str:
    """How a line cut to PIPE_BUF ends: where the whole record is (a path too long to say is not named)."""
    where = path if len(path) <= 1024 else "the log file"
    return f" \u2026[cut: {{}} bytes; whole record in {escape_text(where).replace('{', '{{').replace('}', '}}')}]\n"


def cut_line(line: bytes, limit: int, tail: str) -> bytes:
    """``line`` (a console line, newline included) in at most ``limit`` bytes: as it is when it fits, else its start,
    cut at a character boundary and never inside a backslash escape, then ``tail`` with ``{}`` replaced by the number
    of bytes left out (the newline not counted)."""
    if len(line) <= limit:
        return line
    keep = _boundary(line, limit - len(tail.format(len(line)).encode()))
    return line[:keep] + tail.format(len(line) - 1 - keep).encode()


_CONTINUES = " \u2026[continues]\n".encode()
_CONTINUED = "\u2026[continued] ".encode()


def split_line(line: bytes, limit: int, head: int) -> list[bytes]:
    """``line`` (a console line, newline included) as lines of at most ``limit`` bytes that hold all of it: each but
    the last ends ``…[continues]``, each but the first repeats the line's first ``head`` bytes (its time, level and
    logger) and starts ``…[continued]``."""
    if head + len(_CONTINUED) + len(_CONTINUES) + 64 > limit:
        head = 0  # a head too long to repeat
    start = line[:head] + _CONTINUED
    lead, rest = line[:head], line[head:-1]
    pieces = []
    while len(lead) + len(rest) + 1 > limit:
        keep = _boundary(rest, limit - len(lead) - len(_CONTINUES))
        pieces.append(lead + rest[:keep] + _CONTINUES)
        lead, rest = start, rest[keep:]
    pieces.append(lead + rest + b"\n")
    return pieces


def _boundary(data: bytes, end: int) -> int:
    """The last place at or before ``end`` where ``data`` may be cut: not inside a UTF-8 character, nor inside a
    backslash escape of the text layout (``\\n``, ``\\xNN``, ``\\uNNNN``)."""
    end = max(0, min(end, len(data)))
    while 0 < end < len(data) and data[end] & 0xC0 == 0x80:
        end -= 1
    slash = data.rfind(b"\\", max(0, end - 5), end)
    if slash >= 0:
        run = slash
        while run > 0 and data[run - 1] == 0x5C:
            run -= 1
        if (slash - run) % 2 == 0:  # it starts an escape (not the second of an escaped backslash)
            kind = data[slash + 1:slash + 2]
            if slash + (6 if kind == b"u" else 4 if kind == b"x" else 2) > end:
                end = slash
    return end


def _head_only(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the console head of ``record`` is made of (its time, level and logger), for :func:`split_line`."""
    return {key: record[key] for key in ("timestamp", "level", "logger") if key in record}


def _line(record: Mapping[str, Any]) -> bytes:
    """The console line of ``record``: the text layout without the fields every record has (service, pid)."""
    shown = {k: v for k, v in record.items() if k not in _HIDDEN}
    try:
        return render_text(shown)
    except Exception as exc:  # noqa: BLE001 - a value the text renderer cannot take
        return render_text(unrenderable_record(shown, exc))


def _writable(fd: int, timeout: float) -> bool:
    """Wait until ``fd`` can take bytes, at most ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(max(0, int(timeout * 1000) + 1)))


def _flush_at_exit() -> None:
    for console in list(_consoles):
        console.flush_pending()


def _after_fork_in_child() -> None:
    """A lock held by another thread at ``fork`` would never be released; the parent finishes its own line."""
    global _channels_lock
    _channels_lock = threading.Lock()
    for channel in _channels.values():
        channel.lock = threading.RLock()
        channel.pending = b""
        channel.dropped = 0
        channel.stuck = False


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
