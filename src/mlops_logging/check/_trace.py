"""``logcheck --trace``: every record of one request id, in every service, merged by time.

A record carries a request id when the id appears in it as a whole token: as ``request_id`` (our records), in any
other field, or in a server's own line, where vLLM prefixes it (``Received request cmpl-<id>-0``,
``chatcmpl-<id>``) and may append ``-<n>``. "Whole token": not preceded by an id character (``[A-Za-z0-9._:-]``)
unless that is vLLM's ``cmpl-``/``chatcmpl-`` prefix, and not followed by one, except vLLM's ``-<n>`` suffix
and a ``.`` or ``:`` that ends a sentence or a field. Files are searched with
``mmap`` (the whole file, rotated and gzip ones too: a trace is a grep, not a sample).
"""

from __future__ import annotations

import gzip
import mmap
import os
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._errors import describe_os_error
from .._levels import detect_level
from ._files import NotAuditable, list_service_files, open_log
from ._records import parse_time

__all__ = ["Trace", "TraceHit", "carries_id", "trace"]

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_PREFIXES = ("chatcmpl-", "cmpl-")  # vLLM's request ids: f"cmpl-{X-Request-Id}", f"chatcmpl-{X-Request-Id}"
_SERVICE_DIR = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}\Z")


def _ends_token(text: str, end: int) -> bool:
    """The id ends at ``end``: the text ends, or a non-id character follows, or vLLM's ``-<n>`` suffix, or a
    ``.``/``:`` that ends a sentence or a field (``Added request cmpl-<id>.``, ``<id>: params``)."""
    if end == len(text) or text[end] == "-":
        return True
    if text[end] in ".:":
        return end + 1 == len(text) or text[end + 1] not in _ID_CHARS
    return text[end] not in _ID_CHARS


def carries_id(text: str, request_id: str) -> bool:
    """True when ``request_id`` occurs in ``text`` as a whole token (see the module docstring)."""
    start = text.find(request_id)
    while start >= 0:
        end = start + len(request_id)
        left = start
        for prefix in _PREFIXES:
            if text.endswith(prefix, 0, start):
                left = start - len(prefix)
                break
        if (left == 0 or text[left - 1] not in _ID_CHARS) and _ends_token(text, end):
            return True
        start = text.find(request_id, start + 1)
    return False


@dataclass
class TraceHit:
    """One record carrying the id."""

    service: str
    file: str
    offset: int
    time: float | None
    level: str | None
    message: str
    record: dict[str, Any] | None  # the JSON record, or None for a text line
    line: str
    order: tuple[float, int, int] = (0.0, 0, 0)  # where it sorts: time (or the carried one), service, offset


@dataclass
class Trace:
    """All records of one request id, in time order, and the files that could not be searched."""

    request_id: str
    hits: list[TraceHit] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)  # for a trace id: the requests followed (_check_follow)

    def __bool__(self) -> bool:
        return bool(self.hits)

    @property
    def services(self) -> list[str]:
        """The services the request went through, in order of first appearance."""
        return list(dict.fromkeys(h.service for h in self.hits))


def _lines_with(data: bytes | mmap.mmap, needle: bytes) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` for every line of ``data`` that contains ``needle`` (each line once)."""
    pos = data.find(needle)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        if end < 0:
            end = len(data)
        yield start, bytes(data[start:end])
        pos = data.find(needle, end)


def _hit(service: str, file: str, offset: int, raw: bytes, request_id: str, now: float) -> TraceHit | None:
    line = raw.rstrip(b"\r").decode("utf-8", "replace")
    if not carries_id(line, request_id):
        return None
    record: dict[str, Any] | None = None
    if line.startswith("{"):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        record = value if isinstance(value, dict) else None
    if record is not None:
        ts = record.get("timestamp")
        t = parse_time(ts, now, anywhere=False) if isinstance(ts, str) else None
        level = record.get("level") if isinstance(record.get("level"), str) else None
        message = str(record.get("message", ""))
    else:
        t, level, message = parse_time(line, now), detect_level(line), line
    return TraceHit(service, file, offset, t, level, message, record, line)


def _search_file(path: Path, compressed: bool, needle: bytes) -> Iterator[tuple[int, bytes]]:
    fd, st = open_log(path)
    try:
        if compressed:
            with os.fdopen(os.dup(fd), "rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
                offset = 0
                for line in gz:
                    if needle in line:
                        yield offset, line.rstrip(b"\n")
                    offset += len(line)
            return
        if st.st_size == 0:
            return
        with mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ) as data:
            yield from _lines_with(data, needle)
    finally:
        os.close(fd)


def trace(root: Path, request_id: str, services: Sequence[str] | None = None, *, now: float | None = None) -> Trace:
    """Every record carrying ``request_id`` under ``root``, merged by time.

    ``services``: the directories to search; None searches every service directory under ``root`` (a request may
    pass through services that are not among the audited six, e.g. a backend). Raises ValueError for an id that
    cannot be one (the gateway's ids are ``[A-Za-z0-9._:-]``, at most 128 characters).
    """
    if not _VALID_ID.match(request_id):
        raise ValueError(f"request id {request_id!r} cannot be one: ids are 1-128 characters of [A-Za-z0-9._:-] "
                         "(as the gateway's X-Request-ID)")
    now = time.time() if now is None else now
    result = Trace(request_id)
    if services is None:
        try:
            names = sorted(e.name for e in os.scandir(root) if e.is_dir() and _SERVICE_DIR.match(e.name))
        except OSError as exc:
            result.skipped.append(f"{root}: {describe_os_error(exc)}")
            return result
    else:
        names = list(services)
    needle = request_id.encode()
    ordered: list[tuple[float, int, int, TraceHit]] = []
    for rank, service in enumerate(names):
        listing = list_service_files(root / service, service)
        for lp in listing.files or ():
            try:
                found = [h for off, raw in _search_file(lp.path, lp.compressed, needle)
                         if (h := _hit(service, lp.name, off, raw, request_id, now)) is not None]
            except NotAuditable as exc:
                result.skipped.append(f"{lp.path} {exc}")
                continue
            except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                result.skipped.append(f"{lp.path} cannot be read ({exc})")
                continue
            # A line without a time of its own sorts with the record before it (or after it, at the start).
            known = [h.time for h in found if h.time is not None]
            carry = known[0] if known else lp.mtime
            for hit in found:
                carry = hit.time if hit.time is not None else carry
                hit.order = (carry, rank, hit.offset)
                ordered.append((carry, rank, hit.offset, hit))
    ordered.sort(key=lambda item: item[:3])
    result.hits = [item[3] for item in ordered]
    return result
