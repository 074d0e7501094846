"""W3C trace context through the FastAPI middleware under real uvicorn processes.

The gateway (examples/gateway) in front of the stub backend, both instrumented: a request's ``traceparent`` names
its trace in the gateway's records, and the gateway sends the backend a ``traceparent`` with the same trace id and a
new parent id (which the backend's access record shows as ``parent_span_id``). Malformed values never fail a request
nor reach a record; with the OpenTelemetry SDK configured, the records carry the SDK's own spans.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastapi_support import BIN, CLEAN_EXIT, HERE, REPO, free_port, start, stop, wait_ready
from mlops_logging.testing import read_records
from support.procs import wait_for

pytestmark = pytest.mark.timeout(120)
TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")
LOG_CONFIG = str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")


def of_request(records: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("request_id") == request_id]


def access_of(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    [record] = [r for r in of_request(records, request_id) if r["logger"] == "mlops_logging.access"]
    return record


def test_the_gateway_carries_the_callers_trace_to_the_backend_with_a_new_parent_id(tmp_path: Path,
                                                                                   log_root: Path) -> None:
    stub_port, gw_port = free_port(), free_port()
    stub = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "backend_stub"), "--port",
                  str(stub_port)], tmp_path / "stub.out", env={"MLOPS_SERVICE": "backend_stub"})
    gateway = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "gateway"), "--port",
                     str(gw_port), "--log-config", LOG_CONFIG], tmp_path / "gateway.out",
                    env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{stub_port}"})
    base = f"http://127.0.0.1:{gw_port}"
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 3}
    try:
        wait_ready(f"http://127.0.0.1:{stub_port}/health", stub, tmp_path / "stub.out")
        wait_ready(f"{base}/health", gateway, tmp_path / "gateway.out")
        joined = httpx.post(f"{base}/v1/completions", json=body, timeout=30,
                            headers={"X-Request-ID": "tc-joined", "traceparent": f"00-{TRACE}-{PARENT}-01"})
        started = httpx.post(f"{base}/v1/completions", json=body, timeout=30, headers={"X-Request-ID": "tc-started"})
    finally:
        codes = stop(gateway), stop(stub)
    assert joined.status_code == started.status_code == 200 and set(codes) <= set(CLEAN_EXIT)
    gw = read_records(log_root / "fastapi" / "fastapi.log")
    backend = read_records(log_root / "backend_stub" / "backend_stub.log")

    # The caller's trace: every record of the request in the gateway carries its trace id and the gateway's own
    # span id (a new one: the caller's span is its parent).
    mine = of_request(gw, "tc-joined")
    assert {r["message"] for r in mine} >= {"upstream response", "POST /v1/completions 200"}
    span = mine[0]["span_id"]
    assert {(r["trace_id"], r["span_id"], r["trace_flags"]) for r in mine} == {(TRACE, span, "01")}
    assert HEX16.fullmatch(span) and span != PARENT and access_of(gw, "tc-joined")["parent_span_id"] == PARENT
    # What the backend received: the same trace id, a new parent id (the gateway's call), the request id.
    forwarded = access_of(gw, "tc-joined")["upstream_traceparent"]
    _, trace_id, call_span, flags = forwarded.split("-")
    assert (trace_id, flags) == (TRACE, "01") and call_span not in (PARENT, span)
    assert access_of(backend, "tc-joined")["parent_span_id"] == call_span
    assert {r["trace_id"] for r in of_request(backend, "tc-joined")} == {TRACE}
    assert [r["message"] for r in of_request(backend, "tc-joined")][0] == "Received request cmpl-tc-joined"

    # No traceparent: the gateway starts a trace (sampled), and the backend is in it.
    started_trace = access_of(gw, "tc-started")["trace_id"]
    assert HEX32.fullmatch(started_trace) and started_trace != TRACE
    assert access_of(gw, "tc-started")["trace_flags"] == "01" and "parent_span_id" not in access_of(gw, "tc-started")
    assert {r["trace_id"] for r in of_request(gw, "tc-started") + of_request(backend, "tc-started")} == {started_trace}


MALFORMED = {
    "short": f"00-{TRACE}-{PARENT}-1",
    "long": f"00-{TRACE}-{PARENT}-011",
    "upper": f"00-{TRACE.upper()}-{PARENT}-01",
    "zero-trace": f"00-{'0' * 32}-{PARENT}-01",
    "zero-span": f"00-{TRACE}-{'0' * 16}-01",
    "version-ff": f"ff-{TRACE}-{PARENT}-01",
    "extra-fields": f"00-{TRACE}-{PARENT}-01-extra",
    "10kb": f"00-{TRACE}-{PARENT}-01" + "f" * 10_000,
    "garbage": "\x7f<script>\t" + "x" * 60,
}


def test_malformed_traceparents_never_fail_a_request_and_never_reach_a_record(tmp_path: Path,
                                                                              log_root: Path) -> None:
    port = free_port()
    out = tmp_path / "uvicorn.out"
    proc = start([str(BIN / "uvicorn"), "fastapi_testapp:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
                  "--port", str(port), "--log-config", LOG_CONFIG], out, cwd=REPO)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ok", proc, out)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            responses = {name: client.get("/work", headers={"x-request-id": f"bad-{name}", "traceparent": value})
                         for name, value in MALFORMED.items()}
            later = client.get("/work", headers={"x-request-id": "later-version",
                                                 "traceparent": f"01-{TRACE}-{PARENT}-01-what-comes-next"})
            two = client.get("/work", headers=[("x-request-id", "two-headers"),
                                               ("traceparent", f"00-{TRACE}-{PARENT}-01"),
                                               ("traceparent", f"00-{TRACE}-{PARENT}-01")])
        log = log_root / "fastapi" / "fastapi.log"
        wait_for(lambda: len([r for r in read_records(log) if r["message"] == "GET /work 200"]) == 11,
                 what="the access records")
    finally:
        code = stop(proc)
    assert code in CLEAN_EXIT
    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(MALFORMED, 200)
    assert later.status_code == two.status_code == 200

    records = read_records(log)  # every record validates: trace_id, span_id and trace_flags have the schema's form
    for name, value in [*MALFORMED.items(), ("two-headers", f"00-{TRACE}-{PARENT}-01,00-{TRACE}-{PARENT}-01")]:
        request_id = name if name == "two-headers" else f"bad-{name}"
        mine = of_request(records, request_id)
        [note] = [r for r in mine if r["message"] == "invalid traceparent ignored"]
        assert note["level"] == "WARNING" and note["invalid_traceparent"] == value[:200]
        # a new trace started in its place, the same on each of the request's records (access, structlog, stdlib)
        assert len({r["trace_id"] for r in mine}) == 1 and mine[0]["trace_id"] != TRACE, name
        assert "parent_span_id" not in access_of(records, request_id)
        assert len(mine) == 4 and all(HEX32.fullmatch(r["trace_id"]) for r in mine)
    # a later version's extra fields are allowed: its trace is joined
    assert {r["trace_id"] for r in of_request(records, "later-version")} == {TRACE}
    assert access_of(records, "later-version")["parent_span_id"] == PARENT


@pytest.mark.parametrize("server_span", ["fastapi", "middleware"])
def test_with_the_otel_sdk_configured_the_records_carry_the_sdks_spans_one_trace(server_span: str, tmp_path: Path,
                                                                               log_root: Path) -> None:
    """FastAPI (0.165) makes the server span itself when an SDK is configured: the middleware takes it. With that
    turned off (or any other ASGI app), the middleware makes the server span with the SDK."""
    port = free_port()
    out, spans_file = tmp_path / "uvicorn.out", tmp_path / "spans.jsonl"
    proc = start([str(BIN / "uvicorn"), "otel_testapp:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
                  "--port", str(port), "--log-config", LOG_CONFIG], out, cwd=REPO,
                 env={"OTEL_TESTAPP_SPANS": str(spans_file), "OTEL_TESTAPP_SERVER_SPAN": server_span})
    try:
        wait_ready(f"http://127.0.0.1:{port}/work", proc, out)
        response = httpx.get(f"http://127.0.0.1:{port}/work", timeout=30,
                             headers={"x-request-id": "sdk", "traceparent": f"00-{TRACE}-{PARENT}-01"})
    finally:
        code = stop(proc)
    assert code in CLEAN_EXIT and response.status_code == 200
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert {s["trace_id"] for s in spans if s["parent_span_id"] == PARENT} == {TRACE}
    [server] = [s for s in spans if s["kind"] == "SERVER" and s["trace_id"] == TRACE]  # one server span: no second
    [child] = [s for s in spans if s["name"] == "child" and s["trace_id"] == TRACE]
    assert server["parent_span_id"] == PARENT and server["attributes"]["http.response.status_code"] == 200
    if server_span == "middleware":
        assert server["name"] == "GET" and server["attributes"] == {
            "http.request.method": "GET", "url.path": "/work", "http.response.status_code": 200}
        assert child["parent_span_id"] == server["span_id"]  # the app's span is a child of the middleware's
    else:
        assert server["name"] == "GET /work"  # FastAPI's own

    mine = of_request(read_records(log_root / "fastapi" / "fastapi.log"), "sdk")
    ids = {r["message"]: (r["trace_id"], r["span_id"], r["trace_flags"]) for r in mine}
    [enclosing] = [s for s in spans if s["span_id"] == child["parent_span_id"]]  # FastAPI's endpoint span, or ours
    assert ids["GET /work 200"] == (TRACE, server["span_id"], server["trace_flags"])
    assert ids["in the request's span"] == (TRACE, enclosing["span_id"], enclosing["trace_flags"])
    assert ids["in the app's child span"] == (TRACE, child["span_id"], child["trace_flags"])
    assert len([r for r in mine if r["message"] == "in the app's child span"]) == 2  # structlog and stdlib
