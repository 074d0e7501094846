"""logwrap's pure pieces: the command line, the default service name, redaction, signals, passthrough."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_logging._redaction import redact_argv
from mlops_logging.wrap._cli import UsageError, parse_args
from mlops_logging.wrap._command import service_from_command
from mlops_logging.wrap._options import DEFAULT_BUFFER_BYTES, Options
from mlops_logging.wrap._passthrough import DEFAULT_PASSTHROUGH_TIMEOUT, Passthrough
from mlops_logging.wrap._process import FAULT_SIGNALS, FORWARDED_SIGNALS


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


def test_the_first_argument_that_is_not_an_option_ends_the_options() -> None:
    assert parse_args(["vllm", "serve", "--port", "8000"]) == Options(command=("vllm", "serve", "--port", "8000"))
    assert parse_args(["--service", "llm", "cmd", "--service", "x", "--"]) == Options(
        command=("cmd", "--service", "x", "--"), service="llm")
    assert parse_args(["-", "x"]) == Options(command=("-", "x"))  # "-" is not an option (as getopt has it)
    assert parse_args(["--", "--weird-name"]) == Options(command=("--weird-name",))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "no command given"),
        (["--service", "x"], "no command given"),
        (["--"], "no command given"),
        (["--", ""], "the command is an empty string"),
        (["", "x"], "the command is an empty string"),
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


def test_the_forwarded_signals_are_every_catchable_one_but_chld_the_faults_included() -> None:
    import signal

    assert FORWARDED_SIGNALS == set(range(1, 32)) - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD} | set(
        range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    assert FAULT_SIGNALS == {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
                             signal.SIGSYS, signal.SIGABRT} < FORWARDED_SIGNALS


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


def test_the_supervisor_changes_state_only_along_the_allowed_transitions(tmp_path: Path) -> None:
    from mlops_logging.wrap._cli import settings_for
    from mlops_logging.wrap._supervisor import TRANSITIONS, State, Supervisor

    opts = parse_args(["--log-dir", str(tmp_path), "--", "true"])
    supervisor = Supervisor(opts, settings_for(opts, {}))
    assert supervisor.state is State.STARTING
    with pytest.raises(RuntimeError, match="no transition from starting to draining"):
        supervisor._enter(State.DRAINING, "a bug")
    assert TRANSITIONS[State.EXITED] == frozenset()


def test_a_run_goes_through_starting_running_draining_exited(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom mlops_logging.wrap._cli import parse_args, settings_for\n"
            "from mlops_logging.wrap._supervisor import Supervisor\n"
            f"opts = parse_args(['--log-dir', {str(tmp_path)!r}, '--no-passthrough', '--', 'true'])\n"
            "s = Supervisor(opts, settings_for(opts, {}))\nstatus = s.run()\n"
            "print(status, [state.value for state, _why in s.transitions])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split("\n")[-2] == "0 ['running', 'draining', 'exited']"
    missing = subprocess.run([sys.executable, "-c", code.replace("'true'", "'/nonexistent/x'")], capture_output=True,
                             text=True, check=True, timeout=60)
    assert missing.stdout.split("\n")[-2] == "127 ['exited']"
