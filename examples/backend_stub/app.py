"""A small OpenAI-compatible backend (a stand-in for vLLM) for the gateway's tests and the demo.

    MLOPS_SERVICE=backend_stub uvicorn app:app --app-dir examples/backend_stub --port 8000

Like vLLM 0.32 it takes the incoming ``X-Request-Id`` as its request id (response ``id`` ``cmpl-<id>`` /
``chatcmpl-<id>``) and logs ``Received request <id>``. Knobs in the request body, for tests: ``stub_delay`` (seconds
before answering, to trigger the gateway's timeout), ``stub_status`` (answer with that HTTP error), and for streams
``stub_chunk_delay`` (seconds between SSE chunks).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from mlops_logging import get_logger
from mlops_logging.fastapi import instrument

app = FastAPI(title="OpenAI-compatible backend stub")
instrument(app, service=os.environ.get("MLOPS_SERVICE") or "backend_stub")
log = get_logger("backend_stub")
MODEL = os.environ.get("STUB_MODEL", "tiny")
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "again"]


def _request_id(request: Request, prefix: str) -> str:
    return f"{prefix}-{request.headers.get('x-request-id') or uuid.uuid4().hex}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "stub_error", "code": status}}, status_code=status)


async def _handle(request: Request, kind: str) -> Any:
    body = await request.json()
    rid = _request_id(request, "chatcmpl" if kind == "chat" else "cmpl")
    log.info(f"Received request {rid}", model=body.get("model"), streaming=bool(body.get("stream")))
    await asyncio.sleep(float(body.get("stub_delay", 0)))
    if body.get("stub_status"):
        return _error(int(body["stub_status"]), "failure requested by stub_status")
    n = max(1, min(int(body.get("max_tokens") or 5), 64))
    words = [WORDS[i % len(WORDS)] for i in range(n)]
    created = int(time.time())
    if body.get("stream"):
        return StreamingResponse(_stream(rid, kind, words, created, float(body.get("stub_chunk_delay", 0))),
                                 media_type="text/event-stream")
    text = " ".join(words)
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        if kind == "chat" else {"index": 0, "text": text, "finish_reason": "length"}
    )
    return {
        "id": rid,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": created,
        "model": body.get("model") or MODEL,
        "choices": [choice],
        "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n},
    }


async def _stream(rid: str, kind: str, words: list[str], created: int, delay: float) -> AsyncIterator[bytes]:
    for word in words:
        if delay:
            await asyncio.sleep(delay)
        delta = {"delta": {"content": word + " "}} if kind == "chat" else {"text": word + " "}
        chunk = {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                 "created": created, "model": MODEL, "choices": [{"index": 0, **delta, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"
    log.info(f"Finished request {rid}", tokens=len(words))


@app.post("/v1/completions")
async def completions(request: Request) -> Any:
    return await _handle(request, "completion")


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    return await _handle(request, "chat")


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
