"""Real uvicorn (2 workers) and gunicorn (3 UvicornWorkers) serving an instrumented FastAPI app: what lands on disk.

Each test starts the server on loopback, sends a few hundred concurrent requests (normal, 404, 500, streaming, with
and without X-Request-ID, invalid ids, secrets in the query), stops it with SIGTERM and reads
``<root>/fastapi/fastapi.log``: every line valid, exactly one access record per request, ids echoed and matching.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fastapi_support import BIN, HERE, REPO, Call, free_port, send_all, start, stop, wait_ready
from mlops_logging.testing import read_records
from support.records import read_lines

pytestmark = pytest.mark.timeout(180)

STREAM_N, STREAM_DELAY = 4, 0.05  # each /stream response takes at least 200 ms
SECRET = "s3cr3t-value-never-logged"
PROBE = "probe=1"
INVALID_IDS = ["has space", "x" * 129, "semi;colon", "quote\"d", "new\\nline", "", "é-accent"]
ACCESS_FIELDS: dict[str, Any] = {
    "request_id": str,
    "method": str,
    "path": str,
    "query": str,
    "status_code": int,
    "duration_ms": (int, float),
    "bytes_sent": int,
    "client": str,
    "user_agent": str,
}
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def traffic_plan(run: str) -> list[Call]:
    """~300 requests of every kind; ``run`` makes the ids of two runs distinct."""
    calls: list[Call] = []
    calls += [Call("ok", f"/ok?i={i}", f"{run}-ok-{i}") for i in range(150)]
    calls += [Call("ok", "/ok") for _ in range(40)]
    calls += [Call("secret", f"/ok?api_key={SECRET}&token={SECRET}&max_tokens=5", f"{run}-secret-{i}")
              for i in range(5)]
    calls += [Call("missing", f"/missing/{i}", f"{run}-404-{i}") for i in range(20)]
    calls += [Call("boom", "/boom", f"{run}:boom.{i}") for i in range(15)]
    calls += [Call("work", "/work", f"{run}-work-{i}") for i in range(20)]
    calls += [Call("sync", "/sync", f"{run}-sync-{i}") for i in range(10)]
    calls += [Call("stream", f"/stream?n={STREAM_N}&delay={STREAM_DELAY}", f"{run}-stream-{i}") for i in range(10)]
    calls += [Call("invalid", "/ok", bad) for bad in INVALID_IDS for _ in range(3)]
    return calls


def disconnect_midstream(port: int, request_id: str) -> None:
    """Open a slow stream with a raw socket, read its first chunk, then hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /stream?n=40&delay=0.05 HTTP/1.1\r\nHost: x\r\nX-Request-ID: {request_id}\r\n\r\n".encode())
        data = b""
        while b"data: 0" not in data:
            chunk = sock.recv(4096)
            assert chunk, "server closed before the first chunk"
            data += chunk


def check_run(records: list[dict[str, Any]], calls: list[Call], *, disconnected_id: str | None = None) -> None:
    """Every assertion about one run's requests against the records of the file."""
    access = [r for r in records if r.get("logger") == "mlops_logging.access"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in access:
        by_id.setdefault(record["request_id"], []).append(record)

    for call in calls:
        assert call.echoed_id is not None and ID_RE.fullmatch(call.echoed_id), call
        if call.kind == "invalid" or call.sent_id is None:
            assert call.echoed_id != call.sent_id
        else:
            assert call.echoed_id == call.sent_id, call
        matching = by_id.get(call.echoed_id, [])
        assert len(matching) == 1, f"{len(matching)} access records for {call}"
        record = matching[0]
        for name, types in ACCESS_FIELDS.items():
            assert isinstance(record.get(name), types), f"{name} missing or mistyped in {record}"
        assert record["status_code"] == call.status
        assert record["service"] == "fastapi" and record["method"] == "GET"
        assert record["path"] == call.path.split("?")[0]
        assert record["client"] == "127.0.0.1" and record["user_agent"].startswith("python-httpx/")
        assert record["bytes_sent"] == len(call.body)
        assert 0 <= record["duration_ms"] <= call.elapsed_ms + 1.0
        expected_level = "ERROR" if call.status >= 500 else "WARNING" if call.status >= 400 else "INFO"
        assert record["level"] == expected_level
        assert "disconnected" not in record

    kinds = Counter(c.kind for c in calls)
    statuses = {c.kind: {x.status for x in calls if x.kind == c.kind} for c in calls}
    assert statuses["ok"] == {200} and statuses["missing"] == {404} and statuses["boom"] == {500}
    assert statuses["stream"] == {200} and statuses["invalid"] == {200}

    ids_of = {kind: {c.echoed_id for c in calls if c.kind == kind} for kind in kinds}
    # One ERROR record with the traceback per unhandled exception, carrying the request id; nothing from uvicorn.
    errors = [r for r in records if r.get("logger") == "mlops_logging.fastapi" and r["level"] == "ERROR"]
    assert Counter(r["request_id"] for r in errors) == Counter(ids_of["boom"])
    assert all("RuntimeError: boom on purpose" in r["exception"] for r in errors)
    assert not [r for r in records if "Exception in ASGI application" in r["message"]]
    # Records written while handling a request carry its id (structlog, stdlib, and from the sync thread pool).
    for message, kind in (("working", "work"), ("working via stdlib", "work"), ("sync work", "sync")):
        assert Counter(r.get("request_id") for r in records if r["message"] == message) == Counter(ids_of[kind])
    # An invalid incoming id is replaced, and the replacement is logged under the new id.
    replaced = [r for r in records if r["message"] == "invalid X-Request-ID replaced"]
    assert {r["request_id"] for r in replaced} >= ids_of["invalid"]
    # Streams: the record covers the whole body, not just the headers.
    for call in calls:
        if call.kind == "stream":
            assert by_id[call.echoed_id][0]["duration_ms"] >= STREAM_N * STREAM_DELAY * 1000 * 0.99
    # Secret query values are redacted; harmless parameters that merely contain "token" are not.
    for call in calls:
        if call.kind == "secret":
            assert by_id[call.echoed_id][0]["query"] == "api_key=[REDACTED]&token=[REDACTED]&max_tokens=5"
    if disconnected_id is not None:
        [record] = by_id[disconnected_id]
        assert record["disconnected"] is True and record["level"] == "WARNING" and record["status_code"] == 200
        assert record["duration_ms"] < 40 * 50  # it ended when the client left, not when the stream would have
        assert [r for r in records if r.get("request_id") == disconnected_id
                and r["message"] == "client disconnected before the response was complete"]
    # The servers' own access logs are off: the middleware's record is the only one.
    assert not [r for r in records if r.get("logger") in ("uvicorn.access", "gunicorn.access")]


def assert_no_duplicates(path: Path) -> None:
    lines = read_lines(path)
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, f"duplicated lines: {repeated[:3]}"


def assert_no_secret(path: Path) -> None:
    assert SECRET.encode() not in path.read_bytes()


def uvicorn_argv(port: int, *extra: str) -> list[str]:
    return [str(BIN / "uvicorn"), "fastapi_testapp:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "2", *extra]


def serve_and_send(argv: list[str], port: int, out: Path, env: dict[str, str], run: str,
                   disconnect: bool = False) -> list[Call]:
    proc = start(argv, out, env=env, cwd=REPO)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ok?{PROBE}", proc, out)
        time.sleep(0.5)  # let the second worker finish booting too (the first one may have answered)
        calls = send_all(f"http://127.0.0.1:{port}", traffic_plan(run))
        if disconnect:
            disconnect_midstream(port, f"{run}-disconnect")
            time.sleep(0.3)
    finally:
        code = stop(proc)
    assert code == 0, out.read_text(errors="replace")[-3000:]
    return calls


def ready_probes(records: list[dict[str, Any]]) -> set[str]:
    """Request ids of wait_ready's probes (generated ids: they sent none)."""
    return {r["request_id"] for r in records if r.get("logger") == "mlops_logging.access" and r["query"] == PROBE}


def test_uvicorn_two_workers_log_config_then_app_configure_restart_appends(tmp_path: Path, log_root: Path) -> None:
    log = log_root / "fastapi" / "fastapi.log"
    config = str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")

    # Run 1: logging from `--log-config` (the app only instruments itself).
    port = free_port()
    calls1 = serve_and_send(uvicorn_argv(port, "--log-config", config), port, tmp_path / "uvicorn1.out", {}, "r1",
                            disconnect=True)
    records1 = read_records(log)
    first_run_bytes = log.read_bytes()
    check_run(records1, calls1, disconnected_id="r1-disconnect")
    messages = Counter(r["message"] for r in records1)
    assert messages["Application startup complete."] == 2
    assert sum(1 for r in records1 if r["message"].startswith("Finished server process")) == 2
    assert sum(1 for r in records1 if r["message"].startswith("Started parent process")) == 1
    assert {r["service"] for r in records1} == {"fastapi"}
    assert len({r["pid"] for r in records1}) == 3  # the supervisor and its two workers

    # Run 2: uvicorn's default logging, the app calls configure_logging itself at import. Appends to the same file.
    port = free_port()
    calls2 = serve_and_send(uvicorn_argv(port), port, tmp_path / "uvicorn2.out", {"TESTAPP_CONFIGURE": "1"}, "r2")
    assert log.read_bytes().startswith(first_run_bytes), "the restart rewrote the first run's lines"
    records = read_records(log)
    records2 = records[len(records1):]
    check_run(records2, calls2)
    assert Counter(r["message"] for r in records)["Application startup complete."] == 4
    access = [r for r in records if r.get("logger") == "mlops_logging.access"]
    expected = len(calls1) + len(calls2) + 1 + len(ready_probes(records))  # +1: the disconnected stream
    assert len(access) == expected
    assert len({r["request_id"] for r in access}) == len(access)
    assert_no_duplicates(log)
    assert_no_secret(log)


def test_gunicorn_three_uvicorn_workers_and_usr1_reopen(tmp_path: Path, log_root: Path) -> None:
    log = log_root / "fastapi" / "fastapi.log"
    port = free_port()
    out = tmp_path / "gunicorn.out"
    argv = [str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-k", "uvicorn_worker.UvicornWorker",
            "-w", "3", "-b", f"127.0.0.1:{port}", "--pythonpath", str(HERE), "--no-control-socket",
            "--graceful-timeout", "10", "fastapi_testapp:app"]
    proc = start(argv, out, cwd=REPO)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ok?{PROBE}", proc, out)
        time.sleep(1.0)  # all three workers booted
        calls = send_all(f"http://127.0.0.1:{port}", traffic_plan("g"))

        # logrotate-style: rename the file, USR1 the master; gunicorn forwards it to the workers, all reopen.
        rotated = log.with_name("fastapi.log.1")
        os.rename(log, rotated)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not (log.exists() and b"Handling signal: usr1" in log.read_bytes()):
            assert time.monotonic() < deadline, "no record of the USR1 in a new file"
            time.sleep(0.05)
        time.sleep(0.3)
        after = send_all(f"http://127.0.0.1:{port}", [Call("ok", "/ok", f"after-usr1-{i}") for i in range(30)])
    finally:
        code = stop(proc)
    assert code == 0, out.read_text(errors="replace")[-3000:]

    records = read_records(rotated)
    check_run(records, calls)
    booted = [r for r in records if r["message"].startswith("Booting worker with pid")]
    assert len(booted) == 3 and all(r["logger"] == "gunicorn.error" for r in booted)
    assert Counter(r["message"] for r in records)["Application startup complete."] == 3
    assert any(r["message"].startswith("Starting gunicorn") for r in records)
    worker_pids = {int(r["message"].rsplit(" ", 1)[1]) for r in booted}
    assert {r["pid"] for r in records if r.get("logger") == "mlops_logging.access"} <= worker_pids
    assert not [r for r in records if r.get("request_id", "").startswith("after-usr1")]
    assert_no_duplicates(rotated)
    assert_no_secret(rotated)

    new_records = read_records(log)
    new_access = Counter(r["request_id"] for r in new_records if r.get("logger") == "mlops_logging.access")
    assert new_access == Counter(c.sent_id for c in after)
    assert all(c.status == 200 for c in after)
    assert any(r["message"] == "Shutting down: Master" for r in new_records)
    assert_no_duplicates(log)
