"""``logcheck --trace ID`` for a W3C trace id: the trace's records, and every line of the requests in it.

A trace id (32 lower-case hex digits) is searched as any id is (``check._trace.trace``: our records carry it as
``trace_id``); then each request id those records carry is searched too, because not every service writes trace
ids: vLLM 0.32 puts none in its own lines, only the gateway's request id (``Received request cmpl-<id>-0``), and a
batch job's records carry the request id it sent. A record found that way is kept unless it carries another trace
id (the same request id reused in another trace). Everything is merged by time, each record once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._traceparent import is_trace_id
from ._trace import Trace
from ._trace import trace as search

__all__ = ["trace"]


def trace(root: Path, wanted: str, services: Sequence[str] | None = None, *, now: float | None = None) -> Trace:
    """Every record carrying ``wanted`` (a request id or a trace id) under ``root``, merged by time; for a trace id,
    also every record of the requests in that trace (their ids in ``request_ids``). Raises ValueError as
    ``check._trace.trace`` does for an id that cannot be one."""
    result = search(root, wanted, services, now=now)
    if not is_trace_id(wanted):
        return result
    for hit in result.hits:
        if hit.record is not None and hit.record.get("trace_id") == wanted:
            request_id = hit.record.get("request_id")
            if isinstance(request_id, str) and request_id != wanted and request_id not in result.request_ids:
                result.request_ids.append(request_id)
    seen = {(hit.service, hit.file, hit.offset) for hit in result.hits}
    for request_id in result.request_ids:
        try:
            more = search(root, request_id, services, now=now)
        except ValueError:  # a request id no gateway would have accepted: not followed
            continue
        for hit in more.hits:
            other = hit.record.get("trace_id") if hit.record is not None else None
            if (hit.service, hit.file, hit.offset) not in seen and other in (None, wanted):
                seen.add((hit.service, hit.file, hit.offset))
                result.hits.append(hit)
        result.skipped.extend(s for s in more.skipped if s not in result.skipped)
    result.hits.sort(key=lambda hit: hit.order)
    return result
