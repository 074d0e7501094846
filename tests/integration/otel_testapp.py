"""A FastAPI app with the real OpenTelemetry SDK configured, served by uvicorn in the trace-context tests.

The SDK's ``ConsoleSpanExporter`` writes each finished span as one JSON line to ``$OTEL_TESTAPP_SPANS`` (a real
exporter of the SDK, with a formatter of ours). ``/work`` writes a structlog and a stdlib record in the request's span
and in a child span the app makes itself. ``OTEL_TESTAPP_SERVER_SPAN=fastapi`` leaves the server span to FastAPI's
own telemetry (0.165 makes one when an SDK is configured); ``middleware`` turns that off, so the middleware makes it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from mlops_logging import get_logger
from mlops_logging.fastapi import instrument


def _line(span: ReadableSpan) -> str:
    parent = span.parent
    return json.dumps({"name": span.name, "kind": span.kind.name, "trace_id": f"{span.context.trace_id:032x}",
                       "span_id": f"{span.context.span_id:016x}", "trace_flags": f"{span.context.trace_flags:02x}",
                       "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
                       "attributes": dict(span.attributes or {})}) + "\n"


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
    out=open(os.environ["OTEL_TESTAPP_SPANS"], "a", buffering=1), formatter=_line)))  # noqa: SIM115 - the app's life
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("otel_testapp")

app = FastAPI(telemetry=None if os.environ.get("OTEL_TESTAPP_SERVER_SPAN") == "fastapi" else {"tracing": False})
instrument(app)
slog = get_logger("otel_testapp")
stdlog = logging.getLogger("otel_testapp")


@app.get("/work")
async def work() -> dict[str, Any]:
    slog.info("in the request's span")
    with tracer.start_as_current_span("child"):
        slog.info("in the app's child span")
        stdlog.info("in the app's child span")
    return {"ok": True}
