"""logwrap's failure policy: the child is never blocked and never loses its service because logging went wrong."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_logging.testing import read_records
from support.tmpfs import mounted_tmpfs
from wrap_helpers import (
    WRAP,
    child_records,
    file_has,
    run,
    run_wrap,
    script,
    start_wrap,
    supervised,
    wait_for,
    wrap_cmd,
    wrapper_records,
)


def _numbers(records: list[dict], prefix: str) -> list[int]:
    return [int(r["message"].split()[1]) for r in records if r["message"].startswith(prefix + " ")]


def test_log_file_renamed_then_deleted_mid_run_loses_nothing_and_is_recreated(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    log = logs / "rot.log"
    prog = script(tmp_path, "phases.py", f"""\
        import os, sys, time
        for phase in "abc":
            for i in range(200):
                print(f"{{phase}} {{i}}", flush=True)
            while phase != "c" and not os.path.exists({str(tmp_path)!r} + "/go-" + phase):
                time.sleep(0.01)
    """)
    with start_wrap(logs, "--service", "rot", command=prog, stdout=subprocess.DEVNULL) as proc:
        wait_for(lambda: file_has(log, b'"a 199"'), what="phase a in the file", proc=proc)
        os.rename(log, logs / "rot.log.1")  # logrotate's rename/create
        (tmp_path / "go-a").touch()
        wait_for(lambda: file_has(log, b'"b 199"'), what="phase b in a new file", proc=proc)
        phase_b = read_records(log)
        log.unlink()  # a cleanup job deletes the live file
        (tmp_path / "go-b").touch()
        assert proc.wait(timeout=30) == 0
    assert _numbers(read_records(logs / "rot.log.1"), "a") == list(range(200))
    assert _numbers(phase_b, "b") == list(range(200))
    final = read_records(log)
    assert _numbers(final, "c") == list(range(200))
    assert final[-1]["exit_code"] == 0


def test_unwritable_log_directory_without_strict_still_runs_the_child(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file where the log directory's parent should be")
    marker = tmp_path / "ran"
    result = run_wrap(blocker / "logs", "--service", "svc", command=["sh", "-c", f"touch {marker}; echo served"])
    assert result.returncode == 0
    assert marker.exists()
    assert result.stdout == b"served\n"  # passthrough keeps the service's output visible
    assert result.stderr.count(b"\n") == 1 and b"without log files" in result.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_unwritable_log_directory_with_strict_exits_before_the_child_runs(tmp_path: Path, how: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    marker = tmp_path / "ran"
    args = ["--strict"] if how == "flag" else []
    env = {**os.environ, "MLOPS_LOG_STRICT": "1"} if how == "env" else None
    result = run_wrap(blocker / "logs", "--service", "svc", *args, command=["sh", "-c", f"touch {marker}"], env=env)
    assert result.returncode == 125
    assert not marker.exists()
    assert result.stderr.count(b"\n") == 1 and b"--strict" in result.stderr and b"cannot create" in result.stderr


def test_log_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    target = tmp_path / "elsewhere"
    (logs / "svc.log").symlink_to(target)
    result = run_wrap(logs, "--service", "svc", "--strict", command=["true"])
    assert result.returncode == 125 and b"symlink" in result.stderr
    assert not target.exists()


def test_passthrough_reader_gone_turns_passthrough_off_and_the_file_keeps_everything(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    read_end, write_end = os.pipe()
    os.close(read_end)  # docker logs' reader died: every write to our stdout is EPIPE
    prog = script(tmp_path, "chatty.py", """\
        import sys
        for i in range(5000):
            print(f"n {i}", flush=(i % 100 == 0))
        print("to stderr", file=sys.stderr)
    """)
    try:
        result = run_wrap(logs, "--service", "epipe", command=prog, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert result.stderr == b"to stderr\n"  # the other stream still passes through
    records = read_records(logs / "epipe.log")
    assert _numbers(records, "n") == list(range(5000))
    warnings = [r for r in wrapper_records(logs / "epipe.log") if r["level"] == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0]["stream"] == "stdout" and "Broken pipe" in warnings[0]["message"]


def test_closed_stdout_fd_is_survived(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    command = ["sh", "-c", 'exec "$@" 1>&-', "sh", *WRAP, "--log-dir", str(logs), "--service", "closed", "--",
               "sh", "-c", "echo one; echo two"]
    result = run(command)
    assert result.returncode == 0, result.stderr
    assert [r["message"] for r in child_records(logs / "closed.log")] == ["one", "two"]
    assert any("stdout is closed" in r["message"] for r in wrapper_records(logs / "closed.log"))


def _flood(tmp_path: Path, lines: int) -> tuple[list[str], int]:
    """A child that writes ``lines`` numbered 100-byte lines as fast as it can; and how many bytes that is."""
    prog = script(tmp_path, "flood.py", f"""\
        import sys
        for i in range({lines}):
            sys.stdout.write(f"n {{i}} " + "x" * 90 + "\\n")
        sys.stdout.flush()
    """)
    return prog, sum(len(f"n {i} ".encode()) + 91 for i in range(lines))


def _reader(tmp_path: Path, pause: float) -> list[str]:
    """A passthrough reader: reads 64 KiB at a time with ``pause`` seconds between reads, then says how much it got."""
    return script(tmp_path, "reader.py", f"""\
        import os, sys, time
        total = 0
        while chunk := os.read(0, 65536):
            total += len(chunk)
            time.sleep({pause})
        print(total)
    """)


@pytest.mark.parametrize("pause", [0, 0.01], ids=["fast-reader", "slow-reader"])
def test_a_live_passthrough_reader_gets_every_byte_however_fast_the_child_writes(tmp_path: Path, pause: float) -> None:
    """``logwrap -- cat 4MB | wc -c``: a burst bigger than every buffer on the way is slowed down, never cut."""
    logs = tmp_path / "logs"
    big = tmp_path / "big.txt"
    lines = 40_000
    big.write_bytes(b"".join(b"line %06d " % i + b"y" * 89 + b"\n" for i in range(lines)))  # 4 MB
    wrap = shlex.join(wrap_cmd(logs, "--service", "burst", command=["cat", str(big)]))
    result = run(["sh", "-c", f"{wrap} | {shlex.join(_reader(tmp_path, pause))}"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == big.stat().st_size
    records = read_records(logs / "burst.log")
    assert _numbers(records, "line") == list(range(lines))
    assert not [r for r in records if r["level"] == "WARNING"]


def test_a_reader_that_pauses_never_splits_a_line_into_partial_records(tmp_path: Path) -> None:
    """While the passthrough is full logwrap stops reading the child (backpressure): the child is blocked, not idle,
    so a line that a read cut in two must not be flushed as a partial record after the idle time (0.2 s)."""
    logs = tmp_path / "logs"
    lines = 40_000  # 4 MB: more than the pipes and the 1 MiB passthrough buffer hold
    prog, total = _flood(tmp_path, lines)
    pauser = script(tmp_path, "pauser.py", """\
        import os, time
        total, pauses = 0, 0
        while chunk := os.read(0, 65536):
            total += len(chunk)
            if total > (pauses + 1) * 400_000 and pauses < 6:
                pauses += 1
                time.sleep(0.6)  # longer than the framer's idle time, shorter than --passthrough-timeout (2 s)
        print(total)
    """)
    wrap = shlex.join(wrap_cmd(logs, "--service", "pauses", command=prog))
    result = run(["sh", "-c", f"{wrap} | {shlex.join(pauser)}"], timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_records(logs / "pauses.log")
    assert [r["message"][:40] for r in records if r.get("partial")] == []
    assert _numbers(records, "n") == list(range(lines))
    assert int(result.stdout) == total  # nothing dropped either


def test_a_reader_that_stalls_longer_than_the_passthrough_timeout_loses_counted_bytes_and_the_file_none(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    lines = 30_000  # 3 MB: more than the pipes and the 1 MiB passthrough buffer hold
    prog, total = _flood(tmp_path, lines)
    stall = script(tmp_path, "stall.py", """\
        import os, sys, time
        time.sleep(3)  # takes nothing for 3 s, more than --passthrough-timeout 1
        total = 0
        while chunk := os.read(0, 65536):
            total += len(chunk)
        print(total)
    """)
    wrap = shlex.join(wrap_cmd(logs, "--service", "stall", "--passthrough-timeout", "1", command=prog))
    result = run(["sh", "-c", f"{wrap} | {shlex.join(stall)}"], timeout=120)
    assert result.returncode == 0, result.stderr
    records = read_records(logs / "stall.log")
    assert _numbers(records, "n") == list(range(lines))  # the file has every line
    (warning,) = [r for r in wrapper_records(logs / "stall.log") if r["level"] == "WARNING"]
    assert "fell behind" in warning["message"] and "--passthrough-timeout" in warning["message"]
    assert 0 < warning["passthrough_dropped_bytes"] < total
    assert int(result.stdout) + warning["passthrough_dropped_bytes"] == total  # every byte accounted for


@pytest.mark.parametrize("lines", [20_000, 1_000], ids=["more-than-the-buffer", "less-than-the-buffer"])
def test_stuck_passthrough_reader_never_blocks_the_child(tmp_path: Path, lines: int) -> None:
    """Nobody reads our stdout: 2 MB is more than the pipes and the 1 MiB passthrough buffer hold; 100 kB is more than
    the pipe holds, so some waits in the buffer when the child exits. Either way logwrap does not wait for good."""
    logs = tmp_path / "logs"
    read_end, write_end = os.pipe()  # nobody reads this until logwrap has exited
    prog, total = _flood(tmp_path, lines)
    try:
        result = run_wrap(logs, "--service", "stuck", "--drain-timeout", "0.3", "--passthrough-timeout", "0.5",
                          command=prog, stdout=write_end, timeout=60)
        os.close(write_end)
        write_end = -1
        passed = b""
        while chunk := os.read(read_end, 1 << 20):
            passed += chunk
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert result.returncode == 0
    assert _numbers(read_records(logs / "stuck.log"), "n") == list(range(lines))  # the file has everything
    (warning,) = [r for r in wrapper_records(logs / "stuck.log") if r["level"] == "WARNING"]
    assert "fell behind" in warning["message"]
    assert len(passed) < total
    assert len(passed) + warning["passthrough_dropped_bytes"] == total  # every byte accounted for


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs to fill up (root only)."""
    with mounted_tmpfs(tmp_path / "full", "1m") as mount:
        yield mount


@pytest.mark.root
def test_disk_full_keeps_the_child_running_and_reports_the_loss_when_space_returns(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (600 * 1024))  # leaves about 400 KiB for the log
    logs = small_tmpfs / "logs"
    done, go = tmp_path / "done", tmp_path / "go"
    lines = 20_000  # about 2 MiB of output, 4 MiB of JSON records: the disk fills early
    prog = script(tmp_path, "writer.py", f"""\
        import os, sys, time
        for i in range({lines}):
            sys.stdout.write(f"n {{i}} " + "y" * 90 + "\\n")
        sys.stdout.flush()
        open({str(done)!r}, "w").close()  # every line written while the disk was full: we were never blocked
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print("after", flush=True)
    """)
    passthrough = tmp_path / "stdout.bin"
    with passthrough.open("wb") as out:
        with start_wrap(logs, "--service", "full", "--buffer-bytes", "256k", command=prog, stdout=out,
                        stderr=subprocess.PIPE) as proc:
            wait_for(done.exists, timeout=60, what="the child to write everything while the disk is full", proc=proc)
            assert proc.poll() is None
            filler.unlink()  # space comes back: within a retry interval the file is written again
            wait_for(lambda: file_has(logs / "full.log", b"lost_records"), what="the loss report", proc=proc)
            go.touch()
            assert proc.wait(timeout=30) == 0
    expected = "".join(f"n {i} " + "y" * 90 + "\n" for i in range(lines)) + "after\n"
    assert passthrough.read_bytes() == expected.encode()  # passthrough complete
    records = read_records(logs / "full.log")  # every line is a whole, valid record: nothing torn
    numbers = _numbers(records, "n")
    assert numbers == sorted(set(numbers))  # in order, no duplicates
    (report,) = [r for r in wrapper_records(logs / "full.log") if "lost_records" in r]
    assert report["level"] == "WARNING" and "No space left on device" in report["error"]
    assert report["lost_records"] > 0 and report["lost_bytes"] > 0
    assert report["lost_records"] + len(numbers) == lines  # every line is either in the file or counted as lost
    assert report["lost_since"] <= report["lost_until"]
    assert [r["message"] for r in records[-2:]] == ["after", records[-1]["message"]]
    assert records[-1]["exit_code"] == 0


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp_path is root's alone)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="logwrap-eperm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_kill_after_sigkill_the_kernel_refuses_is_said_and_the_log_files_stay_on(shared_dir: Path) -> None:
    """logwrap as uid 65534; its child ignores TERM, then becomes root through a setuid copy of setpriv, so the
    ``--kill-after`` KILL fails with EPERM: a WARNING says so and every later line still reaches the file."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a setuid-root helper and a switch to uid 65534")
    rootpriv = shared_dir / "rootpriv"
    rootpriv.write_bytes(Path("/usr/bin/setpriv").read_bytes())
    rootpriv.chmod(0o4755)
    logs = shared_dir / "logs"
    logs.mkdir(mode=0o777)
    logs.chmod(0o777)
    as_root = f"{shlex.quote(str(rootpriv))} --reuid=0 --regid=0 --clear-groups"
    go = shared_dir / "go"  # the child becomes root only once logwrap forwarded the TERM (so the TERM still works)
    child = ["sh", "-c", f"trap '' TERM; echo started; until [ -e {shlex.quote(str(go))} ]; do sleep 0.01; done; "
             f"exec {as_root} sh -c 'echo now root; sleep 4; echo after'"]
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            *wrap_cmd(logs, "--service", "eperm", "--kill-after", "3", command=child)]
    log = logs / "eperm.log"
    with supervised(argv, stdout=subprocess.DEVNULL) as proc:
        wait_for(lambda: file_has(log, b'"message":"started"'), what="the child's first line", proc=proc)
        proc.send_signal(15)
        wait_for(lambda: file_has(log, b"forwarded SIGTERM"), what="the TERM forwarded", proc=proc)
        go.touch()
        assert proc.wait(timeout=30) == 0
    records = read_records(log)
    messages = [r["message"] for r in records]
    warning = [r for r in records if "could not send SIGKILL" in r["message"]]
    assert len(warning) == 1 and warning[0]["level"] == "WARNING", messages
    assert "Operation not permitted" in warning[0]["message"]
    assert messages.index("now root") < messages.index(warning[0]["message"]) < messages.index("after"), messages
    assert not [m for m in messages if "internal error" in m], messages
    assert records[-1]["exit_code"] == 0
