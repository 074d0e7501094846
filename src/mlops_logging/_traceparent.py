"""W3C Trace Context ``traceparent`` values: read an incoming one, write an outgoing one, make new ids.

The header (https://www.w3.org/TR/trace-context/#traceparent-header) is ``<version>-<trace-id>-<parent-id>-<flags>``:
2, 32, 16 and 2 lower-case hex digits. Version ``00`` is exactly 55 characters; a later version may append
``-<fields>``, of which only the first four are read (the spec's forward-compatible rule); version ``ff``, upper-case
hex and an all-zero trace or parent id make the whole value invalid. No OpenTelemetry here: this is what lets the
FastAPI middleware take part in a trace without the OTel SDK (and what checks the ids a record may carry).
"""

from __future__ import annotations

import os
import re

__all__ = [
    "SPARE_SPAN_IDS",
    "SPARE_TRACE_IDS",
    "TRACE_FIELDS",
    "is_span_id",
    "is_trace_flags",
    "is_trace_id",
    "make_traceparent",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "refill_ids",
]

#: The record fields of a trace context, in the order records carry them.
TRACE_FIELDS: tuple[str, str, str] = ("trace_id", "span_id", "trace_flags")

# The first 55 bytes of any version: version (not ff), trace-id, parent-id, flags, lower-case hex only.
_HEAD = re.compile(rb"(?!ff)[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_LENGTH = 55
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_HEX = re.compile(r"[0-9a-f]+")


def parse_traceparent(value: bytes) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` of a valid ``traceparent`` header value, or None for any invalid one.

    Bounded work for any input: at most the first 56 bytes are looked at (a 10 KB header costs what a short one does).
    """
    if len(value) != _LENGTH and (len(value) < _LENGTH or value[:2] == b"00" or value[_LENGTH] != 0x2D):  # "-"
        return None
    if _HEAD.match(value) is None:
        return None
    text = value[:_LENGTH].decode("ascii")
    trace_id, parent_id = text[3:35], text[36:52]
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, text[53:55]


def make_traceparent(trace_id: str, span_id: str, flags: str) -> str:
    """The version-00 ``traceparent`` value for these ids (the caller's are valid: :func:`parse_traceparent`'s or
    :func:`new_trace_id` / :func:`new_span_id`'s)."""
    return f"00-{trace_id}-{span_id}-{flags}"


def _hex_of(value: object, length: int) -> bool:
    return type(value) is str and len(value) == length and _HEX.fullmatch(value) is not None


def is_trace_id(value: object) -> bool:
    """A record's ``trace_id``: 32 lower-case hex digits, not all zero."""
    return _hex_of(value, 32) and value != _ZERO_TRACE


def is_span_id(value: object) -> bool:
    """A record's ``span_id``: 16 lower-case hex digits, not all zero."""
    return _hex_of(value, 16) and value != _ZERO_SPAN


def is_trace_flags(value: object) -> bool:
    """A record's ``trace_flags``: 2 lower-case hex digits (``01``: sampled)."""
    return _hex_of(value, 2)


# New ids come from batches of os.urandom (the syscall is most of the cost of one id), split in C, as the request
# ids of the FastAPI middleware are: no Python work per id, and none to take one (no slicing). list.pop is atomic
# under the GIL, and a forked child drops its parent's spare ids.
_BATCH = 256
#: Fresh trace ids (32 lower-case hex digits, never all zero): take one with ``SPARE_TRACE_IDS.pop()``, and
#: ``refill_ids(SPARE_TRACE_IDS)`` when it is empty (the middleware's way: no call per request).
SPARE_TRACE_IDS: list[str] = []
#: Fresh span ids (16 lower-case hex digits, never all zero), the same way.
SPARE_SPAN_IDS: list[str] = []


def refill_ids(spare: list[str]) -> str:
    """Refill ``spare`` (:data:`SPARE_TRACE_IDS` or :data:`SPARE_SPAN_IDS`) and return one more fresh id."""
    size = 16 if spare is SPARE_TRACE_IDS else 8
    zero = "0" * (2 * size)
    text = os.urandom(size * _BATCH).hex(" ", size)  # a space every `size` bytes
    ids = text.split()
    if zero in text:  # maybe an all-zero id (one chance in 2**64 for a span id), which is invalid: drop it
        ids = [i for i in ids if i != zero]
    spare.extend(ids)
    return spare.pop() if spare else refill_ids(spare)


def new_trace_id() -> str:
    """A random trace id: 32 lower-case hex digits, never all zero."""
    try:
        return SPARE_TRACE_IDS.pop()
    except IndexError:
        return refill_ids(SPARE_TRACE_IDS)


def new_span_id() -> str:
    """A random span id: 16 lower-case hex digits, never all zero."""
    try:
        return SPARE_SPAN_IDS.pop()
    except IndexError:
        return refill_ids(SPARE_SPAN_IDS)


def _forget_spares() -> None:
    SPARE_TRACE_IDS.clear()
    SPARE_SPAN_IDS.clear()


os.register_at_fork(after_in_child=_forget_spares)
