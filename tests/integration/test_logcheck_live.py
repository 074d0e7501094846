"""logcheck --trace and --probe against real servers: the gateway (examples/gateway) under uvicorn in front of the
backend stub (examples/backend_stub), both real processes writing real files; and the inference job through them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fastapi_support import BIN, CLEAN_EXIT, REPO, free_port, start, wait_ready
from mlops_logging.check import trace
from mlops_logging.testing import read_records
from vllm_server import stop_process

pytestmark = pytest.mark.timeout(180)
LOGCHECK = [sys.executable, "-m", "mlops_logging.check", "--no-transcript"]


@dataclass
class Stack:
    gateway: str
    root: Path


@pytest.fixture
def stack(tmp_path: Path, log_root: Path) -> Iterator[Stack]:
    """The backend stub and the gateway in front of it, logging under the test's MLOPS_LOG_ROOT."""
    stub_port, gw_port = free_port(), free_port()
    stub = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "backend_stub"), "--port",
                  str(stub_port)], tmp_path / "stub.out", env={"MLOPS_SERVICE": "backend_stub"})
    procs = [stub]
    try:
        gateway = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "gateway"), "--port",
                         str(gw_port), "--log-config", str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")],
                        tmp_path / "gateway.out", env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{stub_port}"})
        procs.append(gateway)
        wait_ready(f"http://127.0.0.1:{stub_port}/health", stub, tmp_path / "stub.out")
        wait_ready(f"http://127.0.0.1:{gw_port}/health", gateway, tmp_path / "gateway.out")
        yield Stack(f"http://127.0.0.1:{gw_port}", log_root)
    finally:
        codes = [stop_process(proc) for proc in reversed(procs)]  # every one, even if another one fails
    assert all(code in CLEAN_EXIT for code in codes), codes


def test_trace_shows_one_request_in_the_gateway_and_the_backend_merged_by_time_across_a_rotation(
        stack: Stack) -> None:
    with httpx.Client(base_url=stack.gateway, timeout=30) as client:
        first = client.post("/v1/completions", headers={"X-Request-ID": "trace-me-1"},
                            json={"model": "tiny", "prompt": "Hello", "max_tokens": 3})
        other = client.post("/v1/completions", headers={"X-Request-ID": "trace-me-10"},
                            json={"model": "tiny", "prompt": "Hello", "max_tokens": 3})
        # logrotate's "create" mode: the gateway's file is renamed; the writer reopens the path within a second.
        fastapi_log = stack.root / "fastapi" / "fastapi.log"
        fastapi_log.rename(fastapi_log.with_name("fastapi.log.1"))
        time.sleep(1.2)
        chat = client.post("/v1/chat/completions", headers={"X-Request-ID": "trace-me-1"},
                           json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]})
    assert first.status_code == other.status_code == chat.status_code == 200
    assert fastapi_log.exists()

    result = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--trace", "trace-me-1", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    records = doc["records"]
    assert {r["service"] for r in records} == {"fastapi", "backend_stub"}
    assert {r["file"] for r in records if r["service"] == "fastapi"} == {"fastapi.log", "fastapi.log.1"}
    # Every record is the request's own: none of trace-me-10 (an id that merely starts the same way).
    assert all("trace-me-10" not in json.dumps(r) for r in records)
    received = [r for r in records if r["service"] == "backend_stub" and "Received request" in r["message"]]
    assert [r["message"].split()[2] for r in received] == ["cmpl-trace-me-1", "chatcmpl-trace-me-1"]
    access = [r for r in records if (r["record"] or {}).get("logger") == "mlops_logging.access"]
    assert [a["record"]["path"] for a in access if a["service"] == "fastapi"] == ["/v1/completions",
                                                                                  "/v1/chat/completions"]
    times = [r["timestamp"] for r in records]
    assert times == sorted(times)
    # Merged by time: the backend received each request before the gateway wrote its access record (at the end).
    position = {id(r): i for i, r in enumerate(records)}
    for backend, gateway in zip(received, [a for a in access if a["service"] == "fastapi"], strict=True):
        assert position[id(backend)] < position[id(gateway)]

    table = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--trace", "trace-me-1"], capture_output=True,
                           text=True, timeout=60)
    assert table.returncode == 0
    assert f"request id trace-me-1: {len(records)} records in 2 services" in table.stdout


def test_trace_of_an_unknown_id_exits_1_and_a_malformed_one_exits_2(stack: Stack) -> None:
    httpx.get(f"{stack.gateway}/health")
    result = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--trace", "never-sent"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "no record" in result.stdout
    result = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--trace", "a b"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "cannot be one" in result.stderr


def test_probe_finds_its_fresh_request_id_in_the_gateways_file(stack: Stack) -> None:
    result = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--services", "fastapi", "--probe",
                             f"fastapi={stack.gateway}/health", "--json"], capture_output=True, text=True, timeout=60)
    doc = json.loads(result.stdout)
    [probe] = doc["probes"]
    assert probe["ok"] is True and probe["status_code"] == 200 and probe["found_in"] == "fastapi.log", probe
    assert probe["request_id"].startswith("logcheck-probe-") and probe["after_s"] < 5
    assert result.returncode == 0 and doc["ok"] is True
    [access] = [r for r in read_records(stack.root / "fastapi" / "fastapi.log")
                if r.get("request_id") == probe["request_id"]]
    assert access["path"] == "/health" and access["status_code"] == 200


def test_a_probe_whose_record_never_arrives_or_whose_server_is_down_fails_the_run(stack: Stack) -> None:
    # The gateway answers, but its record goes to fastapi's file, not the one the probe watches.
    (stack.root / "inference").mkdir(parents=True, exist_ok=True)
    result = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--services", "fastapi", "--probe",
                             f"inference={stack.gateway}/health", "--probe-timeout", "1", "--plain"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "FAILED (HTTP 200): no record with X-Request-ID logcheck-probe-" in result.stdout
    assert "probe failed: inference" in result.stdout.splitlines()[-1]
    down = f"http://127.0.0.1:{free_port()}/health"
    result = subprocess.run([*LOGCHECK, "--root", str(stack.root), "--services", "fastapi", "--probe",
                             f"fastapi={down}", "--plain"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "FAILED: request failed:" in result.stdout


def test_the_inference_job_through_the_gateway_logs_items_batches_and_a_summary_traceable_end_to_end(
        stack: Stack, tmp_path: Path) -> None:
    prompts = ["Hello", "The logs say", "Every service writes", "One more"]
    result = subprocess.run([sys.executable, str(REPO / "examples" / "inference" / "batch.py"), "--endpoint",
                             stack.gateway, "--batch-size", "3", "--prompts", *prompts], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=os.environ)
    assert result.returncode == 0, result.stderr
    records = read_records(stack.root / "inference" / "inference.log")
    job_id = records[0]["job_id"]
    assert all(r["job_id"] == job_id for r in records)
    items = [r for r in records if r["message"] == "completion received"]
    assert [r["request_id"] for r in items] == [f"{job_id}-{i}" for i in range(4)]
    batches = [r for r in records if r["message"] == "batch finished"]
    assert [(b["batch"], b["items"], b["failures"]) for b in batches] == [(1, 3, 0), (2, 1, 0)]
    [summary] = [r for r in records if r["message"] == "job finished"]
    assert (summary["items"], summary["failures"], summary["batches"]) == (4, 0, 2)
    hits = trace(stack.root, f"{job_id}-2")
    assert set(hits.services) == {"inference", "fastapi", "backend_stub"}
    assert hits.hits[-1].service == "inference" and hits.hits[-1].message == "completion received"
    assert any(f"cmpl-{job_id}-2" in h.message for h in hits.hits if h.service == "backend_stub")
