"""logcheck over the real stack: vLLM (CPU) started by entrypoints/vllm.sh behind logwrap, the gateway under
gunicorn in front of it; one request traced from the gateway into vLLM's own lines, and the audit of both."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from fastapi_support import BIN, REPO, free_port, start, wait_ready
from mlops_logging.testing import read_records
from vllm_server import (
    SERVED_MODEL_NAME,
    VLLM_PYTHON,
    ensure_tiny_model,
    stop_process,
    vllm_available,
    vllm_env,
    vllm_serve_args,
    wait_for_http,
)

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]


def test_trace_follows_a_gateway_request_into_vllms_own_lines(tmp_path: Path, log_root: Path) -> None:
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing: run `make setup-vllm`")
    model = ensure_tiny_model()
    vllm_port, gw_port = free_port(), free_port()
    env = {**vllm_env(), "MLOPS_LOG_DIR": str(log_root / "vllm"), "MLOPS_VLLM_PYTHON": str(VLLM_PYTHON),
           "LOGWRAP": str(BIN / "logwrap")}
    console = tmp_path / "vllm.console"
    with console.open("wb") as out:
        vllm = subprocess.Popen(["sh", str(REPO / "entrypoints" / "vllm.sh"), *vllm_serve_args(model, vllm_port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    gateway = None
    rid = f"vllm-trace-{uuid.uuid4().hex[:10]}"
    try:
        wait_for_http(f"http://127.0.0.1:{vllm_port}/health", proc=vllm, log_path=console)
        gateway = start([str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-w", "2", "--chdir",
                         str(REPO / "examples" / "gateway"), "-b", f"127.0.0.1:{gw_port}", "app:app"],
                        tmp_path / "gateway.out", env={"MLOPS_SERVICE": "fastapi",
                                                       "GATEWAY_BACKEND_URL": f"http://127.0.0.1:{vllm_port}"})
        wait_ready(f"http://127.0.0.1:{gw_port}/health", gateway, tmp_path / "gateway.out", timeout=60)
        response = httpx.post(f"http://127.0.0.1:{gw_port}/v1/completions", headers={"X-Request-ID": rid},
                              json={"model": SERVED_MODEL_NAME, "prompt": "Hello", "max_tokens": 4}, timeout=120)
        assert response.status_code == 200, response.text
    finally:
        gateway_code = stop_process(gateway) if gateway is not None else 0
        code = stop_process(vllm, timeout=90)
    assert (gateway_code, code) == (0, 0)

    result = subprocess.run([sys.executable, "-m", "mlops_logging.check", "--no-transcript", "--root", str(log_root),
                             "--trace", rid, "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)["records"]
    vllm_lines = [r["message"] for r in records if r["service"] == "vllm"]
    assert any(f"Received request cmpl-{rid}-0" in m for m in vllm_lines), vllm_lines
    assert any(f"Added request cmpl-{rid}-0" in m for m in vllm_lines), vllm_lines
    [access] = [r for r in records if (r["record"] or {}).get("logger") == "mlops_logging.access"]
    assert access["service"] == "fastapi" and access["record"]["status_code"] == 200
    times = [r["timestamp"] for r in records]
    assert times == sorted(times) and records[-1]["service"] == "fastapi"

    audit = subprocess.run([sys.executable, "-m", "mlops_logging.check", "--no-transcript", "--root", str(log_root),
                            "--services", "fastapi,vllm", "--json"], capture_output=True, text=True, timeout=120)
    doc = json.loads(audit.stdout)
    assert audit.returncode == 0 and doc["verdict"] == "2/2 services writing complete logs", doc["services"]
    vllm_doc = doc["services"][1]
    assert vllm_doc["format"] == "json" and vllm_doc["complete_share"] == 1.0
    # Every line logwrap wrote is a valid record; vLLM's clean exit is its last one.
    exits = [r for r in read_records(log_root / "vllm" / "vllm.log") if "exit_code" in r]
    assert exits[-1]["exit_code"] == 0
