"""A client that aborts an upload, against a real uvicorn server: a client disconnect (499), not a server error."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from fastapi_support import BIN, CLEAN_EXIT, HERE, REPO, free_port, start, stop, wait_ready
from mlops_logging.testing import read_records
from support.procs import wait_for

pytestmark = pytest.mark.timeout(120)


def abort_upload(port: int, path: str, request_id: str) -> None:
    """Send the headers and 2 KB of a 100 KB body with a raw socket, let the app start reading, then hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: {request_id}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode() + b"{" + b" " * 2000)
        time.sleep(0.3)


def test_an_aborted_upload_is_a_warning_with_status_499_and_no_traceback(tmp_path: Path, log_root: Path) -> None:
    log = log_root / "fastapi" / "fastapi.log"
    port = free_port()
    out = tmp_path / "uvicorn.out"
    config = str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")
    argv = [str(BIN / "uvicorn"), "fastapi_testapp:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
            "--port", str(port), "--log-config", config]
    proc = start(argv, out, cwd=REPO)
    aborted = {"raw-body": "/upload", "json-body": "/items"}
    try:
        wait_ready(f"http://127.0.0.1:{port}/ok", proc, out)
        for request_id, path in aborted.items():
            abort_upload(port, path, request_id)
        complete = httpx.post(f"http://127.0.0.1:{port}/upload", content=b"y" * 5000,
                              headers={"x-request-id": "complete"})
        assert complete.status_code == 200 and complete.json() == {"bytes": 5000}

        def logged() -> bool:
            ids = {r.get("request_id") for r in read_records(log) if r["logger"] == "mlops_logging.access"}
            return ids >= {*aborted, "complete"}

        wait_for(logged, what="the access records of the aborted uploads")
    finally:
        code = stop(proc)
    assert code in CLEAN_EXIT, out.read_text(errors="replace")[-3000:]

    records = read_records(log)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL") or "exception" in r], \
        "a client that hung up is no server error"
    assert not [r for r in records if "Exception in ASGI application" in r["message"]]
    for request_id, path in aborted.items():
        mine = [r for r in records if r.get("request_id") == request_id]
        [access] = [r for r in mine if r["logger"] == "mlops_logging.access"]
        assert (access["status_code"], access["level"], access["disconnected"]) == (499, "WARNING", True), access
        assert access["path"] == path and access["message"] == f"POST {path} 499"
        [warning] = [r for r in mine if r["logger"] == "mlops_logging.fastapi"]
        assert warning["level"] == "WARNING" and warning["disconnected"] is True
        assert warning["message"] == "client disconnected before a response was sent"
    [done] = [r for r in records if r.get("request_id") == "complete" and r["logger"] == "mlops_logging.access"]
    assert done["status_code"] == 200 and "disconnected" not in done
