"""The console line on a pipe (stdout under Docker and Kubernetes): whole lines from many threads and many processes,
never a torn one; past PIPE_BUF a line is cut with a marker naming the file that has the whole record."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fastapi_support import BIN, HERE, REPO, Call, free_port, send_all, stop, wait_ready
from mlops_logging.testing import read_records
from support.procs import wait_for

LINE = re.compile(rb"\S+ INFO t: L(\d+)-(\d+):(\d+):(x*):E\n")
LINE_CUT = re.compile(rb"\S+ INFO t: L(\d+)-(\d+):(\d+):(x*) \xe2\x80\xa6\[cut: (\d+) bytes; whole record in \S+\]\n")

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
    """Every line is one whole console line, or (past PIPE_BUF on a pipe) its start and the cut marker: what was
    kept and the bytes the marker says were left out add up to the declared length; returns (thread, index) of each."""
    seen = []
    for line in lines:
        match = LINE.fullmatch(line)
        if match:
            assert len(match.group(4)) == int(match.group(3)), "a console line lost bytes in the middle"
        else:
            match = LINE_CUT.fullmatch(line)
            assert match, f"torn console line: {line[:80]!r}...{line[-80:]!r} ({len(line)} bytes)"
            kept = line.rindex(b" \xe2\x80\xa6[cut: ")
            assert kept + int(match.group(5)) == match.start(4) + int(match.group(3)) + len(b":E"), "bytes lost"
        assert len(line) <= select.PIPE_BUF
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


# --- many writer processes: a console line on a pipe is at most PIPE_BUF bytes, so no process tears another's ------

SIZES = (4095, 4096, 4097, 64 * 1024)  # console lines, newline included: under, at and past PIPE_BUF, and far past
HEAD = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) "
STARTS = re.compile(HEAD)
TAG = re.compile(rb": L[\d.]+s\d+:")
#: The context a request's records carry in the gateway (the middleware's id and the trace context it starts).
REQUEST_CONTEXT = rb" request_id=\S+ trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16} trace_flags=[0-9a-f]{2}"
TAGGED = re.compile(HEAD + rb"\S+: (L[\d.]+s(\d+)):x*:E(?:" + REQUEST_CONTEXT + rb")?\n")
TAGGED_CUT = re.compile(HEAD + rb"\S+: (L[\d.]+s(\d+)):x* \xe2\x80\xa6\[cut: (\d+) bytes; whole record in (\S+)\]\n")
DROPPED = re.compile(HEAD.replace(b"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)", b"WARNING")
                     + rb"mlops_logging: (\d+) console lines dropped while stdout was full \(the log file has every "
                     rb"record\)\n")


def _request_context(request_id: str) -> str:
    """What the console line of a record written during a request ends with (trace ids of their fixed length)."""
    return f" request_id={request_id} trace_id={'0' * 32} span_id={'0' * 16} trace_flags=00"


def _x_count(size: int, logger: str, tag: str, suffix: str = "") -> int:
    """How many x's make the console line ``<ts> INFO <logger>: <tag>:x...x:E<suffix>\\n`` exactly ``size`` bytes."""
    return size - len(f"2026-01-01T00:00:00.000Z INFO {logger}: {tag}::E{suffix}\n")


def _judge_pipe_lines(data: bytes, log: Path) -> tuple[list[str], int]:
    """Every line read from the pipe is whole: at most PIPE_BUF bytes, valid UTF-8, one console head, and either a
    whole line of the length its tag says or its cut form (the bytes left out + what was kept = that length) naming
    the log file. Returns the tags of the tagged lines and how many lines the consoles said they dropped."""
    assert data.endswith(b"\n")
    lines = data.splitlines(keepends=True)
    tags, dropped, torn, long = [], 0, [], []
    for line in lines:
        if len(line) > select.PIPE_BUF:
            long.append(line)
        if not STARTS.match(line) or STARTS.search(line, 1):
            torn.append(line)  # a head missing, or a second line's head inside this one
        elif (note := DROPPED.fullmatch(line)) is not None:
            dropped += int(note.group(1))
        elif not TAG.search(line):  # the servers' own lines (startup, workers booting)
            if b"xxxxxxxx" in line:
                torn.append(line)
        elif (whole := TAGGED.fullmatch(line)) is not None and len(line) == int(whole.group(2)):
            tags.append(whole.group(1).decode())
        elif (cut := TAGGED_CUT.fullmatch(line)) is not None:
            kept = line.rindex(b" \xe2\x80\xa6[cut: ")
            assert kept + int(cut.group(3)) + 1 == int(cut.group(2)), f"a cut that lost bytes: {line[-200:]!r}"
            assert cut.group(4).decode() == str(log)
            line.decode("utf-8")  # a cut never splits a character
            tags.append(cut.group(1).decode())
        else:
            torn.append(line)
    example = (torn or long or [b""])[0]
    assert not torn and not long, (f"{len(torn)} torn lines and {len(long)} lines longer than PIPE_BUF of "
                                   f"{len(lines)}; e.g. {example[:120]!r}...{example[-120:]!r} ({len(example)} bytes)")
    return tags, dropped


def _judge_file(log: Path, tags: list[str]) -> None:
    """The file has every record whole: exactly one per tag, its message of the full length."""
    records = [r for r in read_records(log) if TAG.match(f": {r['message']}".encode())]
    assert sorted(r["message"].split(":", 1)[0] for r in records) == sorted(tags)
    for record in records:
        tag, xs, end = record["message"].split(":")
        assert (xs, end) == ("x" * len(xs), "E")
        assert len(xs) == _x_count(int(tag.rsplit("s", 1)[1]), record["logger"], tag,
                                   _request_context(tag) if record.get("request_id") else "")


class _PipeReader:
    """Reads a pipe to its end in a thread, as ``docker logs`` does."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while chunk := os.read(self.read_end, 1 << 16):
            self.chunks.append(chunk)

    def close_write_end(self) -> None:
        os.close(self.write_end)

    def data(self) -> bytes:
        """Everything, once every write end is closed (the children exited)."""
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        os.close(self.read_end)
        return b"".join(self.chunks)


# argv: log dir, process number, rounds, sizes
PROCESS = """
import sys, threading
from mlops_logging import configure_logging, get_logger
configure_logging("svc", log_dir=sys.argv[1])
log = get_logger("t")
proc, rounds, sizes = sys.argv[2], int(sys.argv[3]), [int(s) for s in sys.argv[4].split(",")]

def run(t):
    for i in range(rounds):
        for size in sizes:
            tag = f"L{proc}.{t}.{i}s{size}"
            log.info(f"{tag}:" + "x" * (size - len(f"2026-01-01T00:00:00.000Z INFO t: {tag}::E\\n")) + ":E")

threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_console_lines_of_four_processes_with_four_threads_each_never_tear_in_one_pipe(tmp_path: Path) -> None:
    """gunicorn workers, a multiprocessing pool, torchrun ranks: several processes share one stdout pipe. A lock
    cannot order writes across processes; a write of at most PIPE_BUF bytes is atomic on a pipe."""
    rounds = 6
    pipe = _PipeReader()
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, str(tmp_path), str(p), str(rounds),
                               ",".join(map(str, SIZES))], stdout=pipe.write_end, stderr=subprocess.PIPE)
             for p in range(4)]
    pipe.close_write_end()
    try:
        errors = [proc.communicate(timeout=300)[1] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()  # a no-op once it exited
    assert [proc.returncode for proc in procs] == [0] * 4, errors
    assert errors == [b""] * 4
    tags, dropped = _judge_pipe_lines(pipe.data(), tmp_path / "svc.log")
    expected = [f"L{p}.{t}.{i}s{size}" for p in range(4) for t in range(4) for i in range(rounds) for size in SIZES]
    assert len(tags) == len(set(tags)) and set(tags) <= set(expected) and len(tags) + dropped == len(expected)
    _judge_file(tmp_path / "svc.log", expected)


def test_console_lines_of_four_gunicorn_workers_never_tear_in_one_pipe(tmp_path: Path, log_root: Path) -> None:
    """The issue's setting: gunicorn workers under Docker, whose stdout is one pipe (mlops_logging.gunicorn_conf)."""
    pipe = _PipeReader()
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-k", "uvicorn_worker.UvicornWorker",
            "-w", "4", "-b", f"127.0.0.1:{port}", "--pythonpath", str(HERE), "--no-control-socket",
            "--graceful-timeout", "10", "fastapi_testapp:app"]
    with (tmp_path / "gunicorn.err").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=pipe.write_end, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO,
                                start_new_session=True)
    pipe.close_write_end()
    calls = []
    for i in range(40):
        for size in SIZES:
            tag = f"L{i}s{size}"
            calls.append(Call("long", f"/long?tag={tag}&n={_x_count(size, 'testapp', tag, _request_context(tag))}",
                              tag))
    try:
        wait_ready(f"http://127.0.0.1:{port}/ok", proc, tmp_path / "gunicorn.err")
        send_all(f"http://127.0.0.1:{port}", calls)
    finally:
        code = stop(proc)
    assert code == 0, (tmp_path / "gunicorn.err").read_text(errors="replace")[-3000:]
    assert all(call.status == 200 for call in calls)
    log = log_root / "fastapi" / "fastapi.log"
    tags, dropped = _judge_pipe_lines(pipe.data(), log)
    assert len(tags) == len(set(tags)) and set(tags) <= {c.sent_id for c in calls}
    assert len(tags) + dropped == len(calls)
    _judge_file(log, [c.sent_id for c in calls if c.sent_id])
    booted = [r for r in read_records(log) if r["message"].startswith("Booting worker with pid")]
    assert len(booted) == 4


def test_without_a_log_file_a_long_console_line_is_split_into_whole_lines_that_keep_all_of_it(tmp_path: Path) -> None:
    """The console is then the only copy: nothing is cut away; each piece is a whole line with the record's head."""
    (tmp_path / "plain-file").write_text("")
    code = """
import sys
from mlops_logging import configure_logging, get_logger
configure_logging("svc", log_dir=sys.argv[1])   # cannot be created: stdout only, said once on stderr
get_logger("t").info("L:" + "\u00e9" * 30000 + ":E", after="\\n" * 2000)  # newlines: escaped, quoted
get_logger("t").info("short")
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "plain-file" / "logs")], capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"logging to stdout only" in proc.stderr
    lines = proc.stdout.splitlines(keepends=True)
    assert all(len(line) <= select.PIPE_BUF and STARTS.match(line) and not STARTS.search(line, 1) for line in lines)
    assert lines[-1].endswith(b" INFO t: short\n")
    pieces = lines[:-1]
    head = pieces[0][:pieces[0].index(b": L:") + 2]
    continues, continued = " \u2026[continues]\n".encode(), "\u2026[continued] ".encode()
    assert len(pieces) >= 16 and all(p.startswith(head) for p in pieces)
    assert all(p.endswith(continues) for p in pieces[:-1]) and pieces[-1].endswith(b"\n")
    assert all(p[len(head):].startswith(continued) for p in pieces[1:])
    body = pieces[0][len(head):-len(continues)] + b"".join(p[len(head) + len(continued):-len(continues)]
                                                           for p in pieces[1:-1])
    body += pieces[-1][len(head) + len(continued):]
    assert body.decode() == "L:" + "\u00e9" * 30000 + ':E after="' + "\\n" * 2000 + '"\n'
