"""Level detection for one line of a server's output (vLLM, uvicorn, MLflow, gunicorn, Python logging, warnings, glog).

Only *structural* markers count: a level word in the position a known format puts it (``INFO:     ...``,
``(APIServer pid=1) WARNING 11-26 ...``, ``[...] [123] [ERROR] ...``), a glog/c10 letter (``[W1126 08:17:04.84 ...]``)
or a Python ``warnings`` header (``/path/x.py:12: DeprecationWarning: ...``). A line that merely mentions "error" has
no level. The same marker grammar is compiled twice: per line (:func:`detect_level`) and per chunk (``CHUNK_*`` for
the framer's fast path), so both always agree.

Traceback helpers recognise the structure of a Python traceback: its first line, body lines and final exception line.
"""

from __future__ import annotations

import re

__all__ = [
    "detect_level",
    "is_chain_marker",
    "is_exception_line",
    "is_traceback_body",
    "is_traceback_start",
    "line_key_level",
]

_LEVEL_WORDS = r"DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE"

# What may precede the level word (all optional; printable ASCII only, so that the str and bytes versions of the
# pattern match exactly the same lines):
#   vLLM process tag           "(APIServer pid=6892) " / "(EngineCore_DP0 pid=7) "
#   a date-time (MLflow, Python asctime, ISO/RFC 3339 as in Rust tracing), then 1-2 spaces or " - name - "
#   gunicorn                   "[2026-11-26 08:19:10 +0000] [123] ["
_PREFIX = (
    r"(?:\([ -'*-~]{1,128}\) "
    r"|[0-9]{4}[-/][0-9]{2}[-/][0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]{1,9})?(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
    r"(?: {1,2}| - [ -~]{1,64}? - )"
    r"|\[[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]{1,9})?(?: ?[+-][0-9]{4}|Z)?\]"
    r" \[[0-9]+\] \["
    r")?"
)
# The level token: a level word followed by a space, a colon or "]" ("INFO:     ", "INFO mlflow...", "[INFO]",
# "INFO:root:"), or a glog / PyTorch c10 letter ("[W1126 08:17:04.841561457 utils.cpp:68] ...",
# "I1126 08:17:04.841561  12 file.cc:3] ...").
_WORD = r"(?:" + _LEVEL_WORDS + r")(?=[ :\]])"
_GLOG = r"[IWEF][0-9](?=[0-9]{3} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6,9} )"  # token: letter + first month digit
_MARKER = r"(?:" + _PREFIX[:-1] + r"|\[)?(" + _WORD + r"|" + _GLOG + r")"

#: Per line (str): group 1 is the level token (a word, or a glog letter with one digit).
LINE_RE = re.compile(_MARKER, re.ASCII)
#: Same on bytes.
LINE_RE_B = re.compile(_MARKER.encode(), re.ASCII)
#: Per chunk (bytes): ``findall`` over ``b"\n" + body`` (body ends with b"\n") gives one item per newline: the level
#: token of a marked line, else the first byte of the line (b" "/b"\t": indented), b"" for an empty line; drop the
#: last item. Tokens are 2+ bytes, so they never collide with a first byte.
CHUNK_RE_B = re.compile(
    (r"\n(?:(?:" + _PREFIX[:-1] + r"|\[)?(" + _WORD + r"|" + _GLOG + r"|(?<=\n)[^\n]))?").encode(), re.ASCII
)

# Python warnings module: "<file>.py:<line>: <Category>Warning: <message>" (also "sys:1:" and "<frozen x>:12:").
# Searched anywhere in a non-indented line, because a print without newline may be glued in front of it.
_WARNING_RE = re.compile(r"(?:\.py|^sys|>):[0-9]+: [A-Za-z_][A-Za-z0-9_]*Warning: ", re.ASCII)
#: The literal every warnings header contains; a chunk without it cannot hold one (fast-path test).
WARNING_NEEDLE = "Warning: "

_GLOG_LEVELS = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "CRITICAL"}
_WORD_LEVELS = {
    "DEBUG": "DEBUG",
    "TRACE": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
}
#: Level token (group 1 of LINE_RE) -> level.
TOKEN_LEVELS: dict[str, str] = dict(_WORD_LEVELS)
TOKEN_LEVELS.update({letter + digit: level for letter, level in _GLOG_LEVELS.items() for digit in "0123456789"})

#: Marks a line that continues the previous one (indented or empty).
CONTINUATION = "cont"
#: Item of ``CHUNK_RE_B.findall`` -> level, :data:`CONTINUATION` (indented or empty line) or None (no marker).
CHUNK_KEYS: dict[bytes, str | None] = {bytes([byte]): None for byte in range(256)}
CHUNK_KEYS.update({b" ": CONTINUATION, b"\t": CONTINUATION, b"": CONTINUATION})
CHUNK_KEYS.update({token.encode(): level for token, level in TOKEN_LEVELS.items()})
#: The items of ``CHUNK_RE_B.findall`` that are level tokens.
TOKEN_KEYS = frozenset(token.encode() for token in TOKEN_LEVELS)


def line_key_level(line: str) -> str | None:
    """Level marked on ``line`` by a structural marker, :data:`CONTINUATION` for indented/empty lines, else None."""
    match = LINE_RE.match(line)
    if match is not None:
        return TOKEN_LEVELS[match.group(1)]
    if not line or line[0] in " \t":
        return CONTINUATION
    if WARNING_NEEDLE in line and _WARNING_RE.search(line):
        return "WARNING"
    return None


def detect_level(line: str) -> str | None:
    """The level ``line`` carries (DEBUG/INFO/WARNING/ERROR/CRITICAL), or None when it has no structural marker.

    ``line`` is one line without its newline, after ANSI codes and carriage returns were removed.
    """
    level = line_key_level(line)
    return None if level == CONTINUATION else level


# --- Python tracebacks ---------------------------------------------------------------------------------------------

_TB_START = re.compile(r"(?:  \+ Exception Group )?Traceback \(most recent call last\):\Z|Exception Group Traceback "
                       r"\(most recent call last\):\Z")
#: A chunk without this literal cannot start a traceback (fast-path test).
TRACEBACK_NEEDLE = "Traceback (most recent call last):"
_CHAIN_MARKERS = frozenset(
    {
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)
# "ValueError: bad", "KeyboardInterrupt", "pkg.mod.Error: x", "mod.Error:" (message may be empty).
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::(?: .*)?)?\Z", re.ASCII | re.S)


def is_traceback_start(line: str) -> bool:
    """``Traceback (most recent call last):`` (or the exception-group form) as a whole line."""
    return TRACEBACK_NEEDLE in line and _TB_START.match(line) is not None


def is_chain_marker(line: str) -> bool:
    """The line Python prints between chained tracebacks (``During handling of ...``, ``The above exception ...``)."""
    return line in _CHAIN_MARKERS


def is_traceback_body(line: str) -> bool:
    """A line inside a traceback: indented (``  File ...``, code, ``^^^``), empty, or a chain marker."""
    return not line or line[0] in " \t" or line in _CHAIN_MARKERS


def is_exception_line(line: str) -> bool:
    """The last line of a traceback: ``SomeError: msg``, ``pkg.mod.Error``, ``KeyboardInterrupt``.

    A line carrying a level marker of its own (``INFO:     ...``) is not one: it is another process talking.
    """
    return _EXCEPTION_LINE.match(line) is not None and LINE_RE.match(line) is None
