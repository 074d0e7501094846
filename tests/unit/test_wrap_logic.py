"""logwrap's pure pieces: the command line, the default service name, redaction, the record sink's failure policy."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from mlops_logging._files import LogFile
from mlops_logging._sink import FileSink
from mlops_logging.wrap._cli import DEFAULT_BUFFER_BYTES, Options, UsageError, parse_args
from mlops_logging.wrap._command import redact_argv, service_from_command
from mlops_logging.wrap._passthrough import DEFAULT_PASSTHROUGH_TIMEOUT, Passthrough
from mlops_logging.wrap._process import FORWARDED_SIGNALS


def test_parse_args_defaults_and_values() -> None:
    assert parse_args(["--", "vllm", "serve", "--port", "8000"]) == Options(command=("vllm", "serve", "--port", "8000"))
    opts = parse_args(["--service=llm", "--log-dir", "/logs", "--format", "TEXT", "--split-streams", "--no-passthrough",
                       "--max-line-bytes", "1k", "--max-bytes", "10MiB", "--backups", "3", "--buffer-bytes", "2m",
                       "--strict", "--signal-group", "--kill-after", "10", "--subreaper", "--drain-timeout", "0.5",
                       "--", "cmd", "--strict"])
    assert opts == Options(command=("cmd", "--strict"), service="llm", log_dir="/logs", fmt="text",
                           split_streams=True, passthrough=False, max_line_bytes=1024, max_bytes=10 << 20, backups=3,
                           buffer_bytes=2 << 20, strict=True, signal_group=True, kill_after=10.0, subreaper=True,
                           drain_timeout=0.5)
    assert parse_args(["--", "x"]).buffer_bytes == DEFAULT_BUFFER_BYTES
    assert parse_args(["--passthrough-timeout", "0.5", "--no-tty", "--", "x"]) == Options(
        command=("x",), passthrough_timeout=0.5, tty=False)
    assert parse_args(["--", "x"]).passthrough_timeout == DEFAULT_PASSTHROUGH_TIMEOUT == 2.0
    assert parse_args(["--help"]).help and parse_args(["-h", "--", "x"]).help


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "missing '--'"),
        (["vllm"], "missing '--' before the command"),
        (["--"], "no command"),
        (["--", ""], "no command"),
        (["--nope", "--", "x"], "unknown option '--nope'"),
        (["-x", "--", "x"], "unknown option '-x'"),
        (["--service"], "needs a value"),
        (["--service", "", "--", "x"], "--service needs a non-empty name"),
        (["--service=", "--", "x"], "--service needs a non-empty name"),
        (["--service", "--", "x"], "needs a value"),
        (["--strict=1", "--", "x"], "takes no value"),
        (["--max-line-bytes", "10", "--", "x"], "too small"),
        (["--max-bytes", "lots", "--", "x"], "is not a size"),
        (["--drain-timeout", "-1", "--", "x"], "not a number of seconds"),
        (["--backups", "two", "--", "x"], "not a whole number"),
    ],
)
def test_parse_args_rejects_bad_usage_with_one_line(argv: list[str], needle: str) -> None:
    with pytest.raises(UsageError, match=None) as info:
        parse_args(argv)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("command", "service"),
    [("vllm", "vllm"), ("/usr/local/bin/mlflow", "mlflow"), ("python3.11", "python3.11"), ("./my prog", "my_prog"),
     ("..hidden", "hidden"), ("/", "service"), ("x" * 300, "x" * 128)],
)
def test_service_from_command(command: str, service: str) -> None:
    assert service_from_command(command) == service


def test_redact_argv() -> None:
    argv = ["vllm", "serve", "--api-key", "k1", "--api-key=k2", "--hf-token", "t1", "HF_TOKEN=t2", "--max-tokens", "9",
            "Authorization: Bearer t3", "--uri", "postgresql://u:pw@h/db", "--token"]
    assert redact_argv(argv) == ["vllm", "serve", "--api-key", "[REDACTED]", "--api-key=[REDACTED]", "--hf-token",
                                 "[REDACTED]", "HF_TOKEN=[REDACTED]", "--max-tokens", "9", "Authorization: [REDACTED]",
                                 "--uri", "postgresql://u:[REDACTED]@h/db", "--token"]


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


def test_the_forwarded_signals_are_every_catchable_one_but_chld_and_the_faults() -> None:
    import signal

    assert FORWARDED_SIGNALS == set(range(1, 32)) - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV,
                                                     signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
                                                     signal.SIGSYS, signal.SIGABRT} | set(
        range(signal.SIGRTMIN, signal.SIGRTMAX + 1))


def test_passthrough_is_backpressure_while_the_reader_takes_bytes_and_drops_only_once_it_is_stuck() -> None:
    """On a real pipe with nobody reading at first: full -> the source is not read; no progress for stuck_after ->
    stuck, bytes past the bound are dropped and counted; the reader reads again -> not stuck, the loss is reported."""
    notes: list[tuple[str, str, dict[str, object]]] = []
    read_end, write_end = os.pipe()
    try:
        pt = Passthrough("stdout", write_end, bound=1 << 20, stuck_after=2.0,
                         note=lambda level, message, **f: notes.append((level, message, f)))
        chunk = b"x" * (256 << 10)
        now = 100.0
        while not pt.full:
            pt.push(chunk, now)
        assert pt.queued >= 1 << 20 and not pt.stuck
        assert pt.next_deadline() == 102.0  # the pipe took its 64 KiB at 100.0, nothing since
        pt.check(101.9)
        assert pt.full and not pt.stuck  # still waited for: the source is not read
        pt.check(102.0)
        assert pt.stuck and not pt.full  # stuck: the source is read again ...
        queued = pt.queued
        pt.push(chunk, 102.5)
        assert pt.queued == queued and pt.dropped == len(chunk)  # ... and what does not fit is dropped, counted
        assert notes == []
        while os.read(read_end, 1 << 20) and pt.queued:  # the reader is back
            pt.on_writable(103.0)
        assert not pt.stuck and pt.dropped == 0
        [(level, message, fields)] = notes
        assert level == "WARNING" and "fell behind" in message and fields["passthrough_dropped_bytes"] == len(chunk)
    finally:
        pt.close()
        os.close(read_end)
        os.close(write_end)


def test_passthrough_without_a_stuck_bound_only_ever_waits() -> None:
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        pt = Passthrough("stdin", write_end, bound=4096, stuck_after=None, reopen=False, note=lambda *a, **k: None)
        for _ in range(40):
            pt.push(b"k" * 4096, 1.0)
        assert pt.next_deadline() is None
        pt.check(1e9)
        assert pt.full and not pt.stuck and pt.dropped == 0
    finally:
        os.close(read_end)
        pt.close()
