"""logcheck over the real stack: vLLM (CPU) started by entrypoints/vllm.sh behind logwrap, the gateway under gunicorn
in front of it; requests traced from the gateway into vLLM's own lines, by request id and by W3C trace id, and the
audit of both.

vLLM runs with trace export on, as a user turns it on: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the entrypoint passes
it as ``--otlp-traces-endpoint``) pointing at an OTLP/HTTP receiver this test runs on loopback
(``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf``, decoded with ``opentelemetry-proto``). One vLLM start for the
module (~30-60 s on 2 cores); every process is stopped before the assertions, which read what is on disk and what
the receiver got.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fastapi_support import BIN, REPO, free_port, start, wait_ready
from mlops_logging.testing import read_records
from support.otlp import OtlpReceiver, ReceivedSpan
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
TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@dataclass
class Stack:
    """What one run of the stack left: the log root, the ids sent, the exit codes, the spans vLLM exported."""

    root: Path
    by_request_id: str = f"vllm-trace-{uuid.uuid4().hex[:10]}"  #: sent with X-Request-ID only
    in_trace: str = f"vllm-tc-{uuid.uuid4().hex[:10]}"  #: sent with X-Request-ID and a traceparent in TRACE
    codes: tuple[int, int] = (-1, -1)
    spans: list[ReceivedSpan] = field(default_factory=list)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing: run `make setup-vllm`")
    base = tmp_path_factory.mktemp("stack")
    ran = Stack(base / "logs")
    model = ensure_tiny_model()
    vllm_port, gw_port = free_port(), free_port()
    with OtlpReceiver() as receiver:
        env = {**vllm_env(), "MLOPS_LOG_DIR": str(ran.root / "vllm"), "MLOPS_VLLM_PYTHON": str(VLLM_PYTHON),
               "LOGWRAP": str(BIN / "logwrap"), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
               "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
        console = base / "vllm.console"
        with console.open("wb") as out:
            vllm = subprocess.Popen(["sh", str(REPO / "entrypoints" / "vllm.sh"), *vllm_serve_args(model, vllm_port)],
                                    env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        gateway = None
        try:
            wait_for_http(f"http://127.0.0.1:{vllm_port}/health", proc=vllm, log_path=console)
            gateway = start([str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-w", "2", "--chdir",
                             str(REPO / "examples" / "gateway"), "-b", f"127.0.0.1:{gw_port}", "app:app"],
                            base / "gateway.out", env={"MLOPS_SERVICE": "fastapi", "MLOPS_LOG_ROOT": str(ran.root),
                                                       "GATEWAY_BACKEND_URL": f"http://127.0.0.1:{vllm_port}"})
            wait_ready(f"http://127.0.0.1:{gw_port}/health", gateway, base / "gateway.out", timeout=60)
            body = {"model": SERVED_MODEL_NAME, "prompt": "Hello", "max_tokens": 4}
            for headers in ({"X-Request-ID": ran.by_request_id},
                            {"X-Request-ID": ran.in_trace, "traceparent": f"00-{TRACE}-{PARENT}-01"}):
                response = httpx.post(f"http://127.0.0.1:{gw_port}/v1/completions", headers=headers, json=body,
                                      timeout=120)
                assert response.status_code == 200, response.text
        finally:
            gateway_code = stop_process(gateway) if gateway is not None else 0
            ran.codes = (gateway_code, stop_process(vllm, timeout=90))  # vLLM flushes its spans as it exits
        ran.spans = list(receiver.spans)
    return ran


def logcheck(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_logging.check", "--no-transcript", "--plain", "--root",
                           str(root), *args], capture_output=True, text=True, timeout=120)


def gateway_access(stack: Stack, request_id: str) -> dict[str, object]:
    [access] = [r for r in read_records(stack.root / "fastapi" / "fastapi.log")
                if r.get("logger") == "mlops_logging.access" and r.get("request_id") == request_id]
    return access


def test_trace_follows_a_gateway_request_into_vllms_own_lines(stack: Stack) -> None:
    assert stack.codes == (0, 0)
    rid = stack.by_request_id
    result = logcheck(stack.root, "--trace", rid, "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)["records"]
    vllm_lines = [r["message"] for r in records if r["service"] == "vllm"]
    assert any(f"Received request cmpl-{rid}-0" in m for m in vllm_lines), vllm_lines
    assert any(f"Added request cmpl-{rid}-0" in m for m in vllm_lines), vllm_lines
    [access] = [r for r in records if (r["record"] or {}).get("logger") == "mlops_logging.access"]
    assert access["service"] == "fastapi" and access["record"]["status_code"] == 200
    times = [r["timestamp"] for r in records]
    assert times == sorted(times) and records[-1]["service"] == "fastapi"


def test_vllm_exports_its_request_span_in_the_callers_trace_under_the_gateways_call(stack: Stack) -> None:
    """vLLM 0.32 reads the traceparent the gateway sent and exports one ``llm_request`` span (SERVER) per request,
    in that trace, its parent the span id the gateway made for the call."""
    access = gateway_access(stack, stack.in_trace)
    assert access["trace_id"] == TRACE and access["parent_span_id"] == PARENT
    _, trace_id, call_span, _ = str(access["upstream_traceparent"]).split("-")
    [span] = [s for s in stack.spans if s.name == "llm_request" and stack.in_trace in str(s.attributes)]
    assert (span.trace_id, span.parent_span_id) == (TRACE, call_span) == (trace_id, call_span)
    assert span.kind == 2  # SPAN_KIND_SERVER
    assert span.attributes["gen_ai.request.id"].startswith(f"cmpl-{stack.in_trace}")
    # the request sent without a traceparent: in the trace the gateway started
    started = gateway_access(stack, stack.by_request_id)
    [other] = [s for s in stack.spans if s.name == "llm_request" and stack.by_request_id in str(s.attributes)]
    assert other.trace_id == started["trace_id"] != TRACE


def test_vllms_own_lines_carry_the_request_id_and_no_trace_id(stack: Stack) -> None:
    """What vLLM 0.32 writes about a traced request: its request id (the gateway's X-Request-ID) in the text, never
    the trace id or a span id (the span goes to the OTLP endpoint only)."""
    lines = [r["message"] for r in read_records(stack.root / "vllm" / "vllm.log")]
    mine = [m for m in lines if stack.in_trace in m]
    assert any(f"Received request cmpl-{stack.in_trace}-0" in m for m in mine), mine
    assert not [m for m in lines if TRACE in m or PARENT in m]


def test_trace_by_trace_id_lists_the_gateways_and_vllms_records_and_json_gives_the_same_set(stack: Stack) -> None:
    text = logcheck(stack.root, "--trace", TRACE)
    document = logcheck(stack.root, "--trace", TRACE, "--json")
    assert text.returncode == document.returncode == 0, text.stderr + document.stderr
    doc = json.loads(document.stdout)
    assert doc["trace"] == TRACE and doc["request_ids"] == [stack.in_trace]
    records = doc["records"]
    services = {r["service"] for r in records}
    assert services == {"fastapi", "vllm"}
    gateway = [r["record"] for r in records if r["service"] == "fastapi"]
    assert gateway and all(g["trace_id"] == TRACE and g["request_id"] == stack.in_trace for g in gateway)
    assert {g["message"] for g in gateway} >= {"upstream response", "POST /v1/completions 200"}
    vllm = [r["message"] for r in records if r["service"] == "vllm"]
    assert any(f"Received request cmpl-{stack.in_trace}-0" in m for m in vllm), vllm
    assert all(stack.in_trace in m for m in vllm) and not any(stack.by_request_id in m for m in vllm)
    times = [r["timestamp"] for r in records]
    assert times == sorted(times)
    # the table lists the same records, one line each, in the same order
    head, *lines = [line for line in text.stdout.splitlines() if line.strip()]
    assert head.startswith(f"trace id {TRACE} (requests {stack.in_trace}): {len(records)} records in 2 services")
    assert [tuple(line.split()[:3]) for line in lines] == [(r["timestamp"], r["service"], r["level"]) for r in records]


def test_the_audit_of_both_services_is_ok(stack: Stack) -> None:
    audit = logcheck(stack.root, "--services", "fastapi,vllm", "--json")
    doc = json.loads(audit.stdout)
    assert audit.returncode == 0 and doc["verdict"] == "2/2 services writing complete logs", doc["services"]
    vllm_doc = doc["services"][1]
    assert vllm_doc["format"] == "json" and vllm_doc["complete_share"] == 1.0
    # Every line logwrap wrote is a valid record; vLLM's clean exit is its last one.
    exits = [r for r in read_records(stack.root / "vllm" / "vllm.log") if "exit_code" in r]
    assert exits[-1]["exit_code"] == 0
    # trace export was passed through by the entrypoint
    [start_record] = [r for r in read_records(stack.root / "vllm" / "vllm.log") if "command" in r]
    assert re.search(r" --otlp-traces-endpoint http://127\.0\.0\.1:\d+/v1/traces( |$)", start_record["command"])
