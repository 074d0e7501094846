"""The framer's fast path: the record heads both of its implementations put around each line, and its pure-Python
implementation, the twin of the C extension's ``render_lines`` (``_speedups``) for an install without a C compiler or
with ``MLOPS_LOG_SPEEDUPS=0`` (MarkupSafe's ``_native`` beside its ``_speedups``).

A chunk of complete lines without special cases is rendered in a handful of C-level passes from Python: one regex
``findall`` for the levels (or a single ``count`` when every line starts with the same marker), one ``orjson.dumps``,
``replace``/``split``/``join``. The bytes are those of the C path and of the framer's exact path (the property tests
feed all three and compare).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson

from . import _levels as _lv
from ._level_map import LEVELS
from ._render import TEXT_SPECIAL_ASCII, TEXT_SPECIAL_UTF8, escape_lines, render_json, text_head

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PythonLines", "RecordHeads"]

_CONT = -1  #: an indented or empty line: it has the level of the line before it
#: ``CHUNK_RE_B.findall`` item -> level index (no marker: the unmarked level) or :data:`_CONT`.
_CHUNK_LEVELS: dict[bytes, int] = {
    key: _CONT if level == _lv.CONTINUATION else LEVELS.index(level or _lv.UNMARKED_LEVEL)
    for key, level in _lv.CHUNK_KEYS.items()
}
_TOKEN_LEVELS_B = {token.encode(): LEVELS.index(level) for token, level in _lv.TOKEN_LEVELS.items()}
_TB_NEEDLE = _lv.TRACEBACK_NEEDLE.encode()
_WARNING_NEEDLE = _lv.WARNING_NEEDLE.encode()
# Stand-ins rendered once to cut the record heads out of a real record (see RecordHeads).
_TS_MARK, _LEVEL_MARK, _MESSAGE_MARK = "\x00ts\x00", "\x00level\x00", "\x00message\x00"
_TS_MARK_B, _LEVEL_MARK_B = orjson.dumps(_TS_MARK)[1:-1], orjson.dumps(_LEVEL_MARK)[1:-1]


class RecordHeads:
    """What the fast paths put around each line: the record head of each level (``LEVELS`` order) for a timestamp,
    and the tail. JSON: cut out of a record of the one builder rendered by the one renderer (the head up to the
    message's opening quote with a timestamp and a level to fill in, the tail after its closing quote), so they cannot
    drift from the exact path; text: ``_render.text_head`` and a newline."""

    def __init__(self, record: Callable[[str, str, str], dict[str, Any]], *, json: bool, stream: str) -> None:
        self._json = json
        self._stream = stream
        marked = render_json(record(_TS_MARK, _LEVEL_MARK, _MESSAGE_MARK))
        self._json_head, _, json_tail = marked.partition(orjson.dumps(_MESSAGE_MARK)[1:-1])
        self.tail = json_tail if json else b"\n"
        self._ts = ""
        self._heads: tuple[bytes, ...] = ()

    def at(self, ts: str) -> tuple[bytes, ...]:
        """The heads for timestamp ``ts`` (made once per timestamp)."""
        if ts != self._ts:
            if self._json:
                head = self._json_head.replace(_TS_MARK_B, ts.encode())
                self._heads = tuple(head.replace(_LEVEL_MARK_B, lv.encode()) for lv in LEVELS)
            else:
                self._heads = tuple(text_head(ts, lv, self._stream).encode() for lv in LEVELS)
            self._ts = ts
        return self._heads


def _has_long_line(body: bytes, max_line_bytes: int) -> bool:
    """Whether a line of ``body`` (complete lines) is longer than ``max_line_bytes``, in O(len / max) searches."""
    size = len(body)
    pos = 0
    while size - pos > max_line_bytes + 1:
        newline = body.rfind(b"\n", pos, pos + max_line_bytes + 1)
        if newline < 0:
            return True
        pos = newline + 1
    return False


class PythonLines:
    """``render_lines`` of one stream, with the one piece of state the C path needs not: whether the next chunk tries
    the one-prefix test (chunks of mixed lines try it only every 8th time)."""

    def __init__(self) -> None:
        self._try_prefix = True
        self._mixed_chunks = 0

    def render_lines(self, body: bytes | memoryview, json: bool, heads: tuple[bytes, ...], tail: bytes,
                     prev_level: int, max_line_bytes: int, pending: bytes = b"") -> tuple[bytes, int, int] | None:
        """As ``_speedups.render_lines``: each complete line of ``pending + body`` as ``heads[level]`` + the escaped
        line + ``tail`` (``prev_level``: the level of the line before the chunk); ``(rendered, lines, last level)``.

        None when the chunk has anything the exact path must see (ESC, a lone CR, DEL, invalid UTF-8, a line longer
        than ``max_line_bytes``, a traceback or warnings header); the framer then takes that path.
        """
        body = pending + body if pending else bytes(body)  # (bytes(a bytes object) is that object)
        # ESC and CR are cleaned from messages (the record then keeps raw_b64; in JSON a CRLF may also end a line of a
        # vLLM multi-line message, which the exact path groups); DEL is the JSON rendering's own marker below.
        if b"\x1b" in body or b"\x7f" in body or b"\r" in body or _has_long_line(body, max_line_bytes):
            return None
        classified = self._levels(body, prev_level)
        if classified is None:
            return None
        single, items, level_of, count = classified
        pick: Callable[[Any], bytes] | None
        if single is not None:
            pick = None
            last = single
        elif level_of is None:
            pick = dict(enumerate(heads)).__getitem__  # (dict: a C method; tuple: a slot wrapper, 3% here)
            last = items[-1]
        else:
            pick = {key: heads[level] for key, level in level_of.items()}.__getitem__
            last = level_of[items[-1]]
        rendered = (_json_lines if json else _text_lines)(body, heads, tail, single, map(pick, items) if pick else (),
                                                          count)
        if rendered is None:
            return None
        return rendered, count, last

    def _levels(self, body: bytes, prev_level: int) -> tuple[int | None, list[Any], dict[bytes, int] | None,
                                                             int] | None:
        """The level of each line: ``(single, [], None, count)`` when all have one level; else ``(None, keys,
        level_of, count)``: each line's ``CHUNK_RE_B`` key and the level of each key (so a line's head is one lookup
        of its key), or with indented or empty lines ``(None, levels, None, count)``. None for a chunk that may hold
        a traceback or a warnings header.

        Fast case: every line starts with the same marker prefix as the first one (``(APIServer pid=1) INFO ``,
        ``INFO:``, ``2026/11/26 08:19:10 INFO ``): one count. A line starting with that prefix has that level whatever
        follows (the marker grammar decides within the prefix)."""
        first = _lv.LINE_RE_B.match(body, 0, body.find(b"\n")) if self._try_prefix else None
        # (The match ends after the token's `after`, so every byte the marker grammar looked at is in the prefix.)
        if first is not None and body.count(b"\n" + body[: first.end()]) == body.count(b"\n") - 1:
            return _TOKEN_LEVELS_B[_lv.marker_token(first)], [], None, body.count(b"\n")
        # Not one prefix: try again only every 8th chunk, as long as chunks are mixed.
        self._try_prefix = self._mixed_chunks % 8 == 7
        self._mixed_chunks += 1
        keys = _lv.CHUNK_RE_B.findall(b"\n" + body)
        keys.pop()
        kinds = set(keys)
        if not kinds <= _lv.TOKEN_KEYS:  # unmarked, indented or empty lines: tracebacks, warnings headers?
            if _TB_NEEDLE in body or _WARNING_NEEDLE in body:
                return None
        table = _CHUNK_LEVELS
        level_of = {key: table[key] for key in kinds}
        distinct = set(level_of.values())
        if _CONT in distinct:
            levels = list(map(table.__getitem__, keys))
            prev = prev_level
            for index, level in enumerate(levels):
                if level == _CONT:
                    levels[index] = prev
                else:
                    prev = level
            return None, levels, None, len(keys)
        if len(distinct) == 1:
            return distinct.pop(), [], None, len(keys)
        return None, keys, level_of, len(keys)


def _json_lines(body: bytes, heads: tuple[bytes, ...], tail: bytes, single: int | None, line_heads: Iterable[bytes],
                count: int) -> bytes | None:
    """JSON: the chunk escaped by one ``orjson.dumps`` (its newlines as DEL, which orjson leaves as is), then cut at
    them; None for invalid UTF-8."""
    try:
        text = body.replace(b"\n", b"\x7f").decode()
    except UnicodeDecodeError:
        return None
    inner = orjson.dumps(text)[1:-2]
    if single is not None:
        head = heads[single]
        return head + inner.replace(b"\x7f", tail + head) + tail
    seq = [tail] * (3 * count)
    seq[0::3] = line_heads
    seq[1::3] = inner.split(b"\x7f")
    return b"".join(seq)


def _text_lines(body: bytes, heads: tuple[bytes, ...], tail: bytes, single: int | None, line_heads: Iterable[bytes],
                count: int) -> bytes | None:
    """Text: the chunk escaped at once when it holds anything the escaper takes; None for invalid UTF-8."""
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return None
        needs_escape = any(special in body for special in TEXT_SPECIAL_UTF8)
    else:
        needs_escape = False
    if needs_escape or len(body.translate(None, TEXT_SPECIAL_ASCII)) != len(body):
        body = escape_lines(body.decode()).encode()
    if single is not None:
        head = heads[single]
        return head + body[:-1].replace(b"\n", tail + head) + tail
    seq = [tail] * (3 * count)
    seq[0::3] = line_heads
    seq[1::3] = body[:-1].split(b"\n")
    return b"".join(seq)
