"""LogFile when the disk fills in the middle of a write: what stays in the file, and what the caller is told."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from mlops_logging._files import LogFile, PartialWrite


class _FillingDisk(LogFile):
    """The kernel takes ``room`` more bytes, then answers ENOSPC (what write(2) does on a disk that fills)."""

    room: int | None = None

    def _write(self, fd: int, data: bytes | memoryview) -> int:  # type: ignore[override]
        if self.room is None:
            return os.write(fd, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = os.write(fd, data[: self.room])
        self.room -= written
        return written


def _records(*names: str) -> bytes:
    return b"".join(json.dumps({"message": n}).encode() + b"\n" for n in names)


def test_an_exclusive_file_trims_the_record_the_full_disk_cut_and_says_what_got_in(tmp_path: Path) -> None:
    log = _FillingDisk(tmp_path / "x.log", exclusive=True)
    log.room = len(_records("a")) + 4
    with pytest.raises(PartialWrite) as info:
        log.write(_records("a", "b"))
    assert info.value.kept == len(_records("a")) and info.value.errno == errno.ENOSPC
    assert (tmp_path / "x.log").read_bytes() == _records("a")
    log.room = None
    log.write(_records("b"))
    assert (tmp_path / "x.log").read_bytes() == _records("a", "b")


def test_a_shared_file_keeps_the_cut_record_and_starts_the_next_on_a_fresh_line(tmp_path: Path) -> None:
    log = _FillingDisk(tmp_path / "x.log")
    log.room = len(_records("a")) + 4
    with pytest.raises(PartialWrite) as info:
        log.write(_records("a", "b"))
    assert info.value.kept == len(_records("a"))
    log.room = None
    log.write(_records("c"))
    lines = (tmp_path / "x.log").read_bytes().split(b"\n")[:-1]
    assert lines[0] == _records("a")[:-1] and lines[1] == _records("b")[:4] and lines[2] == _records("c")[:-1]


def test_a_write_refused_outright_is_a_plain_oserror_with_nothing_written(tmp_path: Path) -> None:
    log = _FillingDisk(tmp_path / "x.log", exclusive=True)
    log.room = 0
    with pytest.raises(OSError) as info:
        log.write(_records("a"))
    assert not isinstance(info.value, PartialWrite)
    assert (tmp_path / "x.log").read_bytes() == b""
