"""Request logging for FastAPI / any ASGI app: one access record per request, request ids in every record.

:class:`RequestLoggingMiddleware` is a pure ASGI middleware (``BaseHTTPMiddleware`` is slower and runs the app in
another task, which breaks contextvars). Per request it:

- takes the id from a valid incoming ``X-Request-ID`` (``[A-Za-z0-9._:-]``, at most 128 characters) or generates one
  (32 random hex characters; an invalid incoming id is replaced and the replacement logged), binds it in structlog's
  contextvars as ``request_id`` (so every structlog *and* stdlib record written while handling the request carries
  it) and echoes it in the ``X-Request-ID`` response header, also on the 500 it sends itself when the app raises;
- writes one record on ``mlops_logging.access`` (to the log file; to the console too when WARNING or worse, or with
  ``access_console=True``) when the last body byte has been sent (so streaming and SSE responses
  report their full time): ``request_id``, ``method``, ``path``, ``query`` (secret parameters redacted),
  ``status_code``, ``duration_ms``, ``bytes_sent``, ``client``, ``user_agent``, plus ``disconnected: true`` when the
  client went away mid-response, or before any response (an aborted upload: ``status_code`` 499, nginx's "client
  closed request"). Level INFO for 2xx/3xx, WARNING for 4xx (and disconnects), ERROR for 5xx;
- turns an unhandled exception into one ERROR record with the traceback in ``exception`` and a 500 response; a
  client disconnect (Starlette's ``ClientDisconnect``) is one WARNING record instead, without a traceback.

``instrument(app)`` configures logging (unless already configured for the service), adds the middleware and turns
the server's own access log off, so each request is logged exactly once. Importing this module does not import
FastAPI or Starlette.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from time import perf_counter
from typing import Any
from urllib.parse import unquote_plus

from structlog.contextvars import bind_contextvars

from . import _output
from ._config import configure_logging, silence_loggers
from ._context import REGISTRY, bound_context
from ._level_map import level_from_number
from ._records import RESERVED, THIS_PROCESS, access_record, add_fields, build_record
from ._redaction import REDACTED, is_secret_key, redact
from ._tracecontext import (
    RequestState,
    add_access_fields,
    add_trace_fields,
    end_request,
    outgoing_traceparent,
    start_request,
)
from ._tracecontext import rejected as traceparent_rejected

__all__ = [
    "ACCESS_LOGGER",
    "REQUEST_ID_HEADER",
    "RequestLoggingMiddleware",
    "SERVER_ACCESS_LOGGERS",
    "TRACEPARENT_HEADER",
    "current_request_id",
    "disable_server_access_logs",
    "instrument",
    "outgoing_traceparent",
    "redact_query",
    "valid_request_id",
]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

#: The logger of the one-per-request access record (set its level to silence or filter it).
ACCESS_LOGGER = "mlops_logging.access"
#: The request-id header (ASGI header names are lower case).
REQUEST_ID_HEADER = "x-request-id"
#: The W3C trace-context header (read: ``_tracecontext.start_request``; sent on: :func:`outgoing_traceparent`).
TRACEPARENT_HEADER = "traceparent"
#: Loggers of the servers' own access logs, replaced by the middleware's record.
SERVER_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")

_HEADER = REQUEST_ID_HEADER.encode("latin-1")
_TRACEPARENT = TRACEPARENT_HEADER.encode("latin-1")
_VALID_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_INTERNAL_ERROR = b"Internal Server Error"
_ERROR_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]

# structlog's own ContextVar for `request_id`, so bind/unbind via structlog and the middleware agree.
_token = bind_contextvars(request_id=...)["request_id"]
_REQUEST_ID = _token.var
_REQUEST_ID.reset(_token)
del _token


def current_request_id() -> str | None:
    """The id of the request being handled in this context (``None`` outside a request)."""
    value = _REQUEST_ID.get(...)
    return None if value is ... else value


def valid_request_id(value: bytes | str | None) -> bool:
    """True when ``value`` is a safe request id: 1-128 characters from ``[A-Za-z0-9._:-]``."""
    if value is None:
        return False
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return _VALID_ID.fullmatch(raw) is not None


def redact_query(query_string: bytes | str) -> str:
    """The query string with the value of every secret parameter redacted (``api_key``, ``accessToken``, ``jwt``,
    OAuth's ``code``...: :func:`records.is_secret_key` with ``in_url=True``)."""
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    if not text:
        return ""
    parts = text.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if not sep or not value:
            continue
        key = unquote_plus(name) if ("%" in name or "+" in name) else name
        if is_secret_key(key, in_url=True):
            parts[i] = f"{name}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else text


_ID_BATCH = 256
_spare_ids: list[str] = []  # generated ids not handed out yet; emptied in a forked child (see below)


def _new_id() -> str:
    """32 hex characters from ``os.urandom`` (the form of ``uuid4().hex``).

    One ``os.urandom`` call makes 256 ids: the syscall is most of the cost of one. ``list.pop`` is atomic under the
    GIL, so threads never get the same id, and the child of a ``fork`` drops the parent's spare ids (no reuse).
    """
    try:
        return _spare_ids.pop()
    except IndexError:
        ids = os.urandom(16 * _ID_BATCH).hex(" ", 16).split()  # split in C: a space every 16 bytes
        _spare_ids.extend(ids[1:])
        return ids[0]


os.register_at_fork(after_in_child=_spare_ids.clear)


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int:
    """The Content-Length response header as an int, 0 when missing or not a number."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _is_configured() -> bool:
    current = _output.current
    return current.writer is not None or current.console is not None


def _emit(logger: logging.Logger, levelno: int, message: str, fields: dict[str, Any],
          exc: BaseException | None = None) -> None:
    """Write one record straight to the configured output (no LogRecord), or through stdlib logging if unconfigured."""
    if not logger.isEnabledFor(levelno):
        return
    current = _output.current
    if current.writer is None and current.console is None:
        # Nobody called configure_logging: hand the record to whatever stdlib logging the app set up.
        logger.log(levelno, message, extra=fields, exc_info=exc)
        return
    # The request id first among the context fields, whatever else the app bound; the middleware's own fields win
    # over bound ones of the same name.
    context: dict[str, Any] = {}
    request_id = _REQUEST_ID.get(...)
    if request_id is not ...:
        context["request_id"] = request_id
    context.update(bound_context())
    context.update(fields)
    add_trace_fields(context)
    if exc is not None:
        context["exception"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n")
    current.emit(build_record(level_from_number(levelno), message, current.service, logger.name, THIS_PROCESS,
                              context))


class _Exchange:
    """One HTTP request as the middleware sees it: its id, and what went back (``send`` and ``receive`` keep count).

    One object a request, its ``send``/``receive`` handed to the app in place of the server's.
    """

    __slots__ = ("_receive", "_send", "start", "request_id", "id_header", "invalid_id", "user_agent", "status",
                 "sent", "end", "headers", "gone_early", "traceparent", "trace")

    def __init__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        self.start = perf_counter()
        self._receive = receive
        self._send = send
        headers = scope["headers"]
        if len(headers) > 4:
            # Many headers (httpx, browsers, proxies): one dict built in C costs less than a scan in Python. A header
            # that came twice (the dict is shorter than the list) takes the scan, which keeps the first X-Request-ID
            # and joins two traceparent values (invalid, as the two joined into one would be).
            found = dict(headers)
            if len(found) == len(headers):
                raw_id = found.get(_HEADER)
                self.user_agent = found.get(b"user-agent", b"")
                self.traceparent = found.get(_TRACEPARENT)  # the W3C trace context header (None: none came)
            else:
                raw_id = self._scan(headers)
        else:  # a few (wrk, curl, health checks): the scan costs less than a dict
            raw_id = self._scan(headers)
        self.invalid_id: bytes | None = None  # an incoming X-Request-ID that was replaced
        if raw_id is None:
            self.request_id = request_id = _new_id()
            self.id_header = (_HEADER, request_id.encode("ascii"))
        elif _VALID_ID.fullmatch(raw_id):
            self.request_id = raw_id.decode("ascii")
            self.id_header = (_HEADER, raw_id)
        else:
            self.request_id = request_id = _new_id()
            self.id_header = (_HEADER, request_id.encode("ascii"))
            self.invalid_id = raw_id
        self.trace: RequestState  # set by the middleware: the request's trace context (_tracecontext)
        self.status = 0  # set by http.response.start: 0 means nothing has been sent yet
        self.sent = 0
        self.end = 0.0  # when the last body byte went out
        self.headers: Sequence[tuple[bytes, bytes]] = ()  # the response's, once http.response.start went out
        self.gone_early = False  # the client hung up before a response started (an aborted upload): a 499

    def _scan(self, headers: Any) -> bytes | None:
        """The headers one by one (some came more than once): the first X-Request-ID, the last User-Agent, every
        traceparent joined. Returns the X-Request-ID."""
        raw_id: bytes | None = None
        user_agent = b""
        traceparent: bytes | None = None
        for name, value in headers:
            if name == _HEADER:
                if raw_id is None:
                    raw_id = value
            elif name == b"user-agent":
                user_agent = value
            elif name == _TRACEPARENT:  # a second one makes it invalid, as the two joined into one would be
                traceparent = value if traceparent is None else traceparent + b"," + value
        self.user_agent = user_agent
        self.traceparent = traceparent
        return raw_id

    def send(self, message: _Message) -> Awaitable[None]:
        """Count the body bytes, note the status and the end, put our X-Request-ID into the response headers.

        Not a coroutine itself: every message but the last of the body is handed on as the server's own awaitable
        (one coroutine less per message); the last one is awaited by :meth:`_last`, which notes when it went out.
        """
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            # A new list (the app's may be shared); ASGI header names are lower case; the app's own x-request-id
            # (rare: scanned for, not rebuilt) gives way to ours.
            headers = list(message.get("headers", ()))
            for header in headers:
                if header[0] == _HEADER:
                    headers = [h for h in headers if h[0] != _HEADER]
                    break
            headers.append(self.id_header)
            message["headers"] = self.headers = headers
            return self._send(message)
        if kind == "http.response.body":
            body = message.get("body")
            if body:
                self.sent += len(body)
            if message.get("more_body"):
                return self._send(message)
            return self._last(message)
        if kind == "http.response.pathsend":
            return self._pathsend(message)
        return self._send(message)

    async def _last(self, message: _Message) -> None:
        """Send the body's last message, then note the time: the response is complete."""
        await self._send(message)
        self.end = perf_counter()

    async def _pathsend(self, message: _Message) -> None:
        """The ASGI path-send extension (Starlette's FileResponse on servers that offer it): the server sends the file
        itself and this message ends the response; its size is the Content-Length."""
        await self._send(message)
        self.end = perf_counter()
        self.sent += _content_length(self.headers)

    async def receive(self) -> _Message:
        """The server's message; a disconnect before any response marks an aborted request."""
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.status:
            self.gone_early = True
        return message


class RequestLoggingMiddleware:
    """Pure ASGI middleware: request id in, request id out, one access record per HTTP request.

    Kept lean because it runs on every request: no header dict, one small object for ``send``/``receive``, the
    access record built as one dict and written with one ``write()``.
    """

    _mlops_logging_instrumented = False  # set on a middleware instrument() made

    def __init__(self, app: _ASGIApp, *, access_logger: str = ACCESS_LOGGER, access_console: bool = False) -> None:
        self.app = app
        self._access = logging.getLogger(access_logger)
        # INFO access records go to the file only unless asked: one line per request on stdout costs as much again.
        self._access_console = access_console
        self._log = logging.getLogger("mlops_logging.fastapi")

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send)
        token = _REQUEST_ID.set(exchange.request_id)
        trace = exchange.trace = start_request(exchange.traceparent, scope)  # current until end_request
        try:
            if exchange.invalid_id is not None or (exchange.traceparent is not None and traceparent_rejected(trace)):
                self._invalid_headers(exchange)
            disconnected = False
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except Exception as exc:  # noqa: BLE001 - the middleware is the last line: log it, answer 500
                disconnected = await self._failed(scope, exchange, exc)
            except BaseException:  # cancelled (server shutdown): still account for the request, then propagate
                self._access_record(scope, exchange, exchange.status or 499, True)
                raise
            if disconnected or exchange.gone_early or (exchange.status and not exchange.end):
                # Also when the app returned before the last body byte: Starlette does that when the client went
                # away mid-stream (it listens for http.disconnect); ASGI servers drop sends to a closed connection.
                self._client_gone(scope, exchange)
                disconnected = True
            self._access_record(scope, exchange, exchange.status, disconnected)
        finally:
            end_request(trace, exchange.status)
            _REQUEST_ID.reset(token)

    def _invalid_headers(self, exchange: _Exchange) -> None:
        """A WARNING record for an invalid X-Request-ID (replaced) and for an invalid traceparent (ignored)."""
        if exchange.invalid_id is not None:
            _emit(self._log, logging.WARNING, "invalid X-Request-ID replaced",
                  {"invalid_request_id": exchange.invalid_id[:200].decode("latin-1")})
        if exchange.traceparent is not None and traceparent_rejected(exchange.trace):
            _emit(self._log, logging.WARNING, "invalid traceparent ignored",
                  {"invalid_traceparent": exchange.traceparent[:200].decode("latin-1")})

    async def _failed(self, scope: _Scope, exchange: _Exchange, exc: Exception) -> bool:
        """The app raised: a client that went away, or an ERROR record and a 500 (when nothing was sent yet).
        Returns whether the client is gone."""
        if exchange.gone_early or _is_client_disconnect(exc) or (exchange.status and isinstance(exc, OSError)):
            # The client went away (Starlette's ClientDisconnect while reading the body or streaming; ASGI >= 2.4
            # servers raise OSError on send() to a closed connection): not a server error.
            exchange.gone_early = exchange.gone_early or not exchange.status
            exchange.end = exchange.end or perf_counter()
            return True
        _emit(self._log, logging.ERROR, f"unhandled {type(exc).__name__} in {scope['method']} {scope['path']}: {exc}",
              {"method": scope["method"], "path": scope["path"]}, exc)
        gone = False
        if not exchange.status:
            try:
                await exchange.send({"type": "http.response.start", "status": 500, "headers": list(_ERROR_HEADERS)})
                await exchange.send({"type": "http.response.body", "body": _INTERNAL_ERROR})
            except Exception:  # noqa: BLE001 - the client is gone; the records say what happened
                gone = True
        exchange.status = 500
        exchange.end = exchange.end or perf_counter()
        return gone

    def _client_gone(self, scope: _Scope, exchange: _Exchange) -> None:
        """The client went away before the response was complete: one WARNING record (a 499 when it was gone
        before the response started)."""
        if exchange.gone_early:
            # nginx's 499 "client closed request": whatever the app answered afterwards, nobody received it.
            exchange.status = 499
            exchange.end = exchange.end or perf_counter()
        what = "a response was sent" if exchange.gone_early else "the response was complete"
        _emit(self._log, logging.WARNING, f"client disconnected before {what}",
              {"method": scope["method"], "path": scope["path"], "bytes_sent": exchange.sent, "disconnected": True})

    def _access_record(self, scope: _Scope, exchange: _Exchange, status: int, disconnected: bool) -> None:
        """Write the request's one access record (INFO straight to the file's sink: the common case, kept short)."""
        levelno = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 or disconnected \
            else logging.INFO
        access = self._access
        # Logger.isEnabledFor's own answer, without its call when it is cached (setLevel and disable clear the cache)
        if access.disabled or not (access._cache.get(levelno)  # type: ignore[attr-defined]
                                   or access.isEnabledFor(levelno)):
            return
        method = scope["method"]
        path = scope["path"]
        client = scope.get("client")
        query = scope.get("query_string")
        current = _output.current
        # Whole microseconds, in ms: round(x, 3)'s result at a third of its cost.
        duration_ms = round(((exchange.end or perf_counter()) - exchange.start) * 1_000_000) / 1000
        request = exchange.trace[1]  # (trace_id, span_id, trace_flags), parent_span_id
        # request_id is in structlog's registry from import on and keys are never removed: a registry of one key
        # means nothing else can be bound, so there is no context to merge.
        if levelno == logging.INFO and not disconnected and REGISTRY is not None and len(REGISTRY) == 1:
            # The common case, one dict literal (_records.access_record, the same record as the general way below)
            record = access_record("INFO", f"{method} {path} {status}", current.service, access.name,
                                   exchange.request_id, method, path, redact_query(query) if query else "", status,
                                   duration_ms, exchange.sent, client[0] if client else None,
                                   exchange.user_agent.decode("latin-1"), request[0])
            if request[1] is not None:
                record["parent_span_id"] = request[1]
            writer = current.writer
            if writer is not None and not self._access_console:
                writer.submit(current.render(record))  # the file's sink: never raises, counts and reports a failure
                return
        else:
            record = build_record(level_from_number(levelno), f"{method} {path} {status}", current.service,
                                  access.name, THIS_PROCESS)
            record.update({  # the middleware's own fields: their types are the schema's
                "request_id": exchange.request_id,
                "method": method,
                "path": path,
                "query": redact_query(query) if query else "",
                "status_code": status,
                "duration_ms": duration_ms,
                "bytes_sent": exchange.sent,
                "client": client[0] if client else None,
                "user_agent": exchange.user_agent.decode("latin-1"),
            })
            if disconnected:
                record["disconnected"] = True
            if REGISTRY is None or len(REGISTRY) > 1:
                context = bound_context()
                if len(context) > 1:  # the app bound more than request_id (model, user...): add it, redacted
                    add_fields(record, context, replace=False)
                    redact(record)
            add_access_fields(record, exchange.trace)  # trace_id, span_id, trace_flags, parent_span_id
        writer = current.writer
        if writer is not None and levelno == logging.INFO and not self._access_console:
            writer.submit(current.render(record))  # the file's sink: never raises, counts and reports a failed write
        elif writer is None and current.console is None:
            fields = {k: v for k, v in record.items() if k not in RESERVED}
            access.log(levelno, record["message"], extra=fields)
        else:
            current.emit(record)


def _is_client_disconnect(exc: BaseException) -> bool:
    """Starlette's ``ClientDisconnect`` (looked up only if Starlette is loaded: this module does not import it)."""
    requests = sys.modules.get("starlette.requests")
    kind = getattr(requests, "ClientDisconnect", None)
    return kind is not None and isinstance(exc, kind)


def disable_server_access_logs() -> None:
    """Silence uvicorn's and gunicorn's own access logs (the middleware's record replaces them).

    :func:`configure_logging` keeps them silenced when it runs again later (one place decides how its takeover
    loggers are routed); no handler and no propagation makes uvicorn skip even formatting its access line.
    """
    silence_loggers(SERVER_ACCESS_LOGGERS)


def instrument(app: Any, service: str | None = None, *, access_console: bool = False, **configure_kwargs: Any) -> Any:
    """Log ``app``'s requests: configure logging, add :class:`RequestLoggingMiddleware`, silence server access logs.

    INFO access records go to the log file only; WARNING/ERROR ones (4xx, 5xx, disconnects) also to the console.
    ``access_console=True`` prints every access record on stdout too (about twice the logging cost per request).

    ``service`` defaults to ``MLOPS_SERVICE``, else ``"fastapi"``. Logging is configured (``configure_logging(service,
    **configure_kwargs)``) unless it already is for that service, e.g. by the app itself, ``--log-config`` or the
    gunicorn config, and no arguments were given. Returns the app (a Starlette/FastAPI app gets the middleware
    added; any other ASGI callable comes back wrapped). Calling it twice on one app is a no-op.
    """
    service = service or os.environ.get("MLOPS_SERVICE") or "fastapi"
    if configure_kwargs or not (_is_configured() and _output.current.service == service):
        configure_logging(service, **configure_kwargs)
    disable_server_access_logs()
    if getattr(app, "_mlops_logging_instrumented", False):
        return app
    add_middleware = getattr(app, "add_middleware", None)
    if add_middleware is None:
        wrapped = RequestLoggingMiddleware(app, access_console=access_console)
        wrapped._mlops_logging_instrumented = True
        return wrapped
    add_middleware(RequestLoggingMiddleware, access_console=access_console)
    app._mlops_logging_instrumented = True
    return app
