"""The example LLM gateway in front of the OpenAI-compatible stub backend, both real uvicorn processes.

One request id, sent by the client, must name the request in the gateway's access record and in the backend's log
(``Received request cmpl-<id>``, as vLLM logs it); a slow backend gives 504 and a dead one 502, each with a reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastapi_support import BIN, CLEAN_EXIT, REPO, free_port, start, stop, wait_ready
from mlops_logging.testing import read_records

pytestmark = pytest.mark.timeout(120)
GATEWAY_DIR = REPO / "examples" / "gateway"
STUB_DIR = REPO / "examples" / "backend_stub"
CHUNK_DELAY, MAX_TOKENS = 0.05, 6


def access_of(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    [record] = [r for r in records if r.get("logger") == "mlops_logging.access" and r.get("request_id") == request_id]
    return record


def test_gateway_forwards_ids_streams_and_maps_upstream_failures(tmp_path: Path, log_root: Path) -> None:
    stub_port, gw_port = free_port(), free_port()
    stub = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(STUB_DIR), "--port", str(stub_port)],
                 tmp_path / "stub.out", env={"MLOPS_SERVICE": "backend_stub"})
    gateway = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(GATEWAY_DIR), "--port", str(gw_port),
                     "--log-config", str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")],
                    tmp_path / "gateway.out",
                    env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{stub_port}", "GATEWAY_TIMEOUT_S": "1"})
    base = f"http://127.0.0.1:{gw_port}"
    try:
        wait_ready(f"http://127.0.0.1:{stub_port}/health", stub, tmp_path / "stub.out")
        wait_ready(f"{base}/health", gateway, tmp_path / "gateway.out")
        with httpx.Client(base_url=base, timeout=30) as client:
            completion = client.post("/v1/completions", headers={"X-Request-ID": "gw-cmpl-1"},
                                     json={"model": "tiny", "prompt": "Hello", "max_tokens": 3})
            chat = client.post("/v1/chat/completions", headers={"X-Request-ID": "gw-chat-1"},
                               json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]})
            started = time.perf_counter()
            with client.stream("POST", "/v1/chat/completions", headers={"X-Request-ID": "gw-stream-1"},
                               json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
                                     "stream": True, "max_tokens": MAX_TOKENS, "stub_chunk_delay": CHUNK_DELAY}
                               ) as streamed:
                events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
            stream_ms = (time.perf_counter() - started) * 1000
            no_id = client.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
            slow = client.post("/v1/completions", headers={"X-Request-ID": "gw-slow-1"},
                               json={"model": "tiny", "prompt": "x", "stub_delay": 2.5})
            failing = client.post("/v1/completions", headers={"X-Request-ID": "gw-503-1"},
                                  json={"model": "tiny", "prompt": "x", "stub_status": 503})
            bad_json = client.post("/v1/completions", headers={"X-Request-ID": "gw-400-1"}, content=b"{nope")
            assert stop(stub) in CLEAN_EXIT
            dead = client.post("/v1/completions", headers={"X-Request-ID": "gw-dead-1"},
                               json={"model": "tiny", "prompt": "x"})
    finally:
        stop(stub)
        gateway_code = stop(gateway)
    assert gateway_code in CLEAN_EXIT

    # What the client saw.
    assert completion.status_code == 200 and completion.json()["id"] == "cmpl-gw-cmpl-1"
    assert completion.headers["x-request-id"] == "gw-cmpl-1"
    assert chat.status_code == 200 and chat.json()["id"] == "chatcmpl-gw-chat-1"
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert len(events) == MAX_TOKENS + 1 and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["id"] == "chatcmpl-gw-stream-1"
    generated = no_id.headers["x-request-id"]
    assert no_id.status_code == 200 and no_id.json()["id"] == f"cmpl-{generated}"
    assert slow.status_code == 504 and slow.json()["error"]["type"] == "upstream_timeout"
    assert failing.status_code == 503  # the backend's own error passes through unchanged
    assert bad_json.status_code == 400
    assert dead.status_code == 502 and dead.json()["error"]["type"] == "upstream_unavailable"
    assert dead.headers["x-request-id"] == "gw-dead-1"

    gw = read_records(log_root / "fastapi" / "fastapi.log")
    backend = read_records(log_root / "backend_stub" / "backend_stub.log")
    assert {r["service"] for r in gw} == {"fastapi"} and {r["service"] for r in backend} == {"backend_stub"}

    # The same id in the gateway's access record and in the backend's log, as vLLM would log it.
    for rid, prefix in (("gw-cmpl-1", "cmpl"), ("gw-chat-1", "chatcmpl"), ("gw-stream-1", "chatcmpl"),
                        (generated, "cmpl")):
        record = access_of(gw, rid)
        assert record["status_code"] == 200 and record["level"] == "INFO" and record["model"] == "tiny"
        received = [r for r in backend if r["message"] == f"Received request {prefix}-{rid}"]
        assert len(received) == 1 and received[0]["request_id"] == rid
        assert access_of(backend, rid)["status_code"] == 200

    # Streaming: the access record covers the whole stream, the relay's own records carry the id.
    record = access_of(gw, "gw-stream-1")
    assert record["streaming"] is True
    # The server's clock stops when its last send() returns, which on a busy 2-core machine can come a few ms after
    # the client read the last byte (the same monotonic clock, other processes): a bound with scheduling slack.
    assert MAX_TOKENS * CHUNK_DELAY * 1000 * 0.99 <= record["duration_ms"] <= stream_ms + 25
    assert record["bytes_sent"] == access_of(backend, "gw-stream-1")["bytes_sent"] > 0
    assert [r["message"] for r in gw if r.get("request_id") == "gw-stream-1" and r["logger"] == "gateway"] == [
        "upstream stream opened", "upstream stream closed"]

    # Timeouts -> 504 and a dead backend -> 502, each with an ERROR record that says why.
    slow_access = access_of(gw, "gw-slow-1")
    assert slow_access["status_code"] == 504 and slow_access["level"] == "ERROR"
    assert 1000 <= slow_access["duration_ms"] < 2500
    [timeout] = [r for r in gw if r.get("request_id") == "gw-slow-1" and r["logger"] == "gateway"]
    assert timeout["level"] == "ERROR" and timeout["message"] == "upstream request timed out"
    assert timeout["error_type"] == "ReadTimeout" and timeout["upstream"].endswith("/v1/completions")
    [refused] = [r for r in gw if r.get("request_id") == "gw-dead-1" and r["logger"] == "gateway"]
    assert refused["message"] == "upstream request failed" and refused["error_type"] == "ConnectError"
    assert refused["reason"] and access_of(gw, "gw-dead-1")["status_code"] == 502
    assert access_of(gw, "gw-503-1")["status_code"] == 503
    assert access_of(gw, "gw-400-1")["level"] == "WARNING"
    assert any(r["message"] == "Application startup complete." for r in gw)
    assert not [r for r in gw if r.get("logger") in ("uvicorn.access", "httpx")]
