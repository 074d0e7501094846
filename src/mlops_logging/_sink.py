"""The sink layer: where rendered records go, and the one failure policy of a log file.

A :class:`Sink` takes whole rendered records (``submit``), writes what it holds (``flush``), says when it next has
work (``next_deadline``), and knows what it lost and has not reported yet (``loss``). :class:`FileSink` is the one
policy over a :class:`~._files.LogFile`, for both writers of the package; its in-memory budget is the parameter:

- ``buffer_bytes=0`` (``configure_logging``): write now, or count the records as lost; the first write that works
  again is preceded by the loss record. The healthy path is one ``LogFile.write`` per record, from any thread.
- ``buffer_bytes=N`` (logwrap's ``--buffer-bytes``): records are queued and written in batches by ``flush``; while the
  file refuses them they stay queued and a retry is due every ``retry_interval`` seconds, the oldest dropped (and
  counted) past ``N`` bytes; the first write that works again is the loss record, then what was held, written late.

Either way the policy never raises into its caller, and the loss record has one shape
(:func:`~._records.loss_notice`). A write the disk cuts short leaves whole records only: an ``exclusive`` file is
trimmed back and the rest retried (or counted), a shared one starts its next record on a fresh line.
"""

from __future__ import annotations

import itertools
import time
from collections import deque

from ._errors import describe_os_error
from ._files import LogFile, Notice, PartialWrite
from ._locks import hold
from ._records import Loss, loss_notice

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # a protocol is for the type checker; at run time a plain base class

__all__ = ["RETRY_INTERVAL", "WRITE_SLICE", "FileSink", "Sink"]

RETRY_INTERVAL = 1.0  #: seconds between attempts to write a failing log file (a budget above 0)
WRITE_SLICE = 1024 * 1024  #: at most this much per write() when catching up after an outage


class Sink(Protocol):
    """Where rendered records (bytes, each ending in ``\\n``) go."""

    def submit(self, data: bytes) -> None:
        """Take whole records: written now, or held until ``flush`` (never raises)."""

    def flush(self, now: float, *, force: bool = False) -> bool:
        """Write what is held (a failing file only once its retry is due, or ``force``); True when nothing is left."""

    def next_deadline(self) -> float | None:
        """Monotonic time at which ``flush`` has work to retry, or None."""

    @property
    def loss(self) -> Loss:
        """What was lost and not reported yet (``records == 0``: nothing)."""

    def close(self) -> None:
        """Release the destination (what is held is not written: ``flush(force=True)`` first)."""


class _Torn(Exception):
    """A write failed after ``done`` bytes (whole records) of the batch reached the file."""

    def __init__(self, done: int, error: OSError) -> None:
        super().__init__(done, error)
        self.done = done
        self.error = error


class FileSink:
    """A log file with the failure policy (see the module docstring); ``notice`` renders the package's WARNING
    records (the loss record, and what the file reports about itself: a rotation it cannot do...)."""

    def __init__(self, logfile: LogFile, *, notice: Notice, buffer_bytes: int = 0, slice_bytes: int = WRITE_SLICE,
                 retry_interval: float = RETRY_INTERVAL) -> None:
        self.logfile = logfile
        self.path = logfile.path
        self.buffer_bytes = buffer_bytes
        self.slice_bytes = slice_bytes
        self.retry_interval = retry_interval
        self._notice = notice
        logfile.notice = notice
        self._direct = buffer_bytes <= 0  # no memory: submit writes at once
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._failing_since: float | None = None  # wall-clock time of the first failed write of this outage
        self._retry_at = 0.0
        self._loss = Loss()

    # -- state ----------------------------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of records held and not yet in the file."""
        return self._queued

    @property
    def failing(self) -> bool:
        """True while the file refuses writes (an outage not yet reported)."""
        return self._failing_since is not None

    @property
    def error(self) -> str:
        """The last write error of the current outage ('' when healthy)."""
        return self._loss.error if self._failing_since is not None else ""

    @property
    def loss(self) -> Loss:
        """Records lost in the current outage (not yet reported)."""
        return self._loss

    def inherit(self, other: FileSink) -> None:
        """Take over the unreported outage of ``other`` (the sink this one replaces), to report it here."""
        if other._failing_since is not None:
            self._failing_since = other._failing_since
            self._loss = other._loss
            self._retry_at = other._retry_at

    def next_deadline(self) -> float | None:
        """Monotonic time of the next retry while failing with records held."""
        return self._retry_at if self._failing_since is not None and not self._direct else None

    # -- writing --------------------------------------------------------------------------------------------------

    def submit(self, data: bytes) -> None:
        """Take whole rendered records: write them now (no budget) or queue them."""
        if not data:
            return
        if self._direct:
            if self._failing_since is None:
                try:
                    self.logfile.write(data)  # the healthy path: one write
                    return
                except PartialWrite as exc:
                    self._lost(data[exc.kept:], exc)  # whole records that got in before the disk filled are not lost
                    return
                except OSError as exc:
                    self._lost(data, exc)
                    return
            self._submit_failing(data)
            return
        self._queue.append(data)
        self._queued += len(data)
        if self._failing_since is not None and self._queued > self.buffer_bytes:
            self._drop_oldest()

    def _submit_failing(self, data: bytes) -> None:
        """No budget, an outage not yet reported: the report first, then ``data``; what is refused is counted."""
        with hold(self.logfile.lock):  # other threads count and report too
            if not self._report(time.monotonic()):
                self._lost(data, None)
                return
        self.submit(data)

    def flush(self, now: float, *, force: bool = False) -> bool:
        """Write what is queued, in batches of at most ``slice_bytes``; while failing only once the retry is due (or
        ``force``). True when nothing is left."""
        if self._failing_since is not None:
            if now < self._retry_at and not force:
                return False
            if not self._report(now):
                return False
        queue = self._queue
        limit = self.slice_bytes
        while queue:
            head = queue[0]
            if len(head) > limit:  # cut a big batch at a record boundary: rotation checks happen between writes
                cut = (head.rfind(b"\n", 0, limit) + 1) or (head.find(b"\n", limit) + 1) or len(head)
                if cut < len(head):
                    queue[0] = head[cut:]
                    queue.appendleft(head[:cut])
            batch = [queue[0]]
            size = len(batch[0])
            for chunk in itertools.islice(queue, 1, None):
                if size + len(chunk) > limit:
                    break
                batch.append(chunk)
                size += len(chunk)
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            try:
                self._write_whole(data)
            except _Torn as torn:
                self._consume(torn.done)
                self._fail(torn.error, now)
                return False
            self._consume(len(data))
        return True

    def close(self) -> None:
        """Close the file (what is queued is not written: ``flush(force=True)`` first)."""
        self.logfile.close()

    # -- the failure policy ---------------------------------------------------------------------------------------

    def _lost(self, data: bytes, exc: OSError | None) -> None:
        """No budget: ``data`` is lost; count it (and the error), an outage begins if none is on."""
        now = time.time()
        with hold(self.logfile.lock):
            if self._failing_since is None:
                self._failing_since = now
                self._loss = Loss()
            self._loss.count(data, now)
            if exc is not None:
                self._loss.error = describe_os_error(exc)

    def _fail(self, error: OSError, now: float) -> None:
        """A write of the queue failed: an outage begins (or goes on); retry later; keep within the budget."""
        if self._failing_since is None:
            self._failing_since = time.time()
            self._loss = Loss()
        self._loss.error = describe_os_error(error)
        self._retry_at = now + self.retry_interval
        if self._queued > self.buffer_bytes:
            self._drop_oldest()

    def _report(self, now: float) -> bool:
        """Write the loss record of the outage; True once it is on disk (the sink is healthy again)."""
        since = self._failing_since
        if since is None:
            return True
        late = sum(chunk.count(b"\n") for chunk in self._queue)
        message, fields = loss_notice(self._loss, self.path, since=since, late=late, budget=self.buffer_bytes)
        try:
            self._write_whole(self._notice(message, fields))
        except _Torn as torn:
            self._loss.error = describe_os_error(torn.error)
            self._retry_at = now + self.retry_interval
            return False
        self._failing_since = None
        self._loss = Loss()
        return True

    def _drop_oldest(self) -> None:
        """Drop the oldest queued records until the queue fits ``buffer_bytes``; count lines, bytes and times."""
        queue = self._queue
        wall = time.time()
        while queue and self._queued > self.buffer_bytes:
            chunk = queue.popleft()
            self._queued -= len(chunk)
            overflow = self._queued + len(chunk) - self.buffer_bytes
            if overflow < len(chunk):
                # Drop only the oldest whole records of this batch that are needed to fit.
                cut = chunk.find(b"\n", overflow - 1) + 1
                if 0 < cut < len(chunk):
                    kept = chunk[cut:]
                    queue.appendleft(kept)
                    self._queued += len(kept)
                    chunk = chunk[:cut]
            self._loss.count(chunk, wall)

    def _consume(self, done: int) -> None:
        """Remove the first ``done`` bytes (a record boundary) from the queue: they are in the file."""
        queue = self._queue
        while done and queue:
            chunk = queue[0]
            if len(chunk) <= done:
                queue.popleft()
                self._queued -= len(chunk)
                done -= len(chunk)
            else:
                queue[0] = chunk[done:]
                self._queued -= done
                done = 0

    def _write_whole(self, data: bytes) -> None:
        """Append ``data`` (whole records) with one LogFile.write; raise :class:`_Torn` with how much got in.

        On an ``exclusive`` file (logwrap: its only writer) a write the disk cuts short leaves only whole records
        behind: LogFile trims the cut one and says how many bytes of ``data`` are safely in the file.
        """
        try:
            self.logfile.write(data)
        except PartialWrite as exc:
            raise _Torn(exc.kept, exc) from None
        except OSError as exc:
            raise _Torn(0, exc) from None
