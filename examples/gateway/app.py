"""A small LLM gateway: OpenAI-compatible routes forwarded to a vLLM (or any OpenAI-compatible) backend.

    GATEWAY_BACKEND_URL=http://127.0.0.1:8000 uvicorn app:app --app-dir examples/gateway --port 8080

It is the ``fastapi`` service of the stack: every request gets one access record in ``logs/fastapi/fastapi.log``
(:mod:`mlops_logging.fastapi`), and the request id travels to the backend in ``X-Request-ID``, which vLLM uses as its
own request id (``Received request chatcmpl-<id>`` with ``--enable-log-requests``), so one id finds a request in both
logs. The request's W3C trace (the caller's ``traceparent``, or one the middleware starts) travels too: a
``traceparent`` with the same trace id and a new span id for the upstream call (``upstream_traceparent`` on the
request's records), which vLLM's ``llm_request`` span takes as its parent when it exports traces. Streaming (SSE)
responses are relayed chunk by chunk. An unreachable backend answers 502, a slow one 504, each with an ERROR record
that says why.

Environment: ``GATEWAY_BACKEND_URL`` (default ``http://127.0.0.1:8000``), ``GATEWAY_TIMEOUT_S`` (read timeout, default
120), ``GATEWAY_CONNECT_TIMEOUT_S`` (default 5), plus the ``MLOPS_*`` logging variables (service ``fastapi``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from structlog.contextvars import bind_contextvars

from mlops_logging import configure_logging, get_logger
from mlops_logging.fastapi import current_request_id, instrument, outgoing_traceparent

SERVICE = os.environ.get("MLOPS_SERVICE") or "fastapi"
configure_logging(SERVICE)

BACKEND_URL = os.environ.get("GATEWAY_BACKEND_URL", "http://127.0.0.1:8000").rstrip("/")
TIMEOUT_S = float(os.environ.get("GATEWAY_TIMEOUT_S", "120"))
CONNECT_TIMEOUT_S = float(os.environ.get("GATEWAY_CONNECT_TIMEOUT_S", "5"))
FORWARDED_HEADERS = ("authorization", "content-type", "accept")

log = get_logger("gateway")
logging.getLogger("httpx").setLevel(logging.WARNING)  # its per-call INFO line repeats our "upstream response"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One pooled HTTP client for the backend, for the life of the worker."""
    timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=BACKEND_URL, timeout=timeout, limits=limits) as client:
        app.state.client = client
        log.info("gateway ready", backend=BACKEND_URL, timeout_s=TIMEOUT_S)
        yield


app = FastAPI(title="mlops LLM gateway", lifespan=lifespan)
instrument(app, service=SERVICE)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _upstream_ids() -> dict[str, str]:
    """The headers that carry the request to the backend: its id, and its trace with a new span for the call."""
    headers = {"x-request-id": current_request_id() or ""}
    traceparent = outgoing_traceparent()
    if traceparent is not None:
        headers["traceparent"] = traceparent
    return headers


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _upstream_failure(exc: Exception, path: str, started: float) -> JSONResponse:
    """Timeouts -> 504, anything else on the way to the backend (refused, reset, protocol error) -> 502."""
    status = 504 if isinstance(exc, httpx.TimeoutException) else 502
    what = "timed out" if status == 504 else "failed"
    log.error(f"upstream request {what}", upstream=f"{BACKEND_URL}{path}", reason=_reason(exc),
              error_type=type(exc).__name__, upstream_ms=round((perf_counter() - started) * 1000, 3),
              status_code=status)
    message = f"backend {what}: {_reason(exc)}"
    return _error(status, message, "upstream_timeout" if status == 504 else "upstream_unavailable")


async def _forward(request: Request, path: str) -> Response:
    body = await request.body()
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return _error(400, "the request body is not valid JSON", "invalid_request_error")
    if not isinstance(payload, dict):
        return _error(400, "the request body must be a JSON object", "invalid_request_error")
    stream = bool(payload.get("stream"))
    headers = {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name))}
    headers.update(_upstream_ids())
    # on this request's records, the access one too
    bind_contextvars(model=payload.get("model"), streaming=stream, upstream_traceparent=headers.get("traceparent"))
    client: httpx.AsyncClient = request.app.state.client
    started = perf_counter()
    try:
        upstream = await client.send(client.build_request("POST", path, content=body, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        return _upstream_failure(exc, path, started)

    content_type = upstream.headers.get("content-type", "application/json")
    if stream and upstream.status_code == 200 and content_type.startswith("text/event-stream"):
        log.info("upstream stream opened", upstream_status=200,
                 upstream_ms=round((perf_counter() - started) * 1000, 3))
        return StreamingResponse(_relay(upstream, path, started), media_type=content_type,
                                 headers={"cache-control": "no-cache"})
    try:
        content = await upstream.aread()
    except httpx.HTTPError as exc:
        return _upstream_failure(exc, path, started)
    finally:
        await upstream.aclose()
    log.info("upstream response", upstream_status=upstream.status_code,
             upstream_ms=round((perf_counter() - started) * 1000, 3), upstream_bytes=len(content))
    return Response(content, status_code=upstream.status_code, media_type=content_type)


async def _relay(upstream: httpx.Response, path: str, started: float) -> AsyncIterator[bytes]:
    """Pass SSE bytes through as they arrive; a backend failure mid-stream ends the stream with an error event."""
    relayed = 0
    try:
        async for chunk in upstream.aiter_raw():
            relayed += len(chunk)
            yield chunk
    except httpx.HTTPError as exc:
        status = 504 if isinstance(exc, httpx.TimeoutException) else 502
        log.error("upstream stream broke off", upstream=f"{BACKEND_URL}{path}", reason=_reason(exc),
                  error_type=type(exc).__name__, upstream_bytes=relayed)
        error = {"error": {"message": f"backend stream failed: {_reason(exc)}", "code": status}}
        yield f"data: {json.dumps(error)}\n\n".encode()
    finally:
        with anyio.CancelScope(shield=True):  # also when the client went away and the stream task is cancelled
            await upstream.aclose()
        log.info("upstream stream closed", upstream_bytes=relayed,
                 upstream_ms=round((perf_counter() - started) * 1000, 3))


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streaming or not."""
    return await _forward(request, "/v1/chat/completions")


@app.post("/v1/completions")
async def completions(request: Request) -> Response:
    """OpenAI (legacy) completions, streaming or not."""
    return await _forward(request, "/v1/completions")


@app.get("/v1/models")
async def models(request: Request) -> Response:
    """The backend's model list, passed through."""
    client: httpx.AsyncClient = request.app.state.client
    started = perf_counter()
    try:
        upstream = await client.get("/v1/models", headers=_upstream_ids())
    except httpx.HTTPError as exc:
        return _upstream_failure(exc, "/v1/models", started)
    return Response(upstream.content, status_code=upstream.status_code,
                    media_type=upstream.headers.get("content-type", "application/json"))


@app.get("/health")
async def health() -> dict[str, Any]:
    """The gateway's own liveness (it does not call the backend, so a slow backend never fails the probe)."""
    return {"status": "ok", "backend": BACKEND_URL}
