"""Where the FastAPI middleware's per-request time goes, in-process (no network, no server): microseconds a request.

Calls the same trivial FastAPI app's ASGI entry point in a loop: plain; instrumented; instrumented with the file
write replaced by a no-op; instrumented with the access record skipped. Medians of interleaved rounds.
Usage: python bench/middleware.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from fastapi import FastAPI

import mlops_logging.fastapi as mf
from mlops_logging import _output as output

SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
    "headers": [(b"host", b"bench"), (b"user-agent", b"bench")], "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}


def make_app(instrumented: bool) -> FastAPI:
    """The trivial endpoint of bench/web.py, with or without instrument()."""
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    if instrumented:
        mf.instrument(app, log_dir=tempfile.mkdtemp(), stdout=False)
    return app


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def per_request_us(app: FastAPI, requests: int) -> float:
    """Mean microseconds per request over ``requests`` calls."""

    async def loop() -> None:
        for _ in range(requests):
            await app(dict(SCOPE), _receive, _send)

    started = time.perf_counter()
    asyncio.run(loop())
    return (time.perf_counter() - started) / requests * 1e6


class _NoWrite:
    def submit(self, data: bytes) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    plain, instrumented = make_app(False), make_app(True)
    writer = output.current.writer
    access_record = mf.RequestLoggingMiddleware._access_record
    results: dict[str, list[float]] = {"plain": [], "instrumented": [], "no write": [], "no access record": []}
    for _ in range(args.rounds):
        results["plain"].append(per_request_us(plain, args.requests))
        output.current.writer = writer
        mf.RequestLoggingMiddleware._access_record = access_record  # type: ignore[method-assign]
        results["instrumented"].append(per_request_us(instrumented, args.requests))
        output.current.writer = _NoWrite()  # type: ignore[assignment]
        results["no write"].append(per_request_us(instrumented, args.requests))
        mf.RequestLoggingMiddleware._access_record = lambda *a, **k: None  # type: ignore[method-assign]
        results["no access record"].append(per_request_us(instrumented, args.requests))
    base = statistics.median(results["plain"])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<18} {median:7.1f} us/request  (+{median - base:5.1f} us over plain)")


if __name__ == "__main__":
    main()
