"""The one failure policy of a log file (_sink.FileSink): logwrap's budget, configure_logging's none, one record."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from mlops_logging._files import LogFile
from mlops_logging._sink import FileSink


class _FlakyFile(LogFile):
    """A LogFile on a disk that fails on demand: the kernel takes ``let_through`` bytes, then refuses the rest."""

    fail_with: int | None = None
    let_through: int = 0

    def _write(self, fd: int, data: bytes | memoryview) -> int:  # type: ignore[override]
        if self.fail_with is None:
            return os.write(fd, data)
        if self.let_through:  # a short write, as write(2) gives when the disk fills mid-way
            written = os.write(fd, data[: self.let_through])
            self.let_through = 0
            return written
        raise OSError(self.fail_with, "simulated")


def _note(message: str, fields: dict[str, object]) -> bytes:
    return json.dumps({"level": "WARNING", "message": message, **fields}).encode() + b"\n"


def _records(n: int, start: int = 0) -> bytes:
    return b"".join(json.dumps({"message": f"r{i}"}).encode() + b"\n" for i in range(start, start + n))


def test_sink_buffers_while_failing_then_reports_and_writes_late(tmp_path: Path) -> None:
    log = _FlakyFile(tmp_path / "s.log", check_interval=0.0, exclusive=True)
    sink = FileSink(log, buffer_bytes=1 << 20, notice=_note)
    sink.submit(_records(2))
    assert sink.flush(0.0)
    log.fail_with = errno.ENOSPC
    sink.submit(_records(3, 2))
    assert not sink.flush(1.0) and sink.failing
    assert sink.next_deadline() == 2.0
    sink.submit(_records(1, 5))
    assert not sink.flush(1.5)  # not yet due: no write attempted
    log.fail_with = None
    assert sink.flush(2.0) and not sink.failing
    lines = [json.loads(line) for line in (tmp_path / "s.log").read_bytes().splitlines()]
    assert [r["message"] for r in lines[:2]] == ["r0", "r1"]
    assert lines[2]["level"] == "WARNING" and lines[2]["lost_records"] == 0 and lines[2]["late_records"] == 4
    assert [r["message"] for r in lines[3:]] == ["r2", "r3", "r4", "r5"]


def test_sink_drops_the_oldest_whole_records_past_the_bound_and_counts_them(tmp_path: Path) -> None:
    log = _FlakyFile(tmp_path / "s.log", check_interval=0.0, exclusive=True)
    one = len(_records(1))
    sink = FileSink(log, buffer_bytes=3 * one, notice=_note)
    log.fail_with = errno.EIO
    for i in range(10):
        sink.submit(_records(1, i))
        sink.flush(float(i))
    assert sink.pending_bytes <= 3 * one
    assert sink.loss.records == 7 and sink.loss.bytes == 7 * one
    log.fail_with = None
    assert sink.flush(100.0)
    lines = [json.loads(line) for line in (tmp_path / "s.log").read_bytes().splitlines()]
    assert lines[0]["lost_records"] == 7 and lines[0]["error"] == "[Errno 5] simulated"
    assert [r["message"] for r in lines[1:]] == ["r7", "r8", "r9"]


def test_sink_trims_a_torn_write_back_to_whole_records(tmp_path: Path) -> None:
    log = _FlakyFile(tmp_path / "s.log", check_interval=0.0, exclusive=True)
    sink = FileSink(log, buffer_bytes=1 << 20, notice=_note)
    batch = _records(4)
    log.fail_with = errno.ENOSPC
    log.let_through = len(_records(2)) + 3  # two whole records and 3 bytes of the third reach the disk
    sink.submit(batch)
    assert not sink.flush(0.0)
    assert (tmp_path / "s.log").read_bytes() == _records(2)  # the torn tail was cut off
    assert sink.pending_bytes == len(_records(2, 2))  # only the records not on disk are retried
    log.fail_with = None
    log.let_through = 0
    assert sink.flush(5.0)
    lines = [json.loads(line) for line in (tmp_path / "s.log").read_bytes().splitlines()]
    assert [r.get("message") for r in lines if r.get("level") != "WARNING"] == ["r0", "r1", "r2", "r3"]


LOSS_FIELDS = {"lost_records", "lost_bytes", "lost_since", "lost_until", "outage_since", "error", "late_records"}


def test_without_a_budget_a_refused_record_is_counted_at_once_and_the_loss_record_has_the_same_shape(
        tmp_path: Path) -> None:
    log = _FlakyFile(tmp_path / "s.log")
    sink = FileSink(log, notice=_note)  # configure_logging's: no memory budget
    sink.submit(_records(1))
    log.fail_with = errno.ENOSPC
    sink.submit(_records(2, 1))  # never raises
    assert sink.failing and sink.loss.records == 2 and sink.pending_bytes == 0 and sink.next_deadline() is None
    log.fail_with = None
    sink.submit(_records(1, 3))
    lines = [json.loads(line) for line in (tmp_path / "s.log").read_bytes().splitlines()]
    assert [r["message"] for r in lines] == ["r0", lines[1]["message"], "r3"]
    assert set(lines[1]) - {"level", "message"} == LOSS_FIELDS
    assert (lines[1]["lost_records"], lines[1]["late_records"]) == (2, 0)
    assert lines[1]["message"].startswith(f"log file write failed: {tmp_path / 's.log'} could not be written from ")


def test_with_a_budget_the_loss_record_has_the_same_fields(tmp_path: Path) -> None:
    log = _FlakyFile(tmp_path / "s.log", check_interval=0.0, exclusive=True)
    sink = FileSink(log, buffer_bytes=len(_records(1)), notice=_note)
    log.fail_with = errno.EIO
    sink.submit(_records(3))
    assert not sink.flush(0.0)
    log.fail_with = None
    assert sink.flush(1.0)
    report = json.loads((tmp_path / "s.log").read_bytes().splitlines()[0])
    assert set(report) - {"level", "message"} == LOSS_FIELDS
    assert (report["lost_records"], report["late_records"]) == (2, 1)
    assert "past the " in report["message"] and "1 records held in memory follow, written late" in report["message"]
