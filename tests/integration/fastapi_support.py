"""Helpers for the FastAPI integration tests: start real servers, send traffic, stop them, read what they wrote."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
#: Exit statuses of a clean SIGTERM shutdown: uvicorn >= 0.29 re-raises the signal after shutting down gracefully.
CLEAN_EXIT = (0, -signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: Sequence[str], out: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` in its own session with stdout+stderr captured to ``out``."""
    handle = out.open("ab")
    try:
        return subprocess.Popen(list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    finally:
        handle.close()


def wait_ready(url: str, proc: subprocess.Popen, out: Path, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{out.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise AssertionError(f"{url} not ready after {timeout}s:\n{out.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, wait; SIGKILL the session only if it hangs (which fails the caller's expectations loudly)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise AssertionError(f"pid {proc.pid} ignored SIGTERM for {timeout}s") from None
    return int(proc.returncode)


@dataclass
class Call:
    """One request of a traffic plan and what came back."""

    kind: str
    path: str
    sent_id: str | None = None
    status: int = 0
    echoed_id: str | None = None
    elapsed_ms: float = 0.0
    body: bytes = b""
    extra: dict = field(default_factory=dict)


async def _run(base: str, calls: Iterable[Call], concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30.0,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(call: Call) -> None:
            headers = {"x-request-id": call.sent_id.encode()} if call.sent_id is not None else {}
            async with limit:
                started = time.perf_counter()
                response = await client.get(call.path, headers=headers)
                call.elapsed_ms = (time.perf_counter() - started) * 1000
            call.status = response.status_code
            call.echoed_id = response.headers.get("x-request-id")
            call.body = response.content

        await asyncio.gather(*(one(c) for c in calls))


def send_all(base: str, calls: list[Call], concurrency: int = 24) -> list[Call]:
    """Send every call concurrently (at most ``concurrency`` in flight); fill in status, echoed id, timing."""
    asyncio.run(_run(base, calls, concurrency))
    return calls
