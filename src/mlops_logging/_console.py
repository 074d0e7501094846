"""The human-readable stdout line: ``<time> <LEVEL> <logger>: <message> key=value``.

Writes straight to the stdout descriptor. Under Docker and Kubernetes stdout is a pipe, where a write of more than
4 KiB (PIPE_BUF) is not atomic: every line is written to completion under one lock per descriptor, so threads (and
configurations replaced while a thread still writes) never tear each other's lines. A broken stdout (``EPIPE``,
closed) turns the console off with one note on stderr; the file keeps everything.

A full stdout never blocks the service for long: a line waits at most :attr:`Console.stall_timeout` for the reader.
When stdout is a blocking pipe (the usual case: Docker, Kubernetes, ``| tee``), the console writes through a private
non-blocking open file description of the same pipe (``/proc/self/fd/1`` opened again), so the service's own
descriptor, which its parent and children share, keeps its flags; a reader that stops reading then costs console
lines, never the service. A line that has not started when the pipe is full is dropped and counted; one that has
started is completed first thing on a later write (nothing else is written before it), so a line is never cut. Once
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
from ._records import build_record, render_text, unrenderable_record

__all__ = ["Console"]

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

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
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
            else:
                self._write_line(channel, line)
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
        if channel.dropped:
            line = self._drop_note(channel) + line
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
