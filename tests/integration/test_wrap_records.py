"""logwrap as a real process: what the child's bytes become in the file, and what passes through untouched."""

from __future__ import annotations

import base64
import os
import re
import select
from pathlib import Path

import pytest

from mlops_logging.testing import read_records
from support.records import read_lines
from wrap_helpers import (
    PY,
    WRAP,
    child_records,
    reassemble,
    run,
    run_wrap,
    script,
    start_wrap,
    wrapper_records,
)


def test_lines_become_records_and_pass_through_byte_for_byte(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "demo",
                      command=["sh", "-c", "echo out-1; echo err-1 >&2; echo out-2; printf 'no newline'"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"out-1\nout-2\nno newline"
    assert result.stderr == b"err-1\n"
    records = child_records(logs / "demo.log")
    by_stream = {s: [(r["message"], r.get("partial", False)) for r in records if r["stream"] == s]
                 for s in ("stdout", "stderr")}
    assert by_stream["stdout"] == [("out-1", False), ("out-2", False), ("no newline", True)]
    assert by_stream["stderr"] == [("err-1", False)]
    assert all(r["service"] == "demo" and r["level"] == "INFO" and r["pid"] > 1 for r in records)


def test_partial_final_line_is_flushed_at_eof(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    prog = [PY, "-c", "import sys; sys.stdout.write('a\\nb'); sys.stderr.write('c')"]
    result = run_wrap(logs, "--service", "eof", command=prog)
    assert result.returncode == 0
    assert [(r["message"], r.get("partial", False)) for r in child_records(logs / "eof.log")
            if r["stream"] == "stdout"] == [("a", False), ("b", True)]
    assert [(r["message"], r.get("partial")) for r in child_records(logs / "eof.log")
            if r["stream"] == "stderr"] == [("c", True)]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_line_lengths_around_max_line_bytes_split_and_reassemble(tmp_path: Path, fmt: str) -> None:
    logs = tmp_path / "logs"
    maximum = 100
    lengths = [maximum - 1, maximum, maximum + 1, 2 * maximum, 2 * maximum + 1, 1, 0]
    lines = [("".join(chr(ord("a") + (i + n) % 26) for i in range(n))) for n in lengths]
    payload = "".join(line + "\n" for line in lines)
    prog = script(tmp_path, "long.py", f"import sys; sys.stdout.write({payload!r})")
    result = run_wrap(logs, "--service", "long", "--max-line-bytes", str(maximum), "--format", fmt, command=prog)
    assert result.returncode == 0
    assert result.stdout == payload.encode()
    if fmt == "text":
        body = [line for line in read_lines(logs / "long.log") if b"[stdout]" in line]
        # Text records: one per piece, every piece at most max bytes.
        assert len(body) == 1 + 1 + 2 + 2 + 3 + 1 + 1
        return
    records = child_records(logs / "long.log")
    assert reassemble(records) == lines
    pieces = [(len(r["message"]), r.get("partial", False)) for r in records]
    assert pieces == [
        (99, False),
        (100, False),
        (100, True), (1, False),
        (100, True), (100, False),
        (100, True), (100, True), (1, False),
        (1, False),
        (0, False),
    ]


def test_invalid_utf8_round_trips_through_raw_b64(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    lines = [b"plain ascii", b"latin-1 caf\xe9", b"\xff\xfe\x00\x01 binary \x80\x81", bytes(range(0x80, 0x100)),
             "ok ünïcödé".encode()]
    payload = b"".join(line + b"\n" for line in lines)
    prog = script(tmp_path, "bin.py", f"import sys; sys.stdout.buffer.write({payload!r})")
    result = run_wrap(logs, "--service", "bin", command=prog)
    assert result.returncode == 0
    assert result.stdout == payload  # passthrough is byte for byte
    records = child_records(logs / "bin.log")
    assert len(records) == len(lines)
    for line, record in zip(lines, records, strict=True):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            assert base64.b64decode(record["raw_b64"]) == line
            assert "\ufffd" in record["message"]
        else:
            assert "raw_b64" not in record
            assert record["message"] == text


def test_cr_and_ansi_are_stripped_in_records_but_not_in_passthrough(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    payload = (b"\x1b[32mINFO\x1b[0m:     Application startup complete.\r\n"
               b"\x1b[1;31mbold red\x1b[0m plain\r\r\n"
               b"Loading 10%\rLoading 100%\n")
    prog = script(tmp_path, "ansi.py", f"import sys; sys.stdout.buffer.write({payload!r})")
    result = run_wrap(logs, "--service", "ansi", command=prog)
    assert result.stdout == payload
    records = child_records(logs / "ansi.log")
    messages = [r["message"] for r in records]
    assert messages == ["INFO:     Application startup complete.", "bold red plain", "Loading 100%"]
    assert all("\x1b" not in m and "\r" not in m for m in messages)
    # The original bytes of each cleaned line are kept: the file can give back exactly what the child wrote.
    assert b"".join(base64.b64decode(r["raw_b64"]) + b"\n" for r in records) == payload


def test_a_traceback_interrupted_by_another_processs_line_keeps_error_after_it(tmp_path: Path) -> None:
    """Two processes on one stderr, as vLLM's API server and engine: the second one logs in the middle of the first
    one's traceback."""
    logs = tmp_path / "logs"
    foreign = "(EngineCore_DP0 pid=8) INFO 11-26 08:16:47 [core.py:1] engine says hi"
    other = script(tmp_path, "engine.py", f"import os; os.write(2, {(foreign + chr(10)).encode()!r})")
    prog = script(tmp_path, "workers.py", f"""\
        import os, subprocess
        os.write(2, b'Traceback (most recent call last):\\n  File "/app/x.py", line 3, in <module>\\n')
        subprocess.run({other!r}, check=True)  # the other process writes while the traceback is half-way
        os.write(2, b"    main()\\nValueError: bad\\n")
        os.write(2, b"INFO:     after\\n")
    """)
    result = run_wrap(logs, "--service", "workers", command=prog)
    assert result.returncode == 0, result.stderr
    got = [(r["level"], r["message"]) for r in child_records(logs / "workers.log")]
    assert got == [
        ("ERROR", 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in <module>\n'),
        ("INFO", foreign),
        ("ERROR", "    main()\nValueError: bad"),
        ("INFO", "INFO:     after"),
    ]


def test_python_traceback_is_one_error_record(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    prog = script(tmp_path, "crash.py", """\
        import sys
        print("starting", flush=True)
        def inner():
            raise ValueError("boom")
        def outer():
            inner()
        outer()
    """)
    result = run_wrap(logs, "--service", "crash", command=prog)
    assert result.returncode == 1
    assert b"ValueError: boom" in result.stderr
    errors = [r for r in child_records(logs / "crash.log") if r["stream"] == "stderr"]
    assert len(errors) == 1, errors
    (tb,) = errors
    assert tb["level"] == "ERROR"
    assert tb["message"].startswith("Traceback (most recent call last):\n")
    assert tb["message"].endswith("ValueError: boom")
    assert 'in inner\n    raise ValueError("boom")' in tb["message"]
    exit_record = wrapper_records(logs / "crash.log")[-1]
    assert exit_record["level"] == "ERROR" and exit_record["exit_code"] == 1


def test_text_format(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "txt", "--format", "text",
                      command=["sh", "-c", "echo 'WARNING: disk almost full'; echo 'to stderr' >&2"])
    assert result.returncode == 0
    lines = (logs / "txt.log").read_text().splitlines()
    ts = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
    assert any(re.fullmatch(rf"{ts} WARNING \[stdout\] WARNING: disk almost full", line) for line in lines), lines
    assert any(re.fullmatch(rf"{ts} INFO \[stderr\] to stderr", line) for line in lines), lines
    assert re.fullmatch(rf"{ts} INFO \[logwrap\] logwrap started .*", lines[0])


def test_format_and_directory_from_environment(tmp_path: Path) -> None:
    logs = tmp_path / "env-logs"
    env = {**os.environ, "MLOPS_LOG_DIR": str(logs), "MLOPS_LOG_FORMAT": "text", "MLOPS_SERVICE": "fromenv"}
    result = run([*WRAP, "--", "echo", "hi"], env=env)
    assert result.returncode == 0, result.stderr
    assert b" INFO [stdout] hi\n" in (logs / "fromenv.log").read_bytes()


def test_service_defaults_to_the_command_base_name_under_the_log_root(tmp_path: Path, log_root: Path) -> None:
    result = run([*WRAP, "--", "/bin/echo", "hi"])
    assert result.returncode == 0, result.stderr
    assert [r["message"] for r in child_records(log_root / "echo" / "echo.log")] == ["hi"]


def test_split_streams_write_one_file_per_stream(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "split", "--split-streams",
                      command=["sh", "-c", "echo o1; echo e1 >&2; echo o2; echo e2 >&2; exit 4"])
    assert result.returncode == 4
    assert not (logs / "split.log").exists()
    out = read_records(logs / "split.stdout.log")
    err = read_records(logs / "split.stderr.log")
    assert [r["message"] for r in out if r.get("logger") != "logwrap"] == ["o1", "o2"]
    assert [r["message"] for r in err if r.get("logger") != "logwrap"] == ["e1", "e2"]
    assert {r["stream"] for r in out if "stream" in r} == {"stdout"}
    # Each file says how the run started and ended.
    for records in (out, err):
        assert records[0]["message"].startswith("logwrap started")
        assert records[-1]["exit_code"] == 4


@pytest.mark.parametrize("speedups", ["1", "0"])
def test_the_startup_record_says_whether_the_c_framer_runs_and_both_write_the_same_records(
        tmp_path: Path, speedups: str) -> None:
    logs = tmp_path / "logs"
    lines = "INFO: a\\n  indented\\nWARNING: b \\\"q\\\"\\nplain\\n"
    result = run_wrap(logs, "--service", "sp", command=["printf", lines],
                      env={**os.environ, "MLOPS_LOG_SPEEDUPS": speedups})
    assert result.returncode == 0
    records = read_records(logs / "sp.log")
    assert records[0]["speedups"] is (speedups == "1")
    # The exit record says which path framed the chunks: the C one really ran (or the Python one, when turned off).
    paths = records[-1]["framer_chunks"]
    assert paths["exact"] == 0 and (paths["native"], paths["python"]) == ((1, 0) if speedups == "1" else (0, 1))
    assert [(r["level"], r["message"]) for r in child_records(logs / "sp.log")] == [
        ("INFO", "INFO: a"), ("INFO", "  indented"), ("WARNING", 'WARNING: b "q"'), ("INFO", "plain")]


@pytest.mark.parametrize(("speedups", "framer"), [("1", "C speedups"), ("0", "pure Python (no C speedups)")])
def test_version_names_the_framer_that_would_run(speedups: str, framer: str) -> None:
    result = run([*WRAP, "--version"], env={**os.environ, "MLOPS_LOG_SPEEDUPS": speedups})
    assert result.returncode == 0 and result.stdout.decode().endswith(f", framer: {framer}\n")


def test_the_runs_choice_of_framer_reaches_every_logwrap_the_tests_start(tmp_path: Path) -> None:
    """``make test`` runs this suite twice, the second time with MLOPS_LOG_SPEEDUPS=0: the logwraps of that run must
    frame in pure Python (the environment a test inherits keeps the variable), those of the first in C."""
    from mlops_logging import _framer as lines
    from mlops_logging._settings import speedups_requested

    logs = tmp_path / "logs"
    assert run_wrap(logs, "--service", "choice", command=["echo", "hi"]).returncode == 0
    records = wrapper_records(logs / "choice.log")
    requested = speedups_requested(os.environ)
    assert records[0]["speedups"] is lines.speedups_enabled() is requested
    assert records[-1]["framer_chunks"]["native" if requested else "python"] == 1


def test_stdin_is_inherited_by_the_child(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "cat", command=["cat"], input=b"from stdin\n", stdin=None)
    assert result.returncode == 0
    assert result.stdout == b"from stdin\n"
    assert [r["message"] for r in child_records(logs / "cat.log")] == ["from stdin"]


def test_no_passthrough(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "quiet", "--no-passthrough", command=["sh", "-c", "echo a; echo b >&2"])
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert sorted(r["message"] for r in child_records(logs / "quiet.log")) == ["a", "b"]


def test_secrets_in_the_command_line_are_redacted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    command = ["sh", "-c", "exit 0", "vllm", "--api-key", "sk-live-123", "--hf-token=hf_abcdef", "HF_TOKEN=hf_xyz",
               "--password", "hunter2", "--max-tokens", "512", "--backend-store-uri",
               "postgresql://mlflow:dbpass@db:5432/mlflow"]
    result = run_wrap(logs, "--service", "secret", command=command)
    assert result.returncode == 0
    text = (logs / "secret.log").read_text()
    for secret in ("sk-live-123", "hf_abcdef", "hf_xyz", "hunter2", "dbpass"):
        assert secret not in text
    started = wrapper_records(logs / "secret.log")[0]
    assert started["command"] == ("sh -c 'exit 0' vllm --api-key '[REDACTED]' '--hf-token=[REDACTED]' "
                                  "'HF_TOKEN=[REDACTED]' --password '[REDACTED]' --max-tokens 512 "
                                  "--backend-store-uri 'postgresql://mlflow:[REDACTED]@db:5432/mlflow'")


def test_the_start_record_hides_secrets_in_every_command_line_form_and_keeps_the_flag_names(tmp_path: Path) -> None:
    """The forms of #16: several values of one flag, argparse's abbreviations, a secret inside one ``sh -c`` string,
    URL query parameters, a header given with ``--header=``; and the spellings around them."""
    logs = tmp_path / "logs"
    command = ["sh", "-c", "true vllm serve m --api-key sk-in-shell --port 8000; exit 0", "sh", "HF_TOKEN=hf_env1",
               "--api-key", "sk-many-1", "sk-many-2", "--api-k", "sk-abbrev-1", "--hf-tok", "hf_abbrev2",
               "--url", "https://h/v1?api_key=sk-query-1&token=sk-query-2&sig=sk-query-3&n=1",
               "--header=Authorization: Bearer sk-header-1", "-H", "X-Api-Key: sk-header-2",
               "--api-key=sk-equals-1", "--token", "sk-token-1", "--password", "hunter2",
               "--backend-store-uri", "postgresql://mlflow:p@ss@db/mlflow", "--max-tokens", "512"]
    result = run_wrap(logs, "--service", "secret", command=command)
    assert result.returncode == 0
    text = (logs / "secret.log").read_text()
    leaked = [word for word in ("sk-in-shell", "sk-many-1", "sk-many-2", "sk-abbrev-1", "hf_abbrev2", "sk-query-1",
                                "sk-query-2", "sk-query-3", "sk-header-1", "sk-header-2", "sk-equals-1", "sk-token-1",
                                "hunter2", "hf_env1", "ss@db") if word in text]
    assert leaked == []
    started = wrapper_records(logs / "secret.log")[0]["command"]
    for shown in ("--api-key [REDACTED] --port 8000", "--api-key '[REDACTED]' '[REDACTED]' --api-k '[REDACTED]'",
                  "--hf-tok '[REDACTED]'", "api_key=[REDACTED]&token=[REDACTED]&sig=[REDACTED]&n=1",
                  "'--header=Authorization: [REDACTED]'", "'X-Api-Key: [REDACTED]'", "'--api-key=[REDACTED]'",
                  "--token '[REDACTED]'", "--password '[REDACTED]'", "'HF_TOKEN=[REDACTED]'",
                  "postgresql://mlflow:[REDACTED]@db/mlflow", "--max-tokens 512"):
        assert shown in started, (shown, started)


def test_size_rotation_keeps_records_whole(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    prog = script(tmp_path, "many.py", """\
        import sys
        for i in range(3000):
            sys.stdout.write(f"line {i:05d} " + "x" * 60 + "\\n")
    """)
    result = run_wrap(logs, "--service", "rot", "--max-bytes", "64k", "--backups", "3", "--no-passthrough",
                      command=prog)
    assert result.returncode == 0
    files = [logs / "rot.log.3", logs / "rot.log.2", logs / "rot.log.1", logs / "rot.log"]
    assert all(f.exists() for f in files) and not (logs / "rot.log.4").exists()
    numbers = []
    for f in files:
        assert f.stat().st_size <= 64 * 1024 + 4096 + 300  # rotation happens between batches of whole records
        numbers += [int(r["message"].split()[1]) for r in read_records(f) if r.get("logger") != "logwrap"]
    assert numbers == list(range(numbers[0], 3000))  # the newest records, in order, none torn or repeated


# --- bad usage --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        ([], 2, b"no command given"),
        (["--service", "x"], 2, b"no command given"),
        (["--"], 2, b"no command given"),
        (["--", ""], 2, b"the command is an empty string"),
        (["--frobnicate", "--", "echo"], 2, b"unknown option '--frobnicate'"),
        (["--format", "xml", "--", "echo"], 2, b"'xml' is not known"),
        (["--service", "../etc", "--", "echo"], 2, b"invalid service name"),
        (["--service", "", "--", "echo"], 2, b"--service needs a non-empty name"),
        (["--service=", "--", "echo"], 2, b"--service needs a non-empty name"),
        (["--kill-after", "soon", "--", "echo"], 2, b"not a number of seconds"),
        (["--", "definitely-not-a-command-xyz"], 127, b"command not found"),
        (["--", "/"], 126, b"cannot execute"),
    ],
)
def test_bad_usage_gives_one_clear_line_and_the_conventional_status(
    tmp_path: Path, args: list[str], status: int, needle: bytes
) -> None:
    result = run([*WRAP, "--log-dir", str(tmp_path / "logs"), *args])
    assert result.returncode == status
    assert result.stdout == b""
    assert result.stderr.count(b"\n") == 1 and result.stderr.startswith(b"logwrap: "), result.stderr
    assert needle in result.stderr


@pytest.mark.parametrize("argv", [["--service", "plain", "sh", "-c", "echo out; exit 3"],
                                  ["--service", "plain", "--", "sh", "-c", "echo out; exit 3"]],
                         ids=["without --", "with --"])
def test_the_first_argument_that_is_not_an_option_starts_the_command(tmp_path: Path, argv: list[str]) -> None:
    """As with tini, dumb-init and env: '--' is optional; the command's own options ('-c') are the command's."""
    logs = tmp_path / "logs"
    result = run([*WRAP, "--log-dir", str(logs), *argv])
    assert result.returncode == 3 and result.stdout == b"out\n", result.stderr
    assert [r["message"] for r in child_records(logs / "plain.log")] == ["out"]


def test_not_executable_file_is_126_and_logged(tmp_path: Path) -> None:
    prog = tmp_path / "prog.sh"
    prog.write_text("#!/bin/sh\necho never\n")
    prog.chmod(0o644)
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "noexec", command=[str(prog)])
    assert result.returncode == 126
    assert result.stderr.count(b"\n") == 1 and b"cannot execute" in result.stderr
    started, record = read_records(logs / "noexec.log")  # the start record is written before the spawn
    assert started["message"].startswith("logwrap started")
    assert record["level"] == "ERROR" and record["exit_code"] == 126


@pytest.mark.parametrize("value", ["2", "fast", "enabled", "-1"])
def test_mlops_log_speedups_takes_only_a_boolean(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "ran"
    env = {**os.environ, "MLOPS_LOG_SPEEDUPS": value}
    result = run([*WRAP, "--log-dir", str(tmp_path / "logs"), "--", "touch", str(marker)], env=env)
    assert result.returncode == 2 and not marker.exists()
    assert result.stderr.count(b"\n") == 1 and result.stderr.startswith(b"logwrap: ")
    assert b"MLOPS_LOG_SPEEDUPS" in result.stderr and repr(value).encode() in result.stderr
    # A library user importing the framer is never crashed by the variable: it just keeps the default.
    imported = run([PY, "-c", "from mlops_logging import _framer as lines; print(lines.speedups_enabled())"], env=env)
    assert imported.returncode == 0 and imported.stdout == b"True\n"


@pytest.mark.parametrize(("value", "enabled"), [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("", True),
                                                ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_mlops_log_speedups_accepts_the_usual_boolean_spellings(tmp_path: Path, value: str, enabled: bool) -> None:
    logs = tmp_path / "logs"
    result = run_wrap(logs, "--service", "sp", command=["echo", "hi"], env={**os.environ, "MLOPS_LOG_SPEEDUPS": value})
    assert result.returncode == 0, result.stderr
    assert wrapper_records(logs / "sp.log")[0]["speedups"] is enabled


def test_invalid_setting_in_environment_is_a_usage_error(tmp_path: Path) -> None:
    env = {**os.environ, "MLOPS_LOG_FORMAT": "yaml"}
    result = run([*WRAP, "--log-dir", str(tmp_path), "--", "echo"], env=env)
    assert result.returncode == 2 and b"MLOPS_LOG_FORMAT" in result.stderr


def test_help(tmp_path: Path) -> None:
    result = run([*WRAP, "--help"])
    assert result.returncode == 0 and b"usage: logwrap [options] [--] CMD [ARGS...]" in result.stdout


def test_passthrough_to_a_terminal_leaves_the_shared_terminal_blocking(tmp_path: Path) -> None:
    """stdin, stdout and stderr on one terminal (``docker run -it``): our non-blocking writes must not make the
    child's stdin non-blocking, so passthrough uses a private file description."""
    import pty

    logs = tmp_path / "logs"
    controller, terminal = pty.openpty()
    check = "import fcntl, os; print('stdin nonblocking:', bool(fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK))"
    try:
        # --no-tty: the child shares our terminal (with one of its own it would not see ours at all).
        result = run_wrap(logs, "--service", "tty", "--no-tty", command=[PY, "-c", check], stdin=terminal,
                          stdout=terminal, stderr=terminal)
        seen = b""
        while b"\n" not in seen and select.select([controller], [], [], 10)[0]:
            seen += os.read(controller, 1024)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert b"stdin nonblocking: False" in seen
    assert [r["message"] for r in child_records(logs / "tty.log")] == ["stdin nonblocking: False"]


def test_passthrough_to_a_socket(tmp_path: Path) -> None:
    """journald and some log shippers give the container a socket as stdout."""
    import socket

    logs = tmp_path / "logs"
    ours, theirs = socket.socketpair()
    payload = b"".join(f"line {i}\n".encode() for i in range(2000))
    prog = script(tmp_path, "sock.py", f"import sys; sys.stdout.buffer.write({payload!r})")
    try:
        with start_wrap(logs, "--service", "sock", command=prog, stdout=theirs.fileno()) as proc:
            theirs.close()
            received = b""
            ours.settimeout(30)
            while chunk := ours.recv(1 << 16):
                received += chunk
            assert proc.wait(timeout=30) == 0
    finally:
        ours.close()
    assert received == payload
    assert len(child_records(logs / "sock.log")) == 2000
