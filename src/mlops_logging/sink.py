"""A record writer that never raises into the service: failed writes are counted and reported once writing works.

Used by ``configure_logging``. (logwrap adds a bounded retry buffer on top of the same :class:`LogFile`.)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .files import LogFile, PartialWrite
from .records import format_timestamp

__all__ = ["Loss", "SafeWriter"]


@dataclass
class Loss:
    """What could not be written: counts, first and last failure time, the last error."""

    records: int = 0
    bytes: int = 0
    first: float = 0.0
    last: float = 0.0
    error: str = ""

    def as_fields(self) -> dict[str, object]:
        """The fields of the WARNING record that reports this loss."""
        return {
            "lost_records": self.records,
            "lost_bytes": self.bytes,
            "lost_since": format_timestamp(self.first),
            "lost_until": format_timestamp(self.last),
            "error": self.error,
        }


class SafeWriter:
    """Writes rendered records to a :class:`LogFile`; on ``OSError`` counts the loss instead of raising.

    ``report`` renders the WARNING record for a :class:`Loss`; it is written first the next time a write succeeds.
    """

    def __init__(self, logfile: LogFile, report: Callable[[Loss], bytes], *, loss: Loss | None = None) -> None:
        self.logfile = logfile
        self._report = report
        self._loss = loss  # not yet reported (``loss=``: one carried over from a writer this one replaces)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def pending_loss(self) -> Loss | None:
        """The loss not yet reported, if any."""
        return self._loss

    def write(self, data: bytes) -> bool:
        """Write one or more whole records; return False (and count them) when the file refused them."""
        if self._loss is not None and not self._flush_report():
            self._count(data, None)
            return False
        try:
            self.logfile.write(data)
            return True
        except PartialWrite as exc:
            self._count(data[exc.kept:], exc)  # whole records that got in before the disk filled are not lost
            return False
        except OSError as exc:
            self._count(data, exc)
            return False

    def _count(self, data: bytes, exc: OSError | None) -> None:
        now = time.time()
        with self._lock:
            loss = self._loss
            if loss is None:
                loss = self._loss = Loss(first=now)
            loss.records += data.count(b"\n") or 1
            loss.bytes += len(data)
            loss.last = now
            if exc is not None:
                loss.error = f"{exc.strerror or exc}" if not exc.errno else f"[Errno {exc.errno}] {exc.strerror}"

    def _flush_report(self) -> bool:
        """Try to write the loss report; True once it is on disk (and the loss is cleared)."""
        with self._lock:
            loss = self._loss
            if loss is None:
                return True
            try:
                self.logfile.write(self._report(loss))
            except OSError as exc:
                loss.error = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)
                return False
            self._loss = None
            return True
