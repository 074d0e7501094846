"""The record: the one builder every writer uses, the field rules, levels, redaction and the renderers.

Every writer in the package (the structlog chain, the stdlib handler, the FastAPI middleware, the loss records and
notices of the sinks and files, logwrap's own records and its framer's line records) builds its record with
:func:`build_record` and renders it here (:func:`render_json`; the text layouts :func:`render_text` in-process,
:func:`render_stream_text` / :func:`render_wrapper_text` for logwrap), so all six services write the same field
names, order and formats, and every record validates against ``record.schema.json``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._traceparent import is_span_id, is_trace_flags, is_trace_id

__all__ = [
    "LEVELS",
    "LEVEL_NAMES",
    "LEVEL_NUMBERS",
    "METHOD_LEVELS",
    "REDACTED",
    "REQUIRED_FIELDS",
    "RESERVED",
    "RESERVED_FIELDS",
    "TEXT_SPECIAL_ASCII",
    "TEXT_SPECIAL_UTF8",
    "THIS_PROCESS",
    "TYPED_FIELDS",
    "Loss",
    "add_fields",
    "build_record",
    "escape_lines",
    "escape_text",
    "format_timestamp",
    "interpolation_failed",
    "is_secret_abbreviation",
    "is_secret_key",
    "key_words",
    "level_from_number",
    "level_named",
    "loss_notice",
    "normalize_level",
    "redact",
    "render_json",
    "render_stream_text",
    "render_text",
    "render_wrapper_record",
    "render_wrapper_text",
    "text_head",
    "unrenderable_record",
]

# --- levels: one map for every name and number a level goes by -------------------------------------------------------

#: The five levels a record may carry, lowest first.
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Each level's stdlib ``logging`` number.
LEVEL_NUMBERS: Mapping[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
#: Every name (upper case) a level goes by -> the level: the five; what other tools write (``WARN``, ``FATAL``,
#: syslog's ``NOTICE`` / ``EMERG`` / ``ALERT``, Java's ``SEVERE``...); stdlib's ``NOTSET``; structlog's and stdlib's
#: method names that are not level names (``msg``, ``log``, ``exception``, ``err``).
LEVEL_NAMES: Mapping[str, str] = {
    **{level: level for level in LEVELS},
    "WARN": "WARNING",
    "FATAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "ERR": "ERROR",
    "EXCEPTION": "ERROR",
    "SEVERE": "ERROR",
    "TRACE": "DEBUG",
    "NOTSET": "DEBUG",
    "NOTICE": "INFO",
    "INFORMATION": "INFO",
    "MSG": "INFO",
    "LOG": "INFO",
    "EMERG": "CRITICAL",
    "EMERGENCY": "CRITICAL",
    "ALERT": "CRITICAL",
    "PANIC": "CRITICAL",
}
#: The same names in lower case, as structlog passes its method names (``info``, ``warn``, ``exception``).
METHOD_LEVELS: Mapping[str, str] = {name.lower(): level for name, level in LEVEL_NAMES.items()}
_BY_NUMBER: tuple[tuple[int, str], ...] = tuple(sorted(((n, lv) for lv, n in LEVEL_NUMBERS.items()), reverse=True))
_AT_NUMBER: Mapping[int, str] = {number: level for level, number in LEVEL_NUMBERS.items()}


def level_named(name: str) -> str | None:
    """The level ``name`` stands for in any case (``warn``, ``Fatal``, ``NOTICE``), or None for an unknown name."""
    return LEVEL_NAMES.get(name.upper())


def normalize_level(name: str) -> str:
    """Map a level name from any source (``warn``, ``fatal``, ``Info``) to one of :data:`LEVELS`; unknown -> INFO."""
    return LEVEL_NAMES.get(name.upper(), "INFO")


def level_from_number(levelno: int) -> str:
    """Map a stdlib level number (including custom ones like 5 or 25) to the nearest level at or below it."""
    exact = _AT_NUMBER.get(levelno)
    if exact is not None:
        return exact
    for number, level in _BY_NUMBER:
        if levelno >= number:
            return level
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


_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


#: ``pid=THIS_PROCESS`` asks :func:`build_record` for this process's pid, kept right across ``fork`` without a
#: syscall per record.
THIS_PROCESS = 0


# --- the builder and the field rules ---------------------------------------------------------------------------------

#: Fields every record has, in the order they are written.
REQUIRED_FIELDS: tuple[str, ...] = ("timestamp", "level", "message", "service")
#: Fields the builder sets on every record it builds; a call's or context's field of the same name is kept as
#: ``<name>_`` (``level_``, ``service_``), the way Python spells an argument named like a keyword.
RESERVED_FIELDS: tuple[str, ...] = ("timestamp", "level", "message", "service", "logger", "pid")
#: The same as a set.
RESERVED = frozenset(RESERVED_FIELDS)


def _is_str(value: object) -> bool:
    return type(value) is str


def _is_bool(value: object) -> bool:
    return type(value) is bool


def _is_stream(value: object) -> bool:
    return type(value) is str and value in ("stdout", "stderr")


#: The schema's typed optional fields (``record.schema.json``) -> whether a value fits: a call's field of that name
#: whose value does not fit is kept as ``<name>_`` too, so every record validates.
TYPED_FIELDS: Mapping[str, Callable[[object], bool]] = {
    "stream": _is_stream,
    "request_id": _is_str,
    "exception": _is_str,
    "partial": _is_bool,
    "raw_b64": _is_str,
    # the W3C trace context of the span current where the record was written (_tracecontext)
    "trace_id": is_trace_id,
    "span_id": is_span_id,
    "trace_flags": is_trace_flags,
}
_CHECKED = RESERVED | frozenset(TYPED_FIELDS)


def build_record(level: str, message: str, service: str, logger: str | None, pid: int | None,
                 fields: MutableMapping[str, Any] | None = None, timestamp: str | None = None) -> dict[str, Any]:
    """The record every writer starts from: the required fields, ``logger`` and ``pid`` (left out when None;
    :data:`THIS_PROCESS`: this process's) in the schema's order, then ``fields`` (the call's own data: redacted in
    place, added by :func:`add_fields`' rule). ``timestamp`` defaults to now.
    """
    record: dict[str, Any]
    if logger is not None and pid is not None:  # one literal: the dict is sized once (the in-process writers)
        record = {"timestamp": timestamp or format_timestamp(), "level": level, "message": message, "service": service,
                  "logger": logger, "pid": pid or _pid}
    else:
        record = {"timestamp": timestamp or format_timestamp(), "level": level, "message": message, "service": service}
        if logger is not None:
            record["logger"] = logger
        if pid is not None:
            record["pid"] = pid or _pid
    if fields:
        redact(fields)
        if _CHECKED.isdisjoint(fields):  # add_fields' fast path, without the call
            record.update(fields)
        else:
            add_fields(record, fields)
    return record


def _fits(key: str, value: object) -> bool:
    """Whether a call's field may keep its name: not a reserved one, and of the schema's type if the schema types it."""
    check = TYPED_FIELDS.get(key)
    return key not in RESERVED and (check is None or check(value))


def add_fields(record: dict[str, Any], fields: Mapping[str, Any], *, replace: bool = True) -> dict[str, Any]:
    """Add ``fields`` to ``record`` (which holds the reserved fields); return ``record``.

    A field named like a reserved one, or like a typed field of the schema with a value of another type, is added as
    ``<name>_`` (more underscores if that is taken too), so the real timestamp, level, message, service, logger and
    pid always stay and every record validates. ``replace=False`` keeps a field ``record`` already has instead of
    overwriting it.
    """
    if _CHECKED.isdisjoint(fields) or all(_fits(key, fields[key]) for key in _CHECKED.intersection(fields)):
        if replace:  # the fast path: one C-level scan of the keys (a bound request_id: one type check)
            record.update(fields)
        else:
            for key, value in fields.items():
                record.setdefault(key, value)
        return record
    for key, value in fields.items():
        if not _fits(key, value):
            key = f"{key}_"
            while key in fields or (key in record and replace):
                key += "_"
        if replace or key not in record:
            record[key] = value
    return record


def unrenderable_record(record: Mapping[str, Any], error: BaseException) -> dict[str, Any]:
    """The record that stands in for one that could not be built or rendered: the reserved fields of ``record``
    that are usable, a message naming what failed and ``render_error``. Never raises (both logging paths use it)."""
    detail = f"{type(error).__name__}: {_safe_str(error)}"
    tb = error.__traceback__
    if tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        detail += f" (in {code.co_name}, {code.co_filename}:{tb.tb_lineno})"
    message = record.get("message")
    level = record.get("level")
    timestamp = record.get("timestamp")
    service = record.get("service")
    logger = record.get("logger")
    pid = record.get("pid")
    failed = build_record(
        level if level in LEVELS else "ERROR",
        (f"log record {message!r} could not be rendered: {detail}" if type(message) is str
         else f"log record could not be rendered: {detail}"),
        service if type(service) is str else "unconfigured",
        logger if type(logger) is str else "root",
        pid if type(pid) is int else None,
        timestamp=timestamp if type(timestamp) is str else None,
    )
    failed["render_error"] = detail
    return failed


def interpolation_failed(msg: object, args: object, error: BaseException) -> str:
    """The message of a call whose ``msg % args`` failed (both logging paths): what was given and why it failed."""
    return f"{_safe_repr(msg)} % {_safe_repr(args)} (formatting failed: {type(error).__name__}: {_safe_str(error)})"


def _safe_repr(obj: object) -> str:
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001 - a __repr__ that raises
        return object.__repr__(obj)


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises too
        return object.__repr__(obj)


# --- redaction -----------------------------------------------------------------------------------------------------

# A key is split into lower-case words (on _ - . spaces digits and camelCase: `accessToken`, `APIKey`, `X-Auth-Token`),
# and its last word decides, with the word before it for `token`, `tokens` and `key`: so `hf_token` and `xApiKey` are
# secret while `max_tokens`, `prompt_token_ids` or `token_count` (everywhere in an LLM stack) are not.
#: What a secret value is replaced with.
REDACTED = "[REDACTED]"
_SECRET_LAST_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "pwd",
        "secret",
        "secrets",
        "cookie",
        "cookies",
        "authorization",
        "apikey",
        "apikeys",
        "credential",
        "credentials",
        "creds",
        "auth",
        "passphrase",
        "passphrases",
        "signature",
        "signatures",
        "bearer",
        "jwt",
        "jwts",
    }
)
# `token` names a piece of text, not a credential, after these (`eos_token`, `time_to_first_token`, `page_token`).
_TEXT_TOKEN_QUALIFIERS = frozenset(
    {"bos", "eos", "pad", "unk", "sep", "cls", "mask", "special", "first", "last", "next", "page", "continuation",
     "stop", "prompt", "completion", "input", "output", "generated", "max", "min", "num", "total"}
)
# `tokens` is a count or a list of text tokens (`max_tokens`, `prompt_tokens`) unless it says what kind of credential.
_SECRET_TOKENS_QUALIFIERS = frozenset(
    {"access", "refresh", "api", "auth", "id", "bearer", "session", "oauth", "csrf", "xsrf", "security", "secret",
     "service", "client", "personal", "hf", "github", "gitlab", "slack", "bot", "jwt"}
)
# `..._key(s)` is secret when the word before it says what kind of key it is.
_SECRET_KEY_QUALIFIERS = frozenset(
    {"api", "private", "access", "secret", "signing", "encryption", "session", "client", "master", "admin", "auth",
     "hmac", "license", "subscription"}
)
# In a URL query string these bare names carry credentials too: Google's `key=`, a signed URL's `sig=`, OAuth's
# `code=` (also `auth_code`, `authorization_code`, `device_code`...).
_SECRET_URL_WORDS = frozenset({"key", "keys", "sig", "code"})
_SECRET_CODE_QUALIFIERS = frozenset({"auth", "authorization", "oauth", "device", "user", "verification", "otp"})
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")
_secret_cache: dict[str, bool] = {}
_secret_url_cache: dict[str, bool] = {}


def key_words(key: str) -> list[str]:
    """``key`` as lower-case words: ``"xApiKey"`` -> ``["x", "api", "key"]``, ``"HF_TOKEN_2"`` -> ``["hf", "token"]``.

    Letters only: digits and every other character separate words (and are dropped).
    """
    return [word.lower() for word in _WORDS.findall(key)]


def _secret_words(words: list[str]) -> bool:
    if not words:
        return False
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    if last == "token":
        return before not in _TEXT_TOKEN_QUALIFIERS
    if last in _SECRET_LAST_WORDS:
        return True
    if last == "tokens":
        return before in _SECRET_TOKENS_QUALIFIERS
    if last in ("key", "keys"):
        return before in _SECRET_KEY_QUALIFIERS
    return False


def is_secret_key(key: str, *, in_url: bool = False) -> bool:
    """True when a field named ``key`` holds a secret (``authorization``, ``api_key``, ``accessToken``, ``set-cookie``).

    ``in_url=True`` judges a URL query parameter, where bare ``key``, ``sig`` and ``code`` (OAuth) are secret too.
    """
    cache = _secret_url_cache if in_url else _secret_cache
    cached = cache.get(key)
    if cached is not None:
        return cached
    words = key_words(key)
    secret = _secret_words(words)
    if in_url and not secret and words:
        secret = (words == [words[-1]] and words[-1] in _SECRET_URL_WORDS) or (
            words[-1] == "code" and len(words) > 1 and words[-2] in _SECRET_CODE_QUALIFIERS)
    if len(cache) < 4096:  # keys are a small set in practice; never grow without bound
        cache[key] = secret
    return secret


#: The words that can end a secret key (with the right word before them for `token(s)` and `key(s)`).
_SECRET_ENDINGS = tuple(sorted(_SECRET_LAST_WORDS | {"token", "tokens", "key", "keys"}))


def is_secret_abbreviation(key: str) -> bool:
    """True when ``key`` may be the start of a secret key's name, as argparse accepts an unambiguous start of a long
    option (``--api-k`` for ``--api-key``, ``--hf-tok`` for ``--hf-token``, ``--pass`` for ``--password``): its last
    word completed to a word that ends secret keys makes it secret. A lone word needs 3 letters (``--to`` is not
    judged), and a short last word (``--top-p``) counts only as the start of ``key(s)`` or ``token(s)``, which need
    the word before them (``--api-k``: yes; ``--top-k``, ``--max-tok``: no)."""
    words = key_words(key)
    if key[-1:] in ("-", "_", "."):
        words.append("")  # `--api-`: the next word has begun
    if not words or (len(words) == 1 and len(words[0]) < 3):
        return False
    last, before = words[-1], words[:-1]
    return any(end.startswith(last) and (len(last) >= 3 or end.startswith(("key", "token")))
               and _secret_words([*before, end]) for end in _SECRET_ENDINGS)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_plain_keys: set[str] = set()  # keys already known not to be secret: the fast path is one set lookup


def redact(record: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace, in place, the value of every secret-looking key with ``[REDACTED]``, also inside nested mappings and
    in header lists (``[("authorization", "Bearer x")]``, ASGI's ``[(b"cookie", b"...")]``)."""
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
        if isinstance(value, Mapping):
            if value:
                record[key] = redact(dict(value))
        elif type(value) in (list, tuple) and value and type(value[0]) in (tuple, list) and len(value[0]) == 2:
            record[key] = _redact_pairs(value)
    return record


def _redact_pairs(pairs: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    """Header pairs with the values of secret names replaced; anything that is not a list of pairs as it was."""
    out = []
    changed = False
    for pair in pairs:
        if type(pair) in (tuple, list) and len(pair) == 2:
            name = pair[0]
            if isinstance(name, (bytes, bytearray)):
                name = bytes(name).decode("latin-1")
            if isinstance(name, str) and is_secret_key(name) and pair[1] is not None:
                out.append((pair[0], REDACTED))
                changed = True
                continue
        out.append(pair)
    if not changed:
        return pairs
    return out if type(pairs) is list else tuple(out)


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
    for key, value in record.items():
        if key in _TEXT_FIXED:
            continue
        parts.append(f" {escape_text(str(key))}={_text_value(value)}")
    parts.append("\n")
    return "".join(parts).encode("utf-8", "backslashreplace")


# --- logwrap's text layout: <timestamp> <LEVEL> [<source>] <line> ---------------------------------------------------


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


def render_wrapper_record(*, service: str, level: str, message: str, fmt: str = "json", pid: int | None = None,
                          **fields: Any) -> bytes:
    """A record logwrap itself writes (start, child exit, signals, losses): logger ``logwrap``, the same builder and
    field rules as every record, redacted; JSON, or text (:func:`render_wrapper_text`)."""
    record = build_record(normalize_level(level), message, service, "logwrap", pid, fields)
    return render_json(record) if fmt == "json" else render_wrapper_text(record)


# --- loss records: one shape for every writer ------------------------------------------------------------------------


_Bytes = bytes  # Loss has a field named bytes


@dataclass
class Loss:
    """What could not be written: counts, first and last failure time (wall clock), the last error."""

    records: int = 0
    bytes: int = 0
    first: float = 0.0
    last: float = 0.0
    error: str = ""

    def count(self, data: _Bytes, now: float) -> None:
        """Count ``data`` (whole records; a torn one counts as one) as lost at ``now``."""
        if not self.records:
            self.first = now
        self.records += data.count(b"\n") or 1
        self.bytes += len(data)
        self.last = now


def loss_notice(loss: Loss, path: object, *, cause: str = "could not be written", since: float | None = None,
                late: int = 0, budget: int = 0) -> tuple[str, dict[str, Any]]:
    """The message and fields of the WARNING record that reports ``loss`` (the one shape of every loss record:
    ``lost_records``, ``lost_bytes``, ``lost_since``, ``lost_until``, ``outage_since``, ``error``, ``late_records``).

    ``since``: when the outage began (default: the first loss); ``late``: records held in memory through it, written
    after this record; ``budget``: the memory they were held in (bytes), named when records were lost past it.
    """
    start = format_timestamp(loss.first if since is None else since)
    if loss.records:
        lost = (f"{loss.records} records ({loss.bytes} bytes) lost between {format_timestamp(loss.first)} and "
                f"{format_timestamp(loss.last)}{f' past the {budget}-byte memory budget' if budget else ''}")
    else:
        lost = "no records lost"
    held = f"; {late} records held in memory follow, written late" if late else ""
    fields: dict[str, Any] = {"lost_records": loss.records, "lost_bytes": loss.bytes}
    if loss.records:
        fields["lost_since"] = format_timestamp(loss.first)
        fields["lost_until"] = format_timestamp(loss.last)
    fields.update(outage_since=start, error=loss.error, late_records=late)
    return f"log file write failed: {path} {cause} from {start} ({loss.error}): {lost}{held}", fields
