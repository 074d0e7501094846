"""Rendering: a record as bytes. The JSON line every file holds, the text layout in-process (:func:`render_text`) and
logwrap's text layouts (:func:`render_stream_text` for a child's line, :func:`render_wrapper_text` for its own),
with the one escaper of the text format (:func:`escape_text`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "TEXT_SPECIAL_ASCII",
    "TEXT_SPECIAL_UTF8",
    "escape_lines",
    "escape_text",
    "render_json",
    "render_stream_text",
    "render_text",
    "render_wrapper_text",
    "text_head",
]

_JSON_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_JSON_STR_KEYS = orjson.OPT_APPEND_NEWLINE


def _default(obj: Any) -> Any:
    """Encode what orjson does not know (exceptions, paths, sets, objects) as their ``str``/``repr``."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        return object.__repr__(obj)


def render_json(record: Mapping[str, Any]) -> bytes:
    """One JSON object and a newline. JSON escaping makes a newline inside a value unable to start a second record."""
    try:
        # Positional arguments and no OPT_NON_STR_KEYS (a third of the cost): the same bytes when every key is a str.
        return orjson.dumps(record, _default, _JSON_STR_KEYS)
    except (TypeError, ValueError):
        pass
    try:
        return orjson.dumps(record, _default, _JSON_OPTS)  # a non-str key somewhere (an int, an enum...)
    except (TypeError, ValueError):
        # Integers past 64 bits, circular structures, lone surrogates...: fall back to strings, never raise.
        return orjson.dumps({str(k): _plain(v) for k, v in record.items()}, default=_default, option=_JSON_OPTS)


def _plain(value: Any) -> Any:
    """``value`` if orjson takes it as is, else its text (with lone surrogates escaped)."""
    if value is None or isinstance(value, (bool, float)) or (isinstance(value, int) and -(2**63) <= value < 2**64):
        return value
    if isinstance(value, str):
        text = value
    else:
        try:
            orjson.dumps(value, default=_default, option=_JSON_OPTS)
            return value
        except (TypeError, ValueError):
            text = str(value) if isinstance(value, int) else _default(value)
            text = text if isinstance(text, str) else repr(text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# The text format's one escaper (render_text here, logwrap's framer in lines): every character str.splitlines() ends a
# line at (\n \r \v \f \x1c-\x1e NEL U+2028 U+2029), the other C0 controls, DEL, the backslash, and the lone
# surrogates U+DC80-U+DCFF that stand for undecodable bytes (surrogateescape). Escapes are unambiguous, so they can be
# undone: \n \r \t \\, \xNN for a control (a character below 0x80) or an undecodable byte (0x80 and up),
# \uNNNN for NEL and the two Unicode separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\\\u2028\u2029\udc80-\udcff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "\x85": "\\u0085", "\u2028": "\\u2028",
            "\u2029": "\\u2029"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code - 0xDC00 if code >= 0xDC00 else code:02x}"


def escape_text(text: str) -> str:
    """Backslash-escape line separators, control characters and backslashes so a text record stays one line."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape_char, text)


#: The escaper on a chunk of lines: everything it escapes but the newlines between them (logwrap's fast path).
_CONTROL_NO_NL = re.compile(r"(?!\n)" + _CONTROL.pattern)
#: The ASCII characters the escaper takes (besides the newline): ``translate`` deletes them to detect them in one pass.
TEXT_SPECIAL_ASCII: bytes = bytes(c for c in range(128) if c != 10 and _CONTROL.match(chr(c)))
#: Its non-ASCII ones in UTF-8 (NEL, U+2028, U+2029; undecodable bytes are escaped by the exact path only).
TEXT_SPECIAL_UTF8: tuple[bytes, ...] = ("\x85".encode(), "\u2028".encode(), "\u2029".encode())


def escape_lines(text: str) -> str:
    """:func:`escape_text` on several lines at once: the newlines between them are kept."""
    return _CONTROL_NO_NL.sub(_escape_char, text)


#: What JSON string escaping leaves as is but a text record must not hold raw (valid JSON escapes).
_JSON_UNESCAPED = {0x7F: "\\u007f", 0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
_JSON_UNESCAPED_RE = re.compile("[\x7f\x85\u2028\u2029]")
_TEXT_FIXED = frozenset({"timestamp", "level", "logger", "message"})
_BARE_VALUE = re.compile(r"[^\s\"=\x00-\x1f\x7f\\]*")


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    elif isinstance(value, (int, float)):
        return str(value)
    else:
        return _json_text(value) if isinstance(value, (dict, list)) else _text_value(_default(value))
    if text and _BARE_VALUE.fullmatch(text):
        return text
    return _json_text([text])[1:-1]  # quoted, every control character escaped, surrogates survive


def _json_text(value: Any) -> str:
    """``value`` as JSON on one line: JSON escapes the C0 controls, the other line separators (and DEL) are escaped
    here (valid JSON escapes too)."""
    text = render_json(value).decode()[:-1]
    return text.translate(_JSON_UNESCAPED) if _JSON_UNESCAPED_RE.search(text) else text


def render_text(record: Mapping[str, Any]) -> bytes:
    """``<timestamp> <LEVEL> <logger>: <message> key=value...`` on exactly one line."""
    logger = record.get("logger") or record.get("service") or "-"
    head = f"{record.get('timestamp', '')} {record.get('level', 'INFO')} {escape_text(str(logger))}: "
    parts = [head, escape_text(str(record.get("message", "")))]
    heads = _key_heads
    for key, value in record.items():
        if key in _TEXT_FIXED:
            continue
        field = heads.get(key)
        if field is None or type(key) is not str:  # (a non-str key is never kept: True would find 1's)
            field = f" {escape_text(str(key))}="
            if len(heads) < 4096 and type(key) is str:  # keys are a small set in practice; never grow without bound
                heads[key] = field
        parts.append(field)
        parts.append(_text_value(value))
    parts.append("\n")
    return "".join(parts).encode("utf-8", "backslashreplace")


_key_heads: dict[str, str] = {}  # a field's escaped " key=" (render_text): escaped once per key, not per record


# --- logwrap's text layout: <timestamp> <LEVEL> [<source>] <line> -----------------------------------------------------


def text_head(timestamp: str, level: str, source: str) -> str:
    """What every logwrap text record starts with: ``<timestamp> <LEVEL> [<source>] `` (a stream, or ``logwrap``)."""
    return f"{timestamp} {level} [{source}] "


def render_stream_text(timestamp: str, level: str, stream: str, message: str, raw_b64: str | None,
                       partial: bool) -> bytes:
    """One line of a child's stream as text: the escaped line, then TAB-separated ``raw_b64=`` and ``partial=true``
    (an escaped line holds no TAB, so no line can forge them)."""
    line = text_head(timestamp, level, stream) + escape_text(message)
    if raw_b64 is not None:
        line += "\traw_b64=" + raw_b64
    return (line + "\tpartial=true\n" if partial else line + "\n").encode("utf-8")


_WRAPPER_FIXED = frozenset({"timestamp", "level", "message", "service", "logger"})


def render_wrapper_text(record: Mapping[str, Any]) -> bytes:
    """A record of logwrap itself as text: ``<timestamp> <LEVEL> [logwrap] <message> key=value...``, one line."""
    parts = [text_head(record["timestamp"], record["level"], "logwrap"), escape_text(str(record["message"]))]
    for key, value in record.items():
        if key not in _WRAPPER_FIXED:
            parts.append(f" {escape_text(str(key))}={_text_value(value)}")
    parts.append("\n")
    return "".join(parts).encode("utf-8", "backslashreplace")

