"""The request middleware called in-process (httpx's ASGI transport), plus the uvicorn log config, against real
files."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mlops_logging import configure_logging
from mlops_logging.fastapi import (
    SERVER_ACCESS_LOGGERS,
    RequestLoggingMiddleware,
    current_request_id,
    instrument,
    redact_query,
    valid_request_id,
)
from mlops_logging.testing import read_records
from mlops_logging.uvicorn_conf import LOG_CONFIG, LOG_CONFIG_FILE, log_config


@pytest.fixture
def logfile(log_root: Path, restore_logging: None) -> Iterator[Path]:
    """In-process logging to <root>/fastapi/fastapi.log, undone after the test (server access loggers too)."""
    saved = {name: (lg.disabled, lg.propagate, list(lg.handlers))
             for name in SERVER_ACCESS_LOGGERS for lg in [logging.getLogger(name)]}
    yield configure_logging("fastapi", stdout=False)
    for name, (disabled, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.disabled, logger.propagate, logger.handlers[:] = disabled, propagate, handlers


def call(app: Any, path: str = "/", headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers or {})

    return asyncio.run(go())


def access(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["logger"] == "mlops_logging.access"]


@pytest.mark.parametrize(("query", "expected"), [
    ("", ""),
    ("a=1&b=2", "a=1&b=2"),
    ("api_key=abc&x=1", "api_key=[REDACTED]&x=1"),
    ("token=t&max_tokens=5&prompt_token_ids=1", "token=[REDACTED]&max_tokens=5&prompt_token_ids=1"),
    ("key=AIza&sig=zz&access_token=q", "key=[REDACTED]&sig=[REDACTED]&access_token=[REDACTED]"),
    ("api%5Fkey=abc", "api%5Fkey=[REDACTED]"),
    ("password=&flag", "password=&flag"),  # nothing to hide
])
def test_secret_query_parameters_are_redacted(query: str, expected: str) -> None:
    assert redact_query(query.encode()) == expected


@pytest.mark.parametrize(("value", "ok"), [
    ("abc-123", True), ("A.b:c_d-9", True), ("x" * 128, True), ("x" * 129, False), ("", False),
    ("has space", False), ("semi;colon", False), ("é", False), (None, False),
])
def test_request_id_validation(value: str | None, ok: bool) -> None:
    assert valid_request_id(value) is ok


def test_a_raising_app_gets_a_500_with_the_id_one_error_record_and_an_access_record(logfile: Path) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        raise ValueError("exploded")

    response = call(RequestLoggingMiddleware(app), "/x?token=abc", {"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "boom-1"
    assert response.text == "Internal Server Error"
    records = read_records(logfile)
    [error] = [r for r in records if r["level"] == "ERROR" and r["logger"] == "mlops_logging.fastapi"]
    assert error["request_id"] == "boom-1" and "ValueError: exploded" in error["exception"]
    [record] = access(records)
    assert record["status_code"] == 500 and record["level"] == "ERROR" and record["query"] == "token=[REDACTED]"
    assert current_request_id() is None  # reset after the request


def test_an_exception_after_the_headers_still_gives_a_500_access_record(logfile: Path) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"app-set")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("mid-body")

    header_values: list[tuple[bytes, bytes]] = []
    records_before = len(read_records(logfile))  # the app sets its own x-request-id: ours must replace it

    async def run() -> None:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/p", "query_string": b"", "headers": [],
                 "client": ("10.0.0.1", 5)}
        await RequestLoggingMiddleware(app)(scope, receive, send)
        [start] = [m for m in sent if m["type"] == "http.response.start"]
        header_values.extend(start["headers"])

    asyncio.run(run())
    records = read_records(logfile)[records_before:]
    [record] = access(records)
    assert record["status_code"] == 500 and record["bytes_sent"] == 7 and record["client"] == "10.0.0.1"
    assert [v.decode() for k, v in header_values if k == b"x-request-id"] == [record["request_id"]]
    assert [r for r in records if r["level"] == "ERROR" and "RuntimeError: mid-body" in r.get("exception", "")]


def test_instrument_fastapi_once_ids_and_levels(logfile: Path) -> None:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, str | None]:
        logging.getLogger("inner").info("inside")
        return {"id": current_request_id()}

    assert instrument(app) is app and instrument(app) is app
    assert sum(m.cls is RequestLoggingMiddleware for m in app.user_middleware) == 1
    assert logging.getLogger("uvicorn.access").disabled

    good = call(app, "/ok", {"X-Request-ID": "good.id:1"})
    bad = call(app, "/ok", {"X-Request-ID": "no good"})
    missing = call(app, "/nothing-here")
    assert good.json() == {"id": "good.id:1"} and good.headers["x-request-id"] == "good.id:1"
    assert bad.json()["id"] == bad.headers["x-request-id"] != "no good" and len(bad.headers["x-request-id"]) == 32
    records = read_records(logfile)
    assert [(r["request_id"], r["status_code"], r["level"]) for r in access(records)] == [
        ("good.id:1", 200, "INFO"), (bad.headers["x-request-id"], 200, "INFO"),
        (missing.headers["x-request-id"], 404, "WARNING")]
    assert [r["request_id"] for r in records if r["message"] == "inside"] == ["good.id:1", bad.headers["x-request-id"]]
    [replaced] = [r for r in records if r["message"] == "invalid X-Request-ID replaced"]
    assert replaced["invalid_request_id"] == "no good" and replaced["request_id"] == bad.headers["x-request-id"]


def test_without_configure_logging_records_go_to_stdlib_logging(caplog: pytest.LogCaptureFixture) -> None:
    from mlops_logging import _output as output

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    previous = output.install(output.Output(service="unconfigured"))
    try:
        with caplog.at_level(logging.INFO, logger="mlops_logging.access"):
            response = call(RequestLoggingMiddleware(app), "/n", {"X-Request-ID": "std-1"})
    finally:
        output.install(previous)
    assert response.status_code == 204
    [record] = [r for r in caplog.records if r.name == "mlops_logging.access"]
    assert record.getMessage() == "GET /n 204" and record.request_id == "std-1" and record.status_code == 204


def test_uvicorn_log_config_file_matches_and_installs_exactly_one_handler(log_root: Path,
                                                                          restore_logging: None) -> None:
    assert json.loads(LOG_CONFIG_FILE.read_text()) == LOG_CONFIG
    logging.config.dictConfig(log_config(stdout=False))
    logging.config.dictConfig(log_config(stdout=False))  # a second application (reload) must not stack handlers
    root = logging.getLogger()
    assert sum(getattr(h, "_mlops_logging", False) for h in root.handlers) == 1
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    [record] = read_records(log_root / "fastapi" / "fastapi.log")
    assert record["logger"] == "uvicorn.error" and record["service"] == "fastapi"


async def _ok_app(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(app: Any, count: int = 1, **scope: Any) -> None:
    """Call ``app`` ``count`` times with a raw ASGI scope (``scope`` overrides), the way a server would."""

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    async def run() -> None:
        for _ in range(count):
            await app({"type": "http", "method": "GET", "path": "/f", "query_string": b"", "client": ("10.0.0.2", 7),
                       "headers": [(b"user-agent", b"t/1")], **scope}, receive, send)

    asyncio.run(run())


def test_access_lines_are_render_json_of_their_record_and_generated_ids_unique(logfile: Path) -> None:
    from mlops_logging._render import render_json
    from support.records import read_lines

    _serve(RequestLoggingMiddleware(_ok_app), 600)  # more ids than one os.urandom batch makes
    lines = [line for line in read_lines(logfile) if b'"logger":"mlops_logging.access"' in line]
    records = [json.loads(line) for line in lines]
    assert len(records) == 600
    # the same bytes
    assert all(line + b"\n" == render_json(record) for line, record in zip(lines, records, strict=True))
    assert list(records[0]) == ["timestamp", "level", "message", "service", "logger", "pid", "request_id", "method",
                                "path", "query", "status_code", "duration_ms", "bytes_sent", "client", "user_agent",
                                "trace_id", "span_id", "trace_flags"]
    ids = [r["request_id"] for r in records]
    assert len(set(ids)) == 600 and all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
    # each request without a traceparent starts its own trace: fresh trace and span ids, sampled
    assert len({r["trace_id"] for r in records}) == len({r["span_id"] for r in records}) == 600
    assert {r["trace_flags"] for r in records} == {"01"}
    assert all(round(r["duration_ms"], 3) == r["duration_ms"] >= 0 for r in records)


def test_a_response_ended_by_the_pathsend_extension_is_complete_not_disconnected(logfile: Path) -> None:
    sent: list[dict] = []

    async def file_app(scope: dict, receive: Any, send: Any) -> None:  # what FileResponse does when offered pathsend
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1234")]})
        await send({"type": "http.response.pathsend", "path": "/srv/model.bin"})

    async def server_send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/model", "query_string": b"", "client": ("10.0.0.2", 7),
             "headers": [], "extensions": {"http.response.pathsend": {}}}
    asyncio.run(RequestLoggingMiddleware(file_app)(scope, receive, server_send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    [record] = access(read_records(logfile))
    assert record["status_code"] == 200 and record["bytes_sent"] == 1234 and "disconnected" not in record


def test_a_path_orjson_refuses_still_gets_its_access_record(logfile: Path) -> None:
    _serve(RequestLoggingMiddleware(_ok_app), path="/caf\udce9")  # a lone surrogate: not encodable as UTF-8
    [record] = access(read_records(logfile))
    assert record["path"] == "/caf\\udce9" and record["message"] == "GET /caf\\udce9 200"


def test_text_format_access_records(log_root: Path, restore_logging: None) -> None:
    path = configure_logging("fastapi", stdout=False, fmt="text")
    _serve(RequestLoggingMiddleware(_ok_app), query_string=b"token=s3cret&a=1")
    [line] = [line for line in path.read_text().splitlines() if "mlops_logging.access" in line]
    assert " INFO mlops_logging.access: GET /f 200 " in line and 'query="token=[REDACTED]&a=1"' in line
    assert "s3cret" not in line and "user_agent=t/1" in line


def test_a_forked_child_does_not_reuse_the_parents_spare_ids() -> None:
    from mlops_logging.fastapi import _new_id

    _new_id()  # the parent now holds spare ids
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_end, _new_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.waitpid(pid, 0)
    os.close(read_end)
    assert len(child_id) == 32 and child_id != _new_id()


def test_context_the_app_binds_never_replaces_the_reserved_fields_of_the_middlewares_records(logfile: Path) -> None:
    from structlog.contextvars import bind_contextvars

    async def app(scope: dict, receive: Any, send: Any) -> None:
        bind_contextvars(level="VERBOSE", service="billing", timestamp=0, user="alice")
        if scope["path"] == "/boom":
            raise ValueError("exploded")
        await _ok_app(scope, receive, send)

    call(RequestLoggingMiddleware(app), "/ok")
    call(RequestLoggingMiddleware(app), "/boom")
    records = read_records(logfile)  # every record validates against the schema
    ours = [r for r in records if r["logger"].startswith("mlops_logging.")]
    assert [(r["logger"], r["level"]) for r in ours] == [
        ("mlops_logging.access", "INFO"), ("mlops_logging.fastapi", "ERROR"), ("mlops_logging.access", "ERROR")]
    for record in ours:
        assert record["service"] == "fastapi" and record["timestamp"] != 0
        assert (record["level_"], record["service_"], record["timestamp_"], record["user"]) == (
            "VERBOSE", "billing", 0, "alice")


async def _upload_app(scope: dict, receive: Any, send: Any) -> None:
    """Reads the request body the way Starlette does (ClientDisconnect when the client goes away)."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    body = await Request(scope, receive).body()
    await PlainTextResponse(f"{len(body)}")(scope, receive, send)


def _aborted_upload(app: Any) -> list[dict]:
    """Serve one POST whose client sends part of the body, then hangs up (the server says http.disconnect)."""
    messages = [{"type": "http.request", "body": b"x" * 1000, "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/upload", "query_string": b"", "client": ("10.0.0.3", 9),
             "headers": [(b"content-length", b"100000")]}
    asyncio.run(RequestLoggingMiddleware(app)(scope, receive, send))
    return sent


def test_an_aborted_upload_is_a_client_disconnect_not_a_server_error(logfile: Path) -> None:
    sent = _aborted_upload(_upload_app)
    assert sent == []  # nothing is sent to a client that is gone
    records = read_records(logfile)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL") or "exception" in r]
    [warning] = [r for r in records if r["logger"] == "mlops_logging.fastapi"]
    assert warning["level"] == "WARNING" and warning["disconnected"] is True
    assert warning["message"] == "client disconnected before a response was sent"
    [record] = access(records)
    assert (record["status_code"], record["level"], record["disconnected"]) == (499, "WARNING", True)
    assert record["message"] == "POST /upload 499"


def test_a_client_disconnect_raised_mid_stream_keeps_the_status_and_is_no_error(logfile: Path) -> None:
    from starlette.requests import ClientDisconnect

    async def app(scope: dict, receive: Any, send: Any) -> None:  # Starlette's StreamingResponse on ASGI >= 2.4
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"chunk", "more_body": True})
        raise ClientDisconnect()

    _serve(RequestLoggingMiddleware(app))
    records = read_records(logfile)
    assert not [r for r in records if r["level"] == "ERROR" or "exception" in r]
    [record] = access(records)
    assert (record["status_code"], record["level"], record["disconnected"], record["bytes_sent"]) == (
        200, "WARNING", True, 5)


def test_a_later_configure_logging_keeps_the_servers_access_logs_silenced(log_root: Path,
                                                                          restore_logging: None) -> None:
    """One place (configure_logging's routing) decides: the middleware silenced them, reconfiguring keeps it so."""
    from mlops_logging.fastapi import SERVER_ACCESS_LOGGERS, disable_server_access_logs

    disable_server_access_logs()
    path = configure_logging("fastapi", stdout=False)
    for name in SERVER_ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        assert logger.disabled and not logger.propagate and not logger.handlers
        logger.info('127.0.0.1 - "GET / HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    assert [r["logger"] for r in read_records(path)] == ["uvicorn.error"]
