"""logwrap as a process supervisor: exit status, signal forwarding, kill-after, zombie reaping, bounded drain."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlops_logging.testing import read_records
from wrap_helpers import (
    PY,
    child_records,
    file_has,
    pid_alive,
    pid_gone,
    proc_state,
    run,
    run_wrap,
    script,
    start_wrap,
    wait_for,
    wrapper_records,
)
from wrap_helpers import (
    WRAP as WRAP_PREFIX,
)


@pytest.mark.parametrize("code", [0, 1, 2, 3, 42, 125, 126, 127, 128, 129, 200, 254, 255])
def test_exit_status_is_the_childs(tmp_path: Path, code: int) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "code", command=["sh", "-c", f"exit {code}"])
    assert result.returncode == code
    last = wrapper_records(logs / "code.log")[-1]
    assert last["exit_code"] == code
    assert last["level"] == ("INFO" if code == 0 else "ERROR")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM, signal.SIGUSR1])
def test_death_by_signal_is_128_plus_n(tmp_path: Path, sig: signal.Signals) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "sig", command=[PY, "-c", f"import os; os.kill(os.getpid(), {int(sig)})"])
    assert result.returncode == 128 + sig
    last = wrapper_records(logs / "sig.log")[-1]
    assert last["signal"] == sig.name and last["exit_code"] == 128 + sig
    assert last["level"] == "ERROR"  # nobody asked for it


def test_partial_line_is_flushed_when_the_child_dies_of_term(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    prog = script(tmp_path, "progress.py", """\
        import sys, time
        sys.stdout.write("loading weights 42%")
        sys.stdout.flush()
        time.sleep(60)
    """)
    with start_wrap(logs, "--service", "term", command=prog, stdout=subprocess.PIPE) as proc:
        wait_for(lambda: file_has(logs / "term.log", b"loading weights"), what="the unterminated line, idle-flushed",
                 proc=proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert out == b"loading weights 42%"
    (record,) = child_records(logs / "term.log")
    assert record["message"] == "loading weights 42%" and record["partial"] is True
    last = wrapper_records(logs / "term.log")[-1]
    assert last["signal"] == "SIGTERM" and last["level"] == "INFO"  # we forwarded it: an orderly stop


def test_kill_after_sends_sigkill_to_a_child_that_ignores_term(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    prog = script(tmp_path, "stubborn.py", """\
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """)
    with start_wrap(logs, "--service", "stubborn", "--kill-after", "0.3", command=prog) as proc:
        wait_for(lambda: file_has(logs / "stubborn.log", b'"ready"'), what="the child to start", proc=proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    messages = [r["message"] for r in wrapper_records(logs / "stubborn.log")]
    assert any("--kill-after" in m and "SIGKILL" in m for m in messages), messages


def test_signal_group_reaches_the_childs_whole_process_group(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    prog = script(tmp_path, "family.py", """\
        import os, signal, sys, time
        def bye(n, f):
            # One write() per line: print() may split text and newline (PYTHONUNBUFFERED), and two processes
            # sharing a pipe would then interleave their bytes for real.
            os.write(1, f"{os.getpid()} got {signal.Signals(n).name}\\n".encode())
            os._exit(0)
        signal.signal(signal.SIGTERM, bye)
        if os.fork() == 0:
            print("grandchild ready", flush=True)
            time.sleep(60)
            os._exit(1)
        time.sleep(0.05)
        print("parent ready", flush=True)
        os.wait()
        time.sleep(60)
    """)
    log = logs / "group.log"
    with start_wrap(logs, "--service", "group", "--signal-group", command=prog) as proc:
        wait_for(lambda: file_has(log, b"grandchild ready") and file_has(log, b"parent ready"), what="both processes",
                 proc=proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    got = [r["message"] for r in child_records(logs / "group.log") if "got" in r["message"]]
    # Both processes got the forwarded TERM. The grandchild may get a second one: once the child has exited, what
    # is left in its group is sent TERM (dumb-init's rule), which can reach it while its handler is still running.
    assert len({m.split()[0] for m in got}) == 2 and all(m.endswith("got SIGTERM") for m in got)


def test_orphans_are_reaped_with_subreaper(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    pid_file = tmp_path / "grandchild.pid"
    go = tmp_path / "go"
    prog = script(tmp_path, "orphan.py", f"""\
        import os, sys, time
        middle = os.fork()
        if middle == 0:
            if os.fork() == 0:  # the grandchild: detach from the pipes, outlive its parent, then exit
                fd = os.open(os.devnull, os.O_RDWR)
                os.dup2(fd, 1); os.dup2(fd, 2)
                time.sleep(0.2)
                with open({str(pid_file)!r} + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.rename({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
                time.sleep(0.2)
                os._exit(0)
            os._exit(0)  # the middle process exits at once: the grandchild is an orphan now
        os.waitpid(middle, 0)
        print("orphan made", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
    """)
    with start_wrap(logs, "--service", "reaper", "--subreaper", command=prog) as proc:
        grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the grandchild's pid",
                                  proc=proc))
        # The orphan was re-parented to logwrap (the subreaper) ...
        with open(f"/proc/{grandchild}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == proc.pid
        # ... and once it exits, logwrap reaps it: no zombie is left behind while logwrap and the child still run.
        wait_for(lambda: pid_gone(grandchild), what="the orphan to be reaped", proc=proc)
        assert proc.poll() is None
        go.touch()
        assert proc.wait(timeout=30) == 0
    assert wrapper_records(logs / "reaper.log")[-1]["orphans_reaped"] >= 1


def test_subreaper_waits_for_orphans_still_exiting_when_the_child_exits(tmp_path: Path) -> None:
    """vLLM's shape: the main process exits while a helper it started is still shutting down."""
    logs = tmp_path / "logs"
    pid_file = tmp_path / "straggler.pid"
    prog = script(tmp_path, "straggler.py", f"""\
        import os, time
        if os.fork() == 0:  # off the pipes, still alive 0.5 s after the main process is gone
            fd = os.open(os.devnull, os.O_RDWR)
            os.dup2(fd, 1); os.dup2(fd, 2)
            with open({str(pid_file)!r}, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(0.5)
            os._exit(0)
        while not os.path.exists({str(pid_file)!r}):
            time.sleep(0.01)
        print("main process done", flush=True)
    """)
    proc = run_wrap(logs, "--service", "straggler", "--subreaper", "--drain-timeout", "10", command=prog)
    assert proc.returncode == 0
    straggler = int(pid_file.read_text())
    assert pid_gone(straggler), "the orphan must have been reaped by logwrap, not left to whoever adopts it next"
    exit_record = wrapper_records(logs / "straggler.log")[-1]
    assert exit_record["exit_code"] == 0 and exit_record["orphans_reaped"] == 1


def test_subreaper_gives_up_on_long_lived_orphans_after_the_drain_timeout(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    command = ["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo started"]
    started = time.monotonic()
    proc = run_wrap(logs, "--service", "lingering", "--subreaper", "--drain-timeout", "0.5", command=command)
    assert proc.returncode == 0 and time.monotonic() - started < 15
    [warning] = [r for r in wrapper_records(logs / "lingering.log") if r.get("orphans_left")]
    assert warning["level"] == "WARNING" and "still running" in warning["message"]


def test_a_grandchild_holding_the_pipes_does_not_hang_logwrap(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    pid_file = tmp_path / "sleeper.pid"
    command = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo 'child done'; printf 'unterminated'"]
    started = time.monotonic()
    with start_wrap(logs, "--service", "drain", "--drain-timeout", "0.5", command=command,
                    stdout=subprocess.PIPE) as proc:
        out, _ = proc.communicate(timeout=30)
        elapsed = time.monotonic() - started
        sleeper = int(pid_file.read_text())
        assert pid_alive(sleeper)  # it still holds the pipes: logwrap stopped waiting anyway
        os.kill(sleeper, signal.SIGKILL)  # not our descendant any more (re-parented): stop_tree cannot find it
    assert proc.returncode == 0
    assert elapsed < 20  # the sleeper holds the pipes for 60 s
    assert out == b"child done\nunterminated"
    records = child_records(logs / "drain.log")
    assert [(r["message"], r.get("partial", False)) for r in records] == [("child done", False), ("unterminated", True)]
    warnings = [r for r in wrapper_records(logs / "drain.log") if r["level"] == "WARNING"]
    assert len(warnings) == 1 and "still held open" in warnings[0]["message"]
    assert "--drain-timeout" in warnings[0]["message"]
    assert wrapper_records(logs / "drain.log")[-1]["exit_code"] == 0


def test_as_pid_1_orphans_are_reaped_without_subreaper(tmp_path: Path) -> None:
    """In a new PID namespace logwrap is PID 1, as in a container: orphans come to it and must not stay zombies."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "true"],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root and unshare(1) to start a PID namespace")
    logs = tmp_path / "logs"
    prog = script(tmp_path, "orphan_pid1.py", """\
        import os, time
        middle = os.fork()
        if middle == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(1); os.close(2)
                time.sleep(0.1)
                os._exit(0)
            print("orphan", grandchild, flush=True)
            os._exit(0)
        os.waitpid(middle, 0)
        time.sleep(0.05)
        pid = int(open("/proc/self/stat").read().split()[0])
        deadline = time.monotonic() + 10
        def state(p):
            try:
                return open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                return None
        while time.monotonic() < deadline:
            zombies = [d for d in os.listdir("/proc") if d.isdigit() and state(d) == "Z"]
            alive = [d for d in os.listdir("/proc") if d.isdigit() and int(d) not in (1, pid) and state(d)]
            if not zombies and not alive:
                print("no orphan left, no zombie", flush=True)
                break
            time.sleep(0.01)
        else:
            print("left behind:", zombies, alive, flush=True)
    """)
    command = ["unshare", "--fork", "--pid", "--mount-proc", *WRAP_PREFIX, "--log-dir", str(logs), "--service", "pid1",
               "--", *prog]
    result = run(command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == b"no orphan left, no zombie", result.stdout
    records = wrapper_records(logs / "pid1.log")
    assert records[0]["pid"] == 1 and "PID 1" in records[0]["reaper"]
    assert records[-1]["orphans_reaped"] == 1


def test_the_start_record_is_on_disk_before_the_child_runs(tmp_path: Path) -> None:
    """The audit judges a service by its file: ``logwrap -- sleep 30`` shows in it at once, not at the first output."""
    logs = tmp_path / "logs"
    log = logs / "early.log"
    # The child looks at the file first thing: the start record is already there.
    prog = script(tmp_path, "early.py", f"""\
        import time
        print("start record there when the child began:", b"logwrap started" in open({str(log)!r}, "rb").read())
        time.sleep(30)
    """)
    with start_wrap(logs, "--service", "early", command=prog) as proc:
        wait_for(lambda: file_has(log, b"when the child began"), what="the child's line", proc=proc)
        records = read_records(log)
    assert records[0]["message"].startswith("logwrap started") and records[0]["pid"] == proc.pid
    assert [r["message"] for r in records if r.get("logger") != "logwrap"] == [
        "start record there when the child began: True"]


def test_a_silent_child_is_in_the_file_at_once_with_its_pid(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    log = logs / "quiet.log"
    with start_wrap(logs, "--service", "quiet", command=["sleep", "30"]) as proc:
        wait_for(lambda: file_has(log, b'"child_pid"'), timeout=10, what="the start records of a child that prints "
                 "nothing", proc=proc)
        records = read_records(log)
        assert records[0]["message"].startswith("logwrap started")
        assert proc_state(records[-1]["child_pid"]) in ("S", "R")
