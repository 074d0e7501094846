"""The FastAPI app the uvicorn/gunicorn integration tests serve (``--app-dir``/``--pythonpath tests/integration``).

With ``TESTAPP_CONFIGURE=1`` it calls ``configure_logging`` itself at import, as many apps do; otherwise logging comes
from the server's configuration (``--log-config`` or the gunicorn config module).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from mlops_logging import configure_logging, get_logger
from mlops_logging.fastapi import instrument

if os.environ.get("TESTAPP_CONFIGURE") == "1":
    configure_logging("fastapi")

app = FastAPI()
instrument(app)
slog = get_logger("testapp")
stdlog = logging.getLogger("testapp.stdlib")


@app.get("/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@app.get("/work")
async def work() -> dict[str, str]:
    """Writes one structlog and one stdlib record: both must carry the request id."""
    slog.info("working", step="structlog")
    stdlog.info("working via stdlib")
    return {"done": "yes"}


@app.get("/sync")
def sync_work() -> dict[str, str]:
    """A sync endpoint (thread pool): the request id must follow into the thread."""
    stdlog.info("sync work")
    return {"done": "sync"}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom on purpose")


@app.get("/stream")
async def stream(n: int = 5, delay: float = 0.05) -> StreamingResponse:
    async def chunks():
        for i in range(n):
            await asyncio.sleep(delay)
            yield f"data: {i}\n\n".encode()

    return StreamingResponse(chunks(), media_type="text/event-stream")


@app.get("/long")
async def long(tag: str, n: int) -> dict[str, bool]:
    """One INFO record whose message is ``<tag>:`` then ``n`` x's then ``:E`` (console lines of a chosen length)."""
    slog.info(f"{tag}:" + "x" * n + ":E")
    return {"ok": True}


@app.get("/text", response_class=PlainTextResponse)
async def text() -> str:
    structlog.contextvars.bind_contextvars(user="alice")
    return "x" * 1000


@app.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    """Reads the raw body: Starlette raises ClientDisconnect when the client aborts the upload."""
    return {"bytes": len(await request.body())}


@app.post("/items")
async def items(item: dict[str, Any]) -> dict[str, int]:
    """A JSON body parameter: FastAPI reads the body itself (a disconnect becomes a 400 that nobody receives)."""
    return {"keys": len(item)}
