"""The real vLLM CPU server behind logwrap (the container entrypoint, run outside Docker) and the gateway before it.

One server for the module (vLLM takes ~25 s to start); the tests run in file order and the last one stops it.
vLLM 0.32 takes an incoming ``X-Request-Id`` as its request id and, with ``--enable-log-requests``, logs
``Received request cmpl-<id>`` / ``chatcmpl-<id>``. Needs ``.venv-vllm`` (``make setup-vllm``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi_support import BIN, CLEAN_EXIT, REPO, free_port, start, stop, wait_ready
from vllm_server import SERVED_MODEL_NAME, ensure_tiny_model, vllm_available, vllm_command, vllm_env, wait_for_http

from support.records import read_records

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

VLLM_MARKER = re.compile(r"^\((?:APIServer|EngineCore\w*|Worker\w*) pid=\d+\) (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@dataclass
class WrappedVllm:
    """logwrap running vLLM: its process, port, log file and passthrough capture."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    console: Path


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WrappedVllm]:
    """`logwrap --service vllm -- python -m vllm.entrypoints.openai.api_server ...` with MLOPS_LOG_DIR set."""
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing: run `make setup-vllm` (scripts/setup-vllm.sh creates .venv-vllm)")
    model = ensure_tiny_model()
    port = free_port()
    log_dir = tmp_path_factory.mktemp("vllm-logs")
    console = log_dir.parent / "vllm.console"
    env = {**os.environ, **vllm_env(), "MLOPS_LOG_DIR": str(log_dir), "MLOPS_SERVICE": "vllm"}
    cmd = [sys.executable, "-m", "mlops_logging.wrap", "--subreaper", "--kill-after", "30", "--",
           *vllm_command(model, port)]
    with console.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc, log_path=console)
        yield WrappedVllm(proc, port, log_dir / "vllm.log", console)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_gateway_request_id_reaches_vllm_log(vllm: WrappedVllm, tmp_path: Path, log_root: Path) -> None:
    port = free_port()
    out = tmp_path / "gateway.out"
    gateway = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "gateway"),
                     "--port", str(port), "--log-config", str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")],
                    out, env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{vllm.port}", "GATEWAY_TIMEOUT_S": "120"})
    cmpl_id, chat_id = f"vllm-cmpl-{uuid.uuid4().hex[:12]}", f"vllm-chat-{uuid.uuid4().hex[:12]}"
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", gateway, out)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            completion = client.post("/v1/completions", headers={"X-Request-ID": cmpl_id},
                                     json={"model": SERVED_MODEL_NAME, "prompt": "Hello", "max_tokens": 4})
            chat = client.post("/v1/chat/completions", headers={"X-Request-ID": chat_id},
                               json={"model": SERVED_MODEL_NAME, "max_tokens": 4, "temperature": 0,
                                     "messages": [{"role": "user", "content": "Hi"}]})
    finally:
        assert stop(gateway) in CLEAN_EXIT
    assert completion.status_code == 200, completion.text
    assert chat.status_code == 200, chat.text
    assert cmpl_id in completion.json()["id"] and chat_id in chat.json()["id"]

    records = read_records(log_root / "fastapi" / "fastapi.log")
    for rid, path in ((cmpl_id, "/v1/completions"), (chat_id, "/v1/chat/completions")):
        [access] = [r for r in records if r.get("logger") == "mlops_logging.access" and r["request_id"] == rid]
        assert access["path"] == path and access["status_code"] == 200
    # vLLM's own lines, as logwrap wrote them: one JSON record each, with the gateway's id in the message.
    vllm_records = read_records(vllm.log)
    for prefix, rid in (("cmpl", cmpl_id), ("chatcmpl", chat_id)):
        [received] = [r for r in vllm_records if re.search(rf"Received request {prefix}-{re.escape(rid)}\b",
                                                           r["message"])]
        assert received["level"] == "INFO" and received["service"] == "vllm" and received["stream"] in ("stdout",
                                                                                                      "stderr")


def test_every_live_vllm_line_gets_the_level_its_marker_names(vllm: WrappedVllm) -> None:
    records = read_records(vllm.log)
    assert any(r["message"].endswith("Application startup complete.") and r["level"] == "INFO" for r in records)
    marked = [(m.group(1), r["level"]) for r in records if (m := VLLM_MARKER.match(r["message"]))]
    assert len(marked) > 20
    assert all(expected == got for expected, got in marked), [m for m in marked if m[0] != m[1]]
    # vLLM's multi-line messages (its start-up banner) are one record each, not one per line.
    banner = [r for r in records if re.search(r"version \d+\.\d+", r["message"])]
    assert banner and banner[0]["message"].count("\n") >= 3, banner
    [startup] = [r for r in records if r.get("logger") == "logwrap" and "command" in r]
    assert "vllm.entrypoints.openai.api_server" in str(startup["command"])
    # Passthrough kept the raw output for `docker logs`.
    assert "Application startup complete." in vllm.console.read_text(errors="replace")


def test_sigterm_stops_vllm_cleanly_and_logwrap_returns_its_exit_code(vllm: WrappedVllm) -> None:
    vllm.proc.send_signal(signal.SIGTERM)
    code = vllm.proc.wait(timeout=90)
    assert code == 0
    records = read_records(vllm.log)
    exits = [r for r in records if r.get("logger") == "logwrap" and "exit_code" in r]
    assert exits and exits[-1]["exit_code"] == 0
    with pytest.raises(ProcessLookupError):  # nothing of the session is left: engine and workers were reaped
        os.killpg(vllm.proc.pid, 0)
