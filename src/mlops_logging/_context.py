"""The structlog context bound with ``bind_contextvars`` (``request_id``, ``run_id``), read cheaply for every record.

``structlog.contextvars.get_contextvars`` copies the whole ``contextvars`` context and scans every variable in it
(anyio's, Starlette's...); reading structlog's own registry is one ``.get()`` per structlog key. Every writer in the
package uses this, so all records list context keys in one order: the order the keys were first bound.
"""

from __future__ import annotations

from typing import Any

import structlog.contextvars as _structlog_contextvars
from structlog.typing import EventDict, WrappedLogger

__all__ = ["REGISTRY", "bound_context", "merge_bound_context"]

#: structlog's registry of its contextvars (``structlog_<key>`` -> ContextVar; keys are never removed), or None for a
#: structlog without one (then the public, slower API is used).
REGISTRY: dict[str, Any] | None = getattr(_structlog_contextvars, "_CONTEXT_VARS", None)
_PREFIX_LEN = len(getattr(_structlog_contextvars, "STRUCTLOG_KEY_PREFIX", "structlog_"))


def bound_context() -> dict[str, Any]:
    """A new dict of what is bound in this context (same content as ``structlog.contextvars.get_contextvars()``)."""
    if REGISTRY is None:  # a structlog without the registry: fall back to the public, slower API
        return _structlog_contextvars.get_contextvars()
    bound: dict[str, Any] = {}
    for name, var in tuple(REGISTRY.items()):  # tuple(): another thread may bind a new key meanwhile
        value = var.get(Ellipsis)
        if value is not Ellipsis:
            bound[name[_PREFIX_LEN:]] = value
    return bound


def merge_bound_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: add the bound context to the event; the call's own keys win (like merge_contextvars)."""
    if REGISTRY is None or REGISTRY:  # an empty registry: nothing was ever bound in any context
        for key, value in bound_context().items():
            event_dict.setdefault(key, value)
    return event_dict
