"""The trace context of a record: the ids of the span current where it is written, and the FastAPI middleware's span.

Where the ids come from, the first valid one:

1. an MLflow span (``mlflow.start_span``, ``@mlflow.trace``): MLflow 3 keeps its spans in a context of its own
   (its isolated tracer provider), so it is read there;
2. the current OpenTelemetry span, whatever SDK made it (or a context extracted from a ``traceparent``);
3. the request the FastAPI middleware is handling (:func:`start_request`), whose span it makes itself when no
   OpenTelemetry SDK is configured.

Nothing is imported for 1 and 2: no span can be current before something else imported ``opentelemetry.trace``
(an SDK, an instrumentation, MLflow), so their modules are looked up in ``sys.modules``, again only when the number of
imported modules changed (one ``len()`` per record). Once there, their context variable is read directly: one
``ContextVar.get()`` per record while no span is current. The ids of the last span seen are kept, so a record inside
a span does not format them again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import Any, cast

from ._records import add_fields
from ._traceparent import (
    SPARE_SPAN_IDS,
    SPARE_TRACE_IDS,
    TRACE_FIELDS,
    is_span_id,
    is_trace_flags,
    is_trace_id,
    make_traceparent,
    new_span_id,
    parse_traceparent,
    refill_ids,
)
from ._version import __version__

__all__ = ["RequestState", "add_access_fields", "add_trace_fields", "current", "end_request", "outgoing_traceparent",
           "rejected", "start_request"]

#: ``(trace_id, span_id, trace_flags)``, lower-case hex.
Ids = tuple[str, str, str]

_modules = sys.modules
_seen = 0  # len(sys.modules) when the sources were last looked up
_sources: tuple[Callable[[], Any], ...] = ()  # each returns a current OTel Context (a dict), MLflow's first
_span_key: str = ""  # OpenTelemetry's key of the current span in a Context
_otel: tuple[Any, Any] | None = None  # the modules opentelemetry.trace and opentelemetry.context, once imported
_otel_sdk = False  # whether the OpenTelemetry SDK is imported (only then can a request start inside a span)
_tracer: tuple[object, Any] = (None, None)  # the SDK tracer provider the middleware's spans came from, its tracer
_memo: tuple[object, Ids | None] = (None, None)  # the last span seen and its ids (one tuple: thread-safe)


def _look_up_sources() -> None:
    """Bind the context variables of MLflow's tracing and of OpenTelemetry, for those already imported."""
    global _seen, _sources, _span_key, _otel, _otel_sdk
    _seen = len(_modules)
    _otel_sdk = "opentelemetry.sdk.trace" in _modules
    propagation = _modules.get("opentelemetry.trace.propagation")
    otel_trace = _modules.get("opentelemetry.trace")
    otel_context = _modules.get("opentelemetry.context")
    if propagation is None or otel_trace is None or otel_context is None:
        return
    try:
        _span_key = propagation._SPAN_KEY
        sources = []
        mlflow = _modules.get("mlflow.tracing.provider")
        if mlflow is not None:
            sources.append(_getter(mlflow.mlflow_runtime_context))
        sources.append(_getter(otel_context._RUNTIME_CONTEXT))
        _sources = tuple(sources)
        _otel = (otel_trace, otel_context)
    except Exception:  # noqa: BLE001 - another version's internals: then records carry no span's ids, never fail
        _sources, _otel = (), None


def _getter(runtime: Any) -> Callable[[], Any]:
    """The fastest way to read a runtime context's current Context: its ContextVar's ``get``, else its method."""
    var = getattr(runtime, "_current_context", None)
    return var.get if isinstance(var, ContextVar) else runtime.get_current


def _ids_of(span: Any) -> Ids | None:
    """A span's ids, or None for an invalid span context (no SDK, a no-op tracer); never raises. The last span's
    are kept (a span's context never changes), so the records written inside one format them once."""
    global _memo
    memo = _memo
    if memo[0] is span:
        return memo[1]
    try:
        context = span.get_span_context()
        ids = ((f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{context.trace_flags:02x}")
               if context.is_valid else None)
    except Exception:  # noqa: BLE001 - a span object of some other kind
        return None
    _memo = (span, ids)
    return ids


def current() -> Ids | None:
    """The ids of the span current here: an MLflow span, an OpenTelemetry span, the middleware's request; or None.

    Runs for every record: with OpenTelemetry imported and no span current it costs a ``ContextVar.get()`` more.
    """
    if len(_modules) != _seen:
        _look_up_sources()
    for get in _sources:
        context = get()
        if context:  # an empty Context: no span was ever made current here
            span = context.get(_span_key)
            if span is not None:
                memo = _memo
                ids = memo[1] if memo[0] is span else _ids_of(span)
                if ids is not None:
                    return ids
    request = _REQUEST.get()
    return None if request is None else request[0]


_CHECKS = (is_trace_id, is_span_id, is_trace_flags)


def add_trace_fields(fields: MutableMapping[str, Any]) -> None:
    """Add ``trace_id``, ``span_id`` and ``trace_flags`` of the current span to a record's fields (after its own and
    the bound context, before ``exception``); nothing when no valid span is current.

    A field of the call or the bound context with one of these names keeps it when its value is a valid id, as a
    call's field wins over bound context; any other value is kept as ``<name>_`` (the typed-field rule).
    """
    ids = current()
    if ids is None:
        return
    if "trace_id" not in fields and "span_id" not in fields and "trace_flags" not in fields:
        fields["trace_id"], fields["span_id"], fields["trace_flags"] = ids
        return
    moved = {}
    for name, value, fits in zip(TRACE_FIELDS, ids, _CHECKS, strict=True):
        if name in fields:
            if fits(fields[name]):
                continue
            moved[name] = fields.pop(name)
        fields[name] = value
    if moved:
        add_fields(cast(dict[str, Any], fields), moved)  # as <name>_, next to the real ones (every writer's dict)


def outgoing_traceparent() -> str | None:
    """The ``traceparent`` to send on a call made here: the current trace, a new span id for the call, its flags;
    None when no span is current."""
    ids = current()
    return None if ids is None else make_traceparent(ids[0], new_span_id(), ids[2])


# --- the FastAPI middleware's request ---------------------------------------------------------------------------------

#: A request's ids and the caller's span id (``parent_span_id``: None when no valid ``traceparent`` came).
Request = tuple[Ids, str | None]
#: The request being handled here, set by start_request.
_REQUEST: ContextVar[Request | None] = ContextVar("mlops_logging_request_trace", default=None)


#: What :func:`start_request` gives the middleware, for its access record and :func:`end_request`: the token that
#: restores the context, the request (what its records carry), the OpenTelemetry SDK's span made for it and its
#: context token (or None). A plain tuple: it is made on every request.
RequestState = tuple[Token[Request | None], Request, tuple[Any, Any] | None]


def start_request(header: bytes | None, scope: Mapping[str, Any]) -> RequestState:
    """Make the request's place in a trace current, from its ``traceparent`` header (None: there was none); an invalid
    header is ignored (:func:`rejected` says so), never an error.

    - an OpenTelemetry span already current (FastAPI's own telemetry, or OTel's ASGI instrumentation, outside the
      middleware): its ids, no span of ours (one trace, the SDK's);
    - else an OpenTelemetry SDK configured (a global tracer provider set): a server span of that SDK, child of the
      incoming ``traceparent``, made current and ended by :func:`end_request`;
    - else a span id of its own, in the incoming trace, or in a new trace (sampled: ``01``) when none came.

    Kept lean, it runs on every request: without the OpenTelemetry SDK imported it parses the header (or takes two
    fresh ids) and sets one context variable.
    """
    if len(_modules) != _seen:
        _look_up_sources()
    if header is None and not _otel_sdk:  # the common case: a new trace and a span of its own
        try:
            span_id = SPARE_SPAN_IDS.pop()
        except IndexError:
            span_id = refill_ids(SPARE_SPAN_IDS)
        try:
            trace_id = SPARE_TRACE_IDS.pop()
        except IndexError:
            trace_id = refill_ids(SPARE_TRACE_IDS)
        request: Request = ((trace_id, span_id, "01"), None)
        return _REQUEST.set(request), request, None
    parsed = None if header is None else parse_traceparent(header)
    ids = sdk_span = None
    if _otel_sdk:  # without the SDK no span can be current here, nor made
        ids, sdk_span = _from_otel(parsed, scope)
    if ids is None:  # fresh ids without a call (this is most of a request's trace cost otherwise)
        try:
            span_id = SPARE_SPAN_IDS.pop()
        except IndexError:
            span_id = refill_ids(SPARE_SPAN_IDS)
        if parsed is not None:
            ids = (parsed[0], span_id, parsed[2])
        else:
            try:
                ids = (SPARE_TRACE_IDS.pop(), span_id, "01")
            except IndexError:
                ids = (refill_ids(SPARE_TRACE_IDS), span_id, "01")
    request = (ids, None if parsed is None else parsed[1])
    return _REQUEST.set(request), request, sdk_span


def rejected(state: RequestState) -> bool:
    """Whether the request's ``traceparent`` (one came) was invalid: it has no parent span then."""
    return state[1][1] is None


def add_access_fields(record: MutableMapping[str, Any], state: RequestState) -> None:
    """The trace fields of the middleware's access record: its request's ids, then ``parent_span_id`` when the
    request came with a valid ``traceparent`` (the caller's span: the link to the service that sent it)."""
    (record["trace_id"], record["span_id"], record["trace_flags"]), parent = state[1]
    if parent is not None:
        record["parent_span_id"] = parent


def end_request(state: RequestState, status: int) -> None:
    """The request is over: restore the context, end the SDK span made for it (with the response status)."""
    _REQUEST.reset(state[0])
    if state[2] is not None:
        _end_sdk_span(state[2], status)


def _from_otel(parsed: Ids | None, scope: Mapping[str, Any]) -> tuple[Ids | None, tuple[Any, Any] | None]:
    """The ids of an OpenTelemetry span current at the request's start (or of the request an outer middleware
    handles), else of a server span the configured SDK makes for it (with its context token); ``(None, None)`` when
    there is neither (no provider set, a no-op one)."""
    global _tracer
    ids = current()
    if ids is not None or _otel is None or getattr(_otel[0], "_TRACER_PROVIDER", None) is None:
        return ids, None  # the API's global provider: set by an SDK (set_tracer_provider)
    trace, otel_context = _otel
    try:
        provider = trace.get_tracer_provider()
        parent = None
        if parsed is not None:
            remote = trace.SpanContext(int(parsed[0], 16), int(parsed[1], 16), is_remote=True,
                                       trace_flags=trace.TraceFlags(int(parsed[2], 16)))
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        if _tracer[0] is not provider:
            _tracer = (provider, provider.get_tracer("mlops_logging.fastapi", __version__))
        method = scope.get("method", "")
        span = _tracer[1].start_span(method, context=parent, kind=trace.SpanKind.SERVER,
                                     attributes={"http.request.method": method, "url.path": scope.get("path", "")})
        ids = _ids_of(span)
        if ids is None:  # a provider that makes no spans
            span.end()
            return None, None
        return ids, (span, otel_context.attach(trace.set_span_in_context(span)))
    except Exception:  # noqa: BLE001 - tracing never fails a request
        return None, None


def _end_sdk_span(sdk_span: tuple[Any, Any], status: int) -> None:
    span, token = sdk_span
    if _otel is None:
        return
    trace, otel_context = _otel
    try:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end()
        otel_context.detach(token)
    except Exception:  # noqa: BLE001, S110 - tracing never fails a request (the span is the SDK's to report)
        pass
