"""The one record schema: timestamps, levels, secret redaction and the JSON / text renderers.

Every writer in the package (structlog chain, stdlib handler, logwrap) builds a plain ``dict`` and renders it here, so
all six services produce byte-identical field names and formats.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "LEVELS",
    "REDACTED",
    "REQUIRED_FIELDS",
    "format_timestamp",
    "is_secret_key",
    "level_from_number",
    "normalize_level",
    "redact",
    "render_json",
    "render_text",
]

#: The five levels a record may carry, lowest first.
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Fields every record has, in the order they are written.
REQUIRED_FIELDS: tuple[str, ...] = ("timestamp", "level", "message", "service")
#: What a secret value is replaced with.
REDACTED = "[REDACTED]"

_LEVEL_ALIASES = {
    "WARN": "WARNING",
    "FATAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "ERR": "ERROR",
    "EXCEPTION": "ERROR",
    "TRACE": "DEBUG",
    "NOTSET": "DEBUG",
    "NOTICE": "INFO",
    "MSG": "INFO",
}


def normalize_level(name: str) -> str:
    """Map a level name from any source (``warn``, ``fatal``, ``Info``) to one of :data:`LEVELS`; unknown -> INFO."""
    upper = name.upper()
    if upper in LEVELS:
        return upper
    return _LEVEL_ALIASES.get(upper, "INFO")


def level_from_number(levelno: int) -> str:
    """Map a stdlib level number (including custom ones like 5 or 25) to the nearest level at or below it."""
    if levelno >= 50:
        return "CRITICAL"
    if levelno >= 40:
        return "ERROR"
    if levelno >= 30:
        return "WARNING"
    if levelno >= 20:
        return "INFO"
    return "DEBUG"


# One cached prefix per wall-clock second: strftime is the slow part; the ".mmmZ" suffixes are precomputed.
_ts_cache: tuple[int, str] = (-1, "")
_MS_SUFFIX: tuple[str, ...] = tuple(f".{ms:03d}Z" for ms in range(1000))


def format_timestamp(t: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: ``2026-11-26T08:16:47.123Z``."""
    global _ts_cache
    if t is None:
        t = time.time()
    # Round to microseconds first, then truncate to milliseconds: what datetime.isoformat(timespec="milliseconds") does.
    sec, micros = divmod(round(t * 1_000_000), 1_000_000)
    cached_sec, prefix = _ts_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache = (sec, prefix)
    return prefix + _MS_SUFFIX[micros // 1000]


# --- redaction -----------------------------------------------------------------------------------------------------

# A key is secret when its last word (split on _ - . and spaces) is one of these, so `hf_token` and `x-api-key` are
# secret while `max_tokens`, `prompt_token_ids` or `token_count` (everywhere in an LLM stack) are not.
_SECRET_LAST_WORDS = frozenset(
    {
        "token",
        "password",
        "passwd",
        "pwd",
        "secret",
        "cookie",
        "cookies",
        "authorization",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "passphrase",
        "signature",
    }
)
# `..._key` is secret when the word before it says what kind of key it is.
_SECRET_KEY_QUALIFIERS = frozenset({"api", "private", "access", "secret", "signing", "encryption", "session"})
_WORD_SPLIT = re.compile(r"[_\-.\s]+")
_secret_cache: dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """True when a field named ``key`` holds a secret (``authorization``, ``api_key``, ``hf_token``, ``set-cookie``)."""
    cached = _secret_cache.get(key)
    if cached is not None:
        return cached
    words = [w for w in _WORD_SPLIT.split(key.lower()) if w]
    secret = bool(words) and (
        words[-1] in _SECRET_LAST_WORDS
        or (words[-1] == "key" and len(words) > 1 and words[-2] in _SECRET_KEY_QUALIFIERS)
    )
    if len(_secret_cache) < 4096:  # keys are a small set in practice; never grow without bound
        _secret_cache[key] = secret
    return secret


_SCALARS = frozenset({str, int, float, bool, type(None)})
_plain_keys: set[str] = set()  # keys already known not to be secret: the fast path is one set lookup


def redact(record: dict[str, Any]) -> dict[str, Any]:
    """Replace, in place, the value of every secret-looking key (also inside nested mappings) with ``[REDACTED]``."""
    plain = _plain_keys
    for key, value in record.items():
        if key in plain:
            if type(value) in _SCALARS:
                continue
        elif not isinstance(key, str) or not is_secret_key(key):
            if isinstance(key, str) and len(plain) < 4096:
                plain.add(key)
        else:
            if value is not None:
                record[key] = REDACTED
            continue
        if isinstance(value, Mapping) and value:
            record[key] = redact(dict(value))
    return record


# --- rendering -----------------------------------------------------------------------------------------------------

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


def _escape(text: str) -> str:
    """Backslash-escape line separators, control characters and backslashes so a text record stays one line."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape_char, text)


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
    head = f"{record.get('timestamp', '')} {record.get('level', 'INFO')} {_escape(str(logger))}: "
    parts = [head, _escape(str(record.get("message", "")))]
    for key, value in record.items():
        if key in _TEXT_FIXED:
            continue
        parts.append(f" {_escape(str(key))}={_text_value(value)}")
    parts.append("\n")
    return "".join(parts).encode("utf-8", "backslashreplace")
