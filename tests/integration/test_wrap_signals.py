"""logwrap forwards signals as tini and dumb-init do: every catchable one, job control included, and the child starts
with the signal dispositions and mask logwrap itself was started with.

The child here is a recorder: it catches every signal it may catch and appends each one's number to a file, so a test
sends a signal to logwrap and waits for it to arrive; a signal that is not forwarded fails at once with its name (and
says so when it killed logwrap instead).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlops_logging.testing import read_records
from support.container import can_contain, not_contained_reason, start
from wrap_helpers import (
    PY,
    WRAP,
    child_records,
    exit_description,
    file_has,
    proc_state,
    run,
    script,
    start_wrap,
    supervised,
    wait_for,
    wrap_cmd,
    wrapper_records,
)

RECORDER = """\
    import os, signal, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    def record(signum, frame):
        os.write(fd, b"%d\\n" % signum)
    kept = []
    for signum in sorted(signal.valid_signals()):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        # A signal ignored when we started stays ignored, as shells do (PIPE and XFSZ: Python ignores them itself).
        if signal.getsignal(signum) == signal.SIG_IGN and signum not in (signal.SIGPIPE, signal.SIGXFSZ):
            kept.append(int(signum))
            continue
        signal.signal(signum, record)
    print("ready; ignored since start:", kept, flush=True)
    while True:
        time.sleep(1)
"""

#: The spec: every signal a process can catch, but CHLD (logwrap reaps), the fault signals (SEGV, BUS, FPE, ILL, TRAP,
#: SYS, ABRT) included, as dumb-init forwards them (and see the test at the end); TSTP/TTIN/TTOU are job control
#: (tested below).
NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
JOB_CONTROL = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
FORWARDED = sorted(set(signal.valid_signals()) - NOT_FORWARDED - set(JOB_CONTROL))


def name(sig: int) -> str:
    if signal.SIGRTMIN < sig < signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
    return signal.Signals(sig).name


def received(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except FileNotFoundError:
        return []


def _default_dispositions() -> None:
    """In the forked child, before exec: every signal the test run itself ignores back to its default, so logwrap
    starts as from an interactive shell (``nohup make test &`` ignores HUP, INT and QUIT, and so would the child)."""
    for signum in range(1, signal.NSIG):
        try:
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP and the numbers Python does not know


@contextmanager
def recorder(tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> Iterator[tuple[object, Path, Path]]:
    """logwrap ARGS -- RECORDER GOT, started through ``prefix`` (e.g. a shell that ignores a signal first)."""
    logs = tmp_path / "logs"
    got = tmp_path / "got"
    command = [*prefix, *wrap_cmd(logs, "--service", "rec", *args, command=[*script(tmp_path, "rec.py", RECORDER),
                                                                             str(got)])]
    log = logs / "rec.log"
    with supervised(command, stdin=None, preexec_fn=_default_dispositions) as proc:
        wait_for(lambda: file_has(log, b"ready; ignored since start"), what="the recorder to start", proc=proc)
        yield proc, got, log


def child_pid(log: Path) -> int:
    return next(r["child_pid"] for r in wrapper_records(log) if "child_pid" in r)


def test_every_catchable_signal_is_forwarded_to_the_child(tmp_path: Path) -> None:
    assert len(FORWARDED) > 45  # 1-31 and the real-time signals Python allows, less the few above
    with recorder(tmp_path) as (proc, got, log):
        for sig in FORWARDED:
            os.kill(proc.pid, sig)
            wait_for(lambda sig=sig: sig in received(got), timeout=10, what=f"{name(sig)} to reach the child",
                     proc=proc)
        assert received(got) == FORWARDED  # each exactly once, in order
        forwarded = [r["signal"] for r in wrapper_records(log) if r["message"].startswith("forwarded ")]
    assert forwarded == [name(sig) for sig in FORWARDED if sig != signal.SIGWINCH]  # WINCH is not worth a record


def test_a_signal_ignored_when_logwrap_started_stays_ignored_in_the_child_and_is_not_forwarded(tmp_path: Path) -> None:
    """``trap '' INT; exec logwrap -- CMD``: CMD starts with INT ignored too, and logwrap does not forward it."""
    with recorder(tmp_path, prefix=("sh", "-c", 'trap "" INT; exec "$@"', "sh")) as (proc, got, log):
        ready = next(r["message"] for r in child_records(log) if r["message"].startswith("ready"))
        assert ready == "ready; ignored since start: [2]"  # INT, and only INT (PIPE and XFSZ are reset)
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGUSR1)
        wait_for(lambda: signal.SIGUSR1 in received(got), timeout=10, what="USR1 to reach the child", proc=proc)
        assert received(got) == [signal.SIGUSR1]
        assert not any("SIGINT" in r["message"] for r in wrapper_records(log))


def test_the_child_starts_with_the_signal_mask_and_dispositions_logwrap_started_with(tmp_path: Path) -> None:
    """As tini's sigconf test: what CMD sees in /proc/self/status is what logwrap was given, not what it uses."""
    logs = tmp_path / "logs"
    blocker = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR2}); "
               "signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execvp(sys.argv[1], sys.argv[1:])")
    command = [PY, "-c", blocker,
               *wrap_cmd(logs, "--service", "mask", command=["grep", "^Sig[BI]", "/proc/self/status"])]
    result = run(command)
    assert result.returncode == 0, result.stderr
    masks = dict(r["message"].split(":\t") for r in child_records(logs / "mask.log"))

    def signals(mask: str) -> set[int]:
        bits = int(mask, 16)
        return {n for n in range(1, 65) if bits & (1 << (n - 1))}

    # What the same program sees without logwrap in between: the blocker's HUP, Python's own PIPE and XFSZ, and
    # whatever the test runner was started with (GNU make starts recipes with glibc's signals 32 and 33 ignored).
    direct = run([PY, "-c", blocker, "grep", "^SigIgn", "/proc/self/status"])
    inherited = signals(direct.stdout.decode().split(":\t")[1])
    assert signal.SIGHUP in inherited
    assert signals(masks["SigBlk"]) == {signal.SIGTERM, signal.SIGUSR2}
    # Everything logwrap was started with stays ignored in CMD, except PIPE and XFSZ, which Python itself ignores at
    # start (their first disposition is unknowable): back to default, as subprocess does.
    assert signals(masks["SigIgn"]) == inherited - {signal.SIGPIPE, signal.SIGXFSZ}


BLOCKED_TERM_CHILD = """\
    import signal, time
    print("blocked:", sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, []))), flush=True)
    while signal.SIGTERM not in signal.sigpending():
        time.sleep(0.01)
    print("TERM is pending", flush=True)
"""


def test_a_term_blocked_when_logwrap_started_is_still_forwarded(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    blocker = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); "
               "os.execvp(sys.argv[1], sys.argv[1:])")
    command = [PY, "-c", blocker,
               *wrap_cmd(logs, "--service", "blocked", command=script(tmp_path, "child.py", BLOCKED_TERM_CHILD))]
    log = logs / "blocked.log"
    with supervised(command) as proc:
        wait_for(lambda: file_has(log, b'"blocked: [15]"'), what="the child to start with TERM blocked", proc=proc)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: file_has(log, b"TERM is pending"), timeout=10,
                 what="the forwarded TERM to be pending in the child", proc=proc)
        assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", JOB_CONTROL, ids=[s.name for s in JOB_CONTROL])
def test_job_control_signals_are_forwarded_then_logwrap_stops_and_cont_wakes_both(tmp_path: Path, sig: int) -> None:
    """dumb-init's rule: forward TSTP/TTIN/TTOU, then stop ourselves; a CONT resumes us and is forwarded too."""
    with recorder(tmp_path) as (proc, got, log):
        os.kill(proc.pid, sig)
        wait_for(lambda: sig in received(got), timeout=10, what=f"{name(sig)} to reach the child", proc=proc)
        wait_for(lambda: proc_state(proc.pid) == "T", timeout=10, what="logwrap to stop itself")
        os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: signal.SIGCONT in received(got), timeout=10, what="CONT to reach the child", proc=proc)
        assert proc_state(proc.pid) != "T"
        assert received(got) == [sig, signal.SIGCONT]


def test_tstp_stops_logwrap_and_a_child_that_does_not_catch_it_and_cont_resumes_both(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with start_wrap(logs, "--service", "stop", command=["sh", "-c", "echo up; exec sleep 60"], stdin=None) as proc:
        log = logs / "stop.log"
        wait_for(lambda: file_has(log, b'"up"'), what="the child to start", proc=proc)
        child = child_pid(log)
        os.kill(proc.pid, signal.SIGTSTP)
        wait_for(lambda: proc_state(proc.pid) == proc_state(child) == "T", timeout=10, what="both to be stopped")
        os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: "T" not in (proc_state(proc.pid), proc_state(child)), timeout=10, what="both to run again")


def test_with_signal_group_tstp_stops_the_whole_group_as_dumb_init_does(tmp_path: Path) -> None:
    """The child's session is not logwrap's, so the kernel would drop a TSTP to it: the group gets STOP instead."""
    with recorder(tmp_path, "--signal-group") as (proc, got, log):
        child = child_pid(log)
        os.kill(proc.pid, signal.SIGTSTP)
        wait_for(lambda: proc_state(proc.pid) == proc_state(child) == "T", timeout=10, what="both to be stopped")
        os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: signal.SIGCONT in received(got), timeout=10, what="CONT to reach the child", proc=proc)
        assert "T" not in (proc_state(proc.pid), proc_state(child))
        assert received(got) == [signal.SIGCONT]  # STOP cannot be caught: the recorder only saw the CONT


def test_signal_group_sends_term_to_what_the_child_leaves_in_its_group_when_it_exits(tmp_path: Path) -> None:
    """dumb-init's setsid rule: the child exits, its background jobs get TERM (and the pipes they hold close)."""
    logs = tmp_path / "logs"
    pid_file = tmp_path / "bg.pid"
    command = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo 'main done'"]
    with start_wrap(logs, "--service", "left", "--signal-group", "--drain-timeout", "30", command=command) as proc:
        assert proc.wait(timeout=20) == 0  # not the 30 s drain: the leftover died of the TERM, closing the pipes
    background = int(pid_file.read_text())
    wait_for(lambda: proc_state(background) in (None, "Z"), timeout=10, what="the background sleep to be gone")
    [record] = [r for r in wrapper_records(logs / "left.log") if "left_in_group" in r]
    assert record["left_in_group"] == [background] and record["signal"] == "SIGTERM"
    assert not any("still held open" in r["message"] for r in wrapper_records(logs / "left.log"))


def test_signal_group_kills_leftovers_that_ignore_term_after_kill_after(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    pid_file = tmp_path / "bg.pid"
    ready = tmp_path / "ready"
    command = ["sh", "-c", f"(trap '' TERM; touch {ready}; exec sleep 60) & echo $! > {pid_file}; "
               f"while [ ! -e {ready} ]; do sleep 0.01; done; echo 'main done'"]
    with start_wrap(logs, "--service", "stubborn", "--signal-group", "--kill-after", "0.5", "--drain-timeout", "30",
                    command=command) as proc:
        assert proc.wait(timeout=20) == 0
    background = int(pid_file.read_text())
    wait_for(lambda: proc_state(background) in (None, "Z"), timeout=10, what="the background sleep to be gone")
    records = wrapper_records(logs / "stubborn.log")
    assert [r["signal"] for r in records if "left_in_group" in r] == ["SIGTERM", "SIGKILL"]
    assert records[-1]["exit_code"] == 0


def test_without_a_signalfd_handlers_forward_signals_and_a_record_says_so(tmp_path: Path) -> None:
    """A seccomp profile may refuse signalfd(2): logwrap then catches signals with handlers (PIPE, XFSZ excepted)."""
    logs = tmp_path / "logs"
    got = tmp_path / "got"
    no_signalfd = ("import sys; from mlops_logging import wrap; from mlops_logging.wrap import _process\n"
                   "def refuse(signals): raise OSError(38, 'Function not implemented')\n"
                   "_process._signalfd = refuse\n"
                   "sys.exit(wrap.main(sys.argv[1:]))")
    command = [PY, "-c", no_signalfd, "--log-dir", str(logs), "--service", "fallback", "--",
               *script(tmp_path, "rec.py", RECORDER), str(got)]
    log = logs / "fallback.log"
    with supervised(command) as proc:
        wait_for(lambda: file_has(log, b"ready; ignored since start"), what="the recorder to start", proc=proc)
        for sig in (signal.SIGUSR1, signal.SIGALRM, signal.SIGRTMIN + 3):
            os.kill(proc.pid, sig)
            wait_for(lambda sig=sig: sig in received(got), timeout=10, what=f"{name(sig)} to reach the child",
                     proc=proc)
        [warning] = [r for r in wrapper_records(log) if r["level"] == "WARNING"]
        assert "signalfd failed" in warning["message"] and "SIGPIPE and SIGXFSZ are not forwarded" in warning["message"]
        assert "nor the fault signals (ABRT, BUS, FPE, ILL, SEGV, SYS, TRAP)" in warning["message"]


#: The signals a fault raises (and abort()): sent with kill() they are a request, `docker kill -s ABRT` asks a server
#: for a core dump, and dumb-init forwards them like any other.
FAULTS = (signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGSEGV, signal.SIGSYS, signal.SIGTRAP)

DIES_OF_IT = """\
    import os, resource, signal, sys, time
    marker, sig = sys.argv[1], int(sys.argv[2])
    def got(signum, frame):
        with open(marker, "w") as f:
            f.write(f"got {signal.Signals(signum).name}\\n")
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left in the test's directory
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # and dies of it, as a server asked for a core dump does
    signal.signal(sig, got)
    print("ready", flush=True)
    while True:
        time.sleep(1)
"""


@pytest.mark.parametrize("contained", [False, True], ids=["child-of-the-test", "pid-1"])
@pytest.mark.parametrize("sig", FAULTS, ids=[s.name for s in FAULTS])
def test_a_fault_signal_sent_to_logwrap_is_forwarded_and_it_exits_as_for_any_forwarded_signal(
        tmp_path: Path, sig: signal.Signals, contained: bool) -> None:
    """``kill -ABRT <logwrap>`` (ILL, TRAP, BUS, FPE, SEGV, SYS too), as a child of the test and as PID 1 of a new PID
    namespace: the child gets it, dies of it, logwrap exits 128+N with its exit record written, nothing left running."""
    if contained and not can_contain():
        pytest.skip(not_contained_reason())
    logs = tmp_path / "logs"
    marker = tmp_path / "got"
    argv = [*WRAP, "--service", "fault", "--", *script(tmp_path, "dies.py", DIES_OF_IT), str(marker), str(int(sig))]
    server = start(argv, logs, tmp_path / "console", {**os.environ, "MLOPS_LOG_DIR": "/logs"}, contained=contained)
    try:
        wait_for(lambda: file_has(logs / "fault.log", b'"ready"'), what="the child to start", proc=server.proc)
        server.stop(sig, timeout=20)
        left = server.members()
    finally:
        server.kill()
    # logwrap itself exited, with the status of a forwarded signal (unshare passes PID 1's on: a PID 1 killed by
    # the signal would make unshare die of it too).
    assert server.proc.returncode == 128 + sig, f"logwrap {exit_description(server.proc.returncode)}"
    assert marker.read_text() == f"got {sig.name}\n"
    assert left == []  # no orphan: the child did not outlive logwrap
    records = wrapper_records(logs / "fault.log")
    forwarded = [r for r in records if r["message"].startswith(f"forwarded {sig.name} ")]
    assert len(forwarded) == 1 and forwarded[0]["level"] == "INFO"
    last = records[-1]
    assert last["message"].startswith("the child") and f"was killed by {sig.name}" in last["message"]
    assert last["signal"] == sig.name and last["exit_code"] == 128 + sig and last["level"] == "INFO"
    assert read_records(logs / "fault.log")[-1] == last  # the exit record is the file's last


#: A logwrap that faults for real when it is about to forward USR1: the faulting code, and the signal it dies of. As
#: PID 1 the ABRT that abort() raises is ignored (init ignores a signal it sends itself), and glibc's abort() then
#: ends in an instruction that faults: SEGV.
REAL_FAULTS = {"null-pointer-read": ("ctypes.string_at(0)", signal.SIGSEGV, signal.SIGSEGV),
               "abort": ("os.abort()", signal.SIGABRT, signal.SIGSEGV)}
FAULTY_LOGWRAP = """\
    import ctypes, os, resource, signal, sys
    from mlops_logging import wrap
    from mlops_logging.wrap import _supervisor
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    forward = _supervisor.Supervisor._forward
    def faulty(self, sig, sender, now):
        if sig == signal.SIGUSR1:
            {fault}
        forward(self, sig, sender, now)
    _supervisor.Supervisor._forward = faulty
    sys.exit(wrap.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("contained", [False, True], ids=["child-of-the-test", "pid-1"])
@pytest.mark.parametrize("fault", sorted(REAL_FAULTS))
def test_a_real_fault_of_logwrap_itself_still_kills_it(tmp_path: Path, fault: str, contained: bool) -> None:
    """The fault signals are blocked for the signalfd, yet a fault logwrap raises itself is not hidden: it dies of
    it (the kernel unblocks a fault's signal; abort() unblocks ABRT), it does not hang or go on."""
    if contained and not can_contain():
        pytest.skip(not_contained_reason())
    code, sig, sig_as_pid1 = REAL_FAULTS[fault]
    logs = tmp_path / "logs"
    faulty = script(tmp_path, "faulty.py", FAULTY_LOGWRAP.replace("{fault}", code))
    server = start([*faulty, "--service", "faulty", "--", "sleep", "60"], logs, tmp_path / "console",
                   {**os.environ, "MLOPS_LOG_DIR": "/logs"}, contained=contained)
    try:
        wait_for(lambda: file_has(logs / "faulty.log", b'"child_pid"'), what="the child to start", proc=server.proc)
        os.kill(server.pid1, signal.SIGUSR1)
        server.proc.wait(timeout=20)
    finally:
        server.kill()
    expected = sig_as_pid1 if contained else sig
    assert server.proc.returncode == -expected, f"logwrap {exit_description(server.proc.returncode)}"
