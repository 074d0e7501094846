"""Waiting for a lock of the package, never forever at interpreter exit.

While Python finalizes (``sys.is_finalizing()``: after the atexit handlers, while modules are torn down and the
``__del__`` methods of what they held run), every other thread is frozen for good the moment it wants the GIL back.
A daemon thread that was writing a record then holds the log file's (or the console's) lock forever, and a
``__del__`` that logs would wait for it forever: the process never exits. So a writer that does not get a lock at
once waits as long as it takes while the interpreter runs, but at most :data:`FINALIZING_WAIT` seconds (once per
lock) while it finalizes; then it goes on without the lock: the holder never runs again, so nothing else touches what
the lock guards, and the record is written (one ``write()``: whole, as always).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # a protocol is for the type checker; at run time a plain base class

__all__ = ["FINALIZING_WAIT", "Lock", "acquire", "hold"]

#: Seconds a writer waits for a lock while the interpreter finalizes (a lock held then is held by a frozen thread).
FINALIZING_WAIT = 0.1

_frozen: set[int] = set()  # ids of locks found held by a frozen thread: not waited for again


class Lock(Protocol):
    """``threading.Lock`` and ``threading.RLock``."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


def acquire(lock: Lock) -> bool:
    """Take ``lock``, for a caller whose ``lock.acquire(False)`` just failed: wait as long as it takes, but while the
    interpreter finalizes at most :data:`FINALIZING_WAIT` seconds, once per lock. False: not taken (go on without)."""
    if not sys.is_finalizing():
        return lock.acquire()
    if id(lock) in _frozen:
        return lock.acquire(False)
    if lock.acquire(True, FINALIZING_WAIT):
        return True
    _frozen.add(id(lock))
    return False


class hold:  # (lower case: used in a `with` statement, like the lock itself)
    """``with hold(lock):``: the block runs with ``lock`` held, or, at interpreter exit, without it (see
    :func:`acquire`)."""

    __slots__ = ("_held", "_lock")

    def __init__(self, lock: Lock) -> None:
        self._lock = lock
        self._held = False

    def __enter__(self) -> bool:
        self._held = self._lock.acquire(False) or acquire(self._lock)
        return self._held

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self._lock.release()

