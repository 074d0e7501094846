"""A record writer that never raises into the service: failed writes are counted and reported once writing works.

Used by ``configure_logging``. (logwrap adds a bounded retry buffer on top of the same :class:`LogFile`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._errors import describe_os_error
from ._files import LogFile, Loss, Notice, PartialWrite

__all__ = ["Loss", "SafeWriter"]


class SafeWriter:
    """Writes rendered records to a :class:`LogFile`; on ``OSError`` counts the loss instead of raising.

    ``report`` renders the WARNING record for a :class:`Loss`; it is written first the next time a write succeeds.
    ``notice`` (a WARNING record of the package) is what the file uses for what it reports about itself (a rotation
    it cannot do, records a deleted file swallowed that could not be written again).
    """

    def __init__(self, logfile: LogFile, report: Callable[[Loss], bytes], *, notice: Notice | None = None,
                 loss: Loss | None = None) -> None:
        self.logfile = logfile
        self._report = report
        if notice is not None:
            logfile.notice = notice
        self._loss = loss  # not yet reported (``loss=``: one carried over from a writer this one replaces)

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
        with self.logfile.lock:
            loss = self._loss
            if loss is None:
                loss = self._loss = Loss(first=now)
            loss.records += data.count(b"\n") or 1
            loss.bytes += len(data)
            loss.last = now
            if exc is not None:
                loss.error = describe_os_error(exc)

    def _flush_report(self) -> bool:
        """Try to write the loss report; True once it is on disk (and the loss is cleared)."""
        with self.logfile.lock:
            loss = self._loss
            if loss is None:
                return True
            try:
                self.logfile.write(self._report(loss))
            except OSError as exc:
                loss.error = describe_os_error(exc)
                return False
            self._loss = None
            return True
