"""The console line on a pipe (stdout under Docker and Kubernetes): whole lines from many threads, never a torn one."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support.procs import wait_for
from mlops_logging.testing import read_records

LINE = re.compile(rb"\S+ INFO t: L(\d+)-(\d+):(\d+):(x*):E\n")

# argv: log dir, lines per thread, pause between lines (s)
THREADS = """
import random, sys, threading, time
from mlops_logging import configure_logging, get_logger
configure_logging("svc", log_dir=sys.argv[1])
log = get_logger("t")

def run(t):
    rnd = random.Random(t)
    for i in range(int(sys.argv[2])):
        n = rnd.randint(5 * 1024, 100 * 1024)   # 5-100 KiB: far past PIPE_BUF (4 KiB)
        log.info(f"L{t}-{i}:{n}:" + "x" * n + ":E")
        time.sleep(float(sys.argv[3]))

threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def _check_whole(lines: list[bytes]) -> list[tuple[int, int]]:
    """Every line is one whole console line: its declared length matches; returns (thread, index) of each."""
    seen = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"torn console line: {line[:80]!r}...{line[-80:]!r} ({len(line)} bytes)"
        assert len(match.group(4)) == int(match.group(3)), "a console line lost bytes in the middle"
        seen.append((int(match.group(1)), int(match.group(2))))
    return seen


def test_long_console_lines_from_four_threads_never_tear_in_a_pipe(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", THREADS, str(tmp_path), "60", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # a no-op once it exited; never leave it running when the test fails
    assert proc.returncode == 0, err
    lines = out.splitlines(keepends=True)
    assert len(lines) == 240
    assert sorted(_check_whole(lines)) == sorted((t, i) for t in range(4) for i in range(60))
    assert len(read_records(tmp_path / "svc.log")) == 240


@pytest.mark.parametrize("blocking", [False, True], ids=["non-blocking", "blocking"])
def test_a_full_stdout_drops_whole_lines_counts_them_and_never_tears_one(tmp_path: Path, blocking: bool) -> None:
    """A stuck reader never stops the service, whether its stdout is a non-blocking pipe or (the usual case under
    Docker and Kubernetes) a blocking one, whose flags the service must not change: it is shared with the parent."""
    read_end, write_end = os.pipe()
    if not blocking:
        flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
        fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)  # the file description the child's stdout shares
    proc = subprocess.Popen([sys.executable, "-c", THREADS, str(tmp_path), "15", "0.1"], stdout=write_end,
                            stderr=subprocess.PIPE)
    probe = os.dup(write_end)  # the same open file description as the child's stdout, to read its flags afterwards
    os.close(write_end)
    chunks: list[bytes] = []

    def reader() -> None:
        # A reader stuck for longer than a line may wait (Console.stall_timeout: 1 s): it reads only once half the
        # records are in the file (which gets every record first).
        log = tmp_path / "svc.log"
        wait_for(lambda: log.exists() and log.read_bytes().count(b"\n") >= 30, timeout=60,
                 what="half the records in the file")
        while True:
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                return
            chunks.append(chunk)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
        shared_flags_after = fcntl.fcntl(probe, fcntl.F_GETFL)
        os.close(probe)  # the reader sees end of file once this last write end is gone
    thread.join(timeout=30)
    os.close(read_end)
    assert proc.returncode == 0, err
    lines = b"".join(chunks).splitlines(keepends=True)
    notes = [line for line in lines if b" WARNING mlops_logging: " in line]
    dropped = sum(int(re.search(rb"(\d+) console lines dropped while stdout was full", n).group(1)) for n in notes)
    payload = _check_whole([line for line in lines if line not in notes])
    assert dropped > 0, "the stuck reader should have cost some console lines"
    assert len(payload) + dropped == 60 and len(set(payload)) == len(payload)
    assert len(read_records(tmp_path / "svc.log")) == 60  # the file has every record
    assert shared_flags_after & os.O_NONBLOCK == (0 if blocking else os.O_NONBLOCK)  # the shared description kept
