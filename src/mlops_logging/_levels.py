"""Level detection for one line of a server's output (vLLM, uvicorn, MLflow, gunicorn, Python logging, warnings, glog).

Only *structural* markers count: a level word in the position a known format puts it (``INFO:     ...``,
``(APIServer pid=1) WARNING 11-26 ...``, ``[...] [123] [ERROR] ...``), a glog/c10 letter (``[W1126 08:17:04.84 ...]``)
or a Python ``warnings`` header (``/path/x.py:12: DeprecationWarning: ...``). A line that merely mentions "error" has
no level.

The grammar is written once, below, as data: the level words (:data:`TOKENS`), each server's prefix
(:data:`FORMATS`), the warnings header, the traceback markers and vLLM's multi-line header, built from the
primitives of :mod:`._pattern` (``Lit``, ``Chars``, ``Seq``, ``Alt``). Every regex of this module is built from that
data, and the C extension's matcher is generated from the same data by ``scripts/gen_grammar.py`` into ``_grammar.h``
(``make grammar``; a test fails when the committed header is stale). Both sides try the alternatives in the order the
data lists them and repeat classes as re does (greedy: longest first; lazy: shortest first), so they agree by
construction; the property tests check it on lines built from the same data.

Supporting a new server's format: one :class:`Format` appended to :data:`FORMATS`, one real sample line in
``tests/fixtures/``, one test case in ``tests/unit/test_levels.py``, then ``make grammar`` (see ``CLAUDE.md``).

Traceback helpers recognise the structure of a Python traceback: its first line, body lines and final exception line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ._level_map import LEVELS
from ._pattern import (
    DIGITS,
    LINE_END,
    LINE_START,
    Alt,
    Chars,
    Frozen,
    Group,
    Lit,
    Node,
    Repeat,
    Seq,
    alt,
    chars,
    class_regex,
    digits,
    lit,
    nullable,
    opt,
    regex_part,
    seq,
    span,
    to_regex,
    walk,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import AnyStr

__all__ = [
    "detect_level",
    "is_chain_marker",
    "is_exception_line",
    "is_traceback_body",
    "is_traceback_start",
    "line_key_level",
    "marker_token",
]

# --- the grammar ------------------------------------------------------------------------------------------------------

LETTERS = span("A", "Z") + span("a", "z")
PRINTABLE = span(" ", "~")

#: Level words in marker position, and the level each names.
LEVEL_WORDS: dict[str, str] = {
    "DEBUG": "DEBUG",
    "TRACE": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
}
#: glog / PyTorch c10 severity letters, and the level each names.
GLOG_LETTERS: dict[str, str] = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "CRITICAL"}
#: What a line without any marker is.
UNMARKED_LEVEL = "INFO"
#: First characters of a line that continues the one before (indented); an empty line continues it too.
INDENT = " \t"

TIME = seq(digits(2), lit(":"), digits(2), lit(":"), digits(2))  # 08:19:10
FRACTION = opt(chars(".,"), chars(DIGITS, 1, 9))  # ,123 / .123456789
ISO_DATE = seq(digits(4), lit("-"), digits(2), lit("-"), digits(2))  # 2026-11-26
#: vLLM's process tag (also Ray's worker prefix): "(APIServer pid=6892) ", "(EngineCore_DP0 pid=7) ".
VLLM_TAG = seq(lit("("), chars(PRINTABLE.replace("(", "").replace(")", ""), 1, 128), lit(") "))


class Tokens(Frozen):
    """One kind of level token: a key of ``_levels`` (plus one of ``key_end`` when given), then ``after``.

    Keys are tried in the order listed, except that a key is tried before any key it starts with (WARNING before
    WARN). Every key is at least two characters (the framer's chunk regex tells a key from a line's first byte).
    """

    __slots__ = ("name", "levels", "after", "key_end")
    name: str
    levels: Mapping[str, str]
    after: Node
    key_end: str

    def __init__(self, name: str, levels: Mapping[str, str], after: Node, key_end: str = "") -> None:
        self._set(name=name, levels=levels, after=after, key_end=key_end)


#: The level tokens, tried in this order after a prefix.
TOKENS: tuple[Tokens, ...] = (
    # "INFO:     ", "INFO mlflow...", "[INFO]", "INFO:root:"
    Tokens("level word", LEVEL_WORDS, after=chars(" :]")),
    # "[W1126 08:17:04.841561457 utils.cpp:68] ...", "I1126 08:17:04.841561  12 file.cc:3] ...": the letter and the
    # first digit of the month are the key.
    Tokens("glog letter", GLOG_LETTERS, key_end=DIGITS,
           after=seq(digits(3), lit(" "), TIME, lit("."), chars(DIGITS, 6, 9), lit(" "))),
)


class Format(Frozen):
    """One server's way of writing what comes before the level token, with lines of it (``examples``)."""

    __slots__ = ("name", "prefix", "examples")
    name: str
    prefix: Node
    examples: tuple[str, ...]

    def __init__(self, name: str, prefix: Node, examples: tuple[str, ...] = ()) -> None:
        self._set(name=name, prefix=prefix, examples=examples)


#: What may come before the level token, tried in this order (a prefix must match at least one character). After
#: all of them the token itself may start the line: :data:`BARE`.
FORMATS: tuple[Format, ...] = (
    Format("vLLM process tag", VLLM_TAG, (
        "(APIServer pid=6892) INFO 11-26 08:16:47 [api_server.py:1204] Starting vLLM API server",
        "(EngineCore_DP0 pid=7) WARNING 11-26 08:16:48 [core.py:66] x",
    )),
    Format(
        "date-time, then 1-2 spaces or ' - name - ' (MLflow, Python asctime, RFC 3339 as Rust tracing writes it)",
        seq(digits(4), chars("-/"), digits(2), chars("-/"), digits(2), chars(" T"), TIME, FRACTION,
            opt(alt(lit("Z"), seq(chars("+-"), digits(2), opt(lit(":")), digits(2)))),
            alt(chars(" ", 1, 2), seq(lit(" - "), chars(PRINTABLE, 1, 64, lazy=True), lit(" - ")))),
        (
            "2026/11/26 08:19:10 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
            "2026/11/26 08:19:24 INFO:     127.0.0.1:49486 - \"POST /api HTTP/1.1\" 200 OK",
            "2026-11-26 08:16:47,123 - vllm.engine - CRITICAL - boom",
            "2026-11-26T08:16:47.123456789+00:00  DEBUG x",
        ),
    ),
    Format(
        "gunicorn",
        seq(lit("["), ISO_DATE, chars(" T"), TIME, FRACTION, opt(alt(seq(opt(lit(" ")), chars("+-"), digits(4)),
                                                                      lit("Z"))),
            lit("] ["), chars(DIGITS, 1, None), lit("] [")),
        ("[2026-11-26 08:19:10 +0000] [123] [INFO] Booting worker with pid: 123",),
    ),
    Format("a bracket (PyTorch c10 glog, [LEVEL])", lit("["), (
        "[W1126 08:17:04.841561457 utils.cpp:68] Warning: could not find ITT",
        "[ERROR] x",
    )),
    Format("Ray (ray.init() and Ray's loggers: '%(asctime)s\\t%(levelname)s %(filename)s:%(lineno)s -- ...')",
           seq(ISO_DATE, lit(" "), TIME, lit(","), digits(3), lit("\t")), (
               "2026-12-01 23:31:11,290\tWARNING authentication_token_setup.py:85 -- Token authentication is enabled",
           )),
)
#: No prefix: uvicorn ("INFO:     "), Python logging's defaults ("WARNING:root:"), vLLM without its tag, glog.
BARE = Format("no prefix (uvicorn, Python logging, vLLM without its tag, glog)", Seq(()), (
    'INFO:     127.0.0.1:5 - "GET / HTTP/1.1" 200',
    "WARNING:root:slow step 9 took 1.856s",
    "INFO 11-26 08:16:47 [__init__.py:241] Automatically detected platform cpu.",
    "E1126 08:17:04.841561  12 file.cc:3] x",
))

#: The Python warnings module's header: "<file>.py:<line>: <Category>Warning: <message>" (also "sys:1:" and
#: "<frozen x>:12:"). Searched anywhere in a non-indented line: a print without newline may be glued in front of it.
WARNING_NEEDLE = "Warning: "  # the literal every header contains; a chunk without it cannot hold one
IDENTIFIER = seq(chars(LETTERS + "_"), chars(LETTERS + DIGITS + "_", 0, None))
WARNING_HEADER = seq(alt(lit(".py"), seq(LINE_START, lit("sys")), lit(">")), lit(":"), chars(DIGITS, 1, None),
                     lit(": "), IDENTIFIER, lit(WARNING_NEEDLE))

#: A Python traceback starts with one of these lines, whole.
TRACEBACK_NEEDLE = "Traceback (most recent call last):"  # a chunk without it cannot start one
TRACEBACK_STARTS = (TRACEBACK_NEEDLE, "  + Exception Group " + TRACEBACK_NEEDLE, "Exception Group " + TRACEBACK_NEEDLE)
#: The lines Python prints between chained tracebacks.
CHAIN_MARKERS = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
#: The last line of a traceback: "ValueError: bad", "KeyboardInterrupt", "pkg.mod.Error: x", "mod.Error:".
EXCEPTION_LINE = seq(IDENTIFIER, Repeat(seq(lit("."), IDENTIFIER)),
                     opt(lit(":"), opt(lit(" "), Chars("", 0, None, negated=True))), LINE_END)

# vLLM's NewLineFormatter writes a message of several lines (a logged traceback, a config dump) as one output line per
# line of the message, each starting with the same header and all but the last ending in "\r\n":
#   (APIServer pid=1) ERROR 11-26 12:51:15 [async_llm.py:906] AsyncLLM output_handler failed.\r
#   (APIServer pid=1) ERROR 11-26 12:51:15 [async_llm.py:906] Traceback (most recent call last):\r
#: That header; its group is the level name vLLM wrote (one of _level_map.LEVELS).
VLLM_HEADER = seq(opt(VLLM_TAG), Group(alt(*(lit(word) for word, level in LEVEL_WORDS.items() if word == level))),
                  lit(" "), digits(2), lit("-"), digits(2), lit(" "), TIME,
                  lit(" ["), chars("]\n", 1, 256, negated=True), lit("] "))


# --- the marker grammar, assembled ------------------------------------------------------------------------------------


def token_keys(kind: Tokens) -> list[str]:
    """The keys of ``kind`` in the order they are tried: as listed, but before any key that is a prefix of them."""
    order: list[str] = []
    for word in kind.levels:
        at = next((i for i, other in enumerate(order) if word.startswith(other)), len(order))
        order.insert(at, word)
    return order


def marker_formats(formats: Sequence[Format] | None = None) -> tuple[Format, ...]:
    """Every prefix in the order it is tried: ``formats`` (default :data:`FORMATS`), then :data:`BARE` (none)."""
    return (*(FORMATS if formats is None else formats), BARE)


def _key_regex(kind: Tokens) -> str:
    keys = token_keys(kind)
    text = (class_regex("".join(keys)) if all(len(key) == 1 for key in keys)
            else "(?:" + "|".join(to_regex(Lit(key)) for key in keys) + ")")
    return text + (class_regex(kind.key_end) if kind.key_end else "")


def marker_patterns(formats: Sequence[Format] | None = None, tokens: Sequence[Tokens] | None = None) -> tuple[str, str]:
    """The regex texts of the marker grammar: per line (:data:`LINE_RE`) and per chunk (:data:`CHUNK_RE_B`)."""
    formats = FORMATS if formats is None else formats
    tokens = TOKENS if tokens is None else tokens
    check_grammar(formats, tokens)
    prefixes = "(?:" + to_regex(Alt(tuple(entry.prefix for entry in formats))) + ")?"
    line = prefixes + "(?:" + "|".join(f"({_key_regex(kind)}){regex_part(kind.after)}" for kind in tokens) + ")"
    chunk = (r"\n(?:" + prefixes + "(" + "|".join(f"{_key_regex(kind)}(?={to_regex(kind.after)})" for kind in tokens)
             + r"|(?<=\n)[^\n]))?")
    return line, chunk


def _check_marker_node(node: Node, where: str) -> None:
    """The marker grammar is matched on str (cleaned text) and bytes (raw lines, the C path) alike, one line at a time:
    ASCII only, no newline, and only the primitives the C generator compiles."""
    for part in walk(node):
        if not isinstance(part, (Lit, Chars, Seq, Alt)) or isinstance(part, Chars) and part.negated:
            raise ValueError(f"{where}: {part!r} is not allowed in the marker grammar (the C matcher is generated from "
                             "Lit, Chars without negated, Seq and Alt)")
        if isinstance(part, Chars) and not 0 <= part.lo <= (part.lo if part.hi is None else part.hi):
            raise ValueError(f"{where}: {part!r}: a repeat needs 0 <= lo <= hi")
        text = part.text if isinstance(part, Lit) else part.chars if isinstance(part, Chars) else ""
        if not text.isascii() or "\n" in text:
            raise ValueError(f"{where}: {text!r}: the marker grammar is ASCII without newlines")


def check_grammar(formats: Sequence[Format], tokens: Sequence[Tokens]) -> None:
    """Raise ValueError naming the entry when the data cannot be compiled to both regexes and C alike."""
    for entry in formats:
        _check_marker_node(entry.prefix, f"FORMATS[{entry.name!r}]")
        if nullable(entry.prefix):
            raise ValueError(f"FORMATS[{entry.name!r}]: a prefix must match at least one character (BARE, tried "
                             "last, is the empty prefix)")
    for kind in tokens:
        _check_marker_node(kind.after, f"TOKENS[{kind.name!r}].after")
        for key in kind.levels:
            if len(key) + bool(kind.key_end) < 2 or not key.isascii() or "\n" in key:
                raise ValueError(f"TOKENS[{kind.name!r}]: key {key!r} must be 2+ ASCII characters (add key_end)")
        if set(kind.levels.values()) - set(LEVELS):
            raise ValueError(f"TOKENS[{kind.name!r}]: levels must be among {LEVELS}")


def grammar_digest(formats: Sequence[Format] | None = None, tokens: Sequence[Tokens] | None = None) -> str:
    """A digest of what the C matcher is generated from; the extension carries the one of the data it was built from."""
    tokens = TOKENS if tokens is None else tokens
    data = ([entry.prefix for entry in marker_formats(formats)],
            [(dict(kind.levels), kind.key_end, kind.after) for kind in tokens],
            INDENT, UNMARKED_LEVEL, WARNING_NEEDLE, TRACEBACK_STARTS, LEVELS)
    try:  # the builtin hash module: hashlib would load OpenSSL (about 4 ms of logwrap's start) for this one digest
        from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11
    except ImportError:
        from hashlib import sha256
    return str(sha256(repr(data).encode()).hexdigest()[:16])


# --- the regexes, compiled on first use -------------------------------------------------------------------------------
# Compiling them takes a third of logwrap's start-up, and logwrap with the C matcher may never need them (it does on
# its first traceback, escape sequence or warnings header): the module's regex names are looked up here
# (PEP 562) and compiled, all at once, when one of them is first used.

#: Per line (str): the group that matched (``match.lastindex``, see :func:`marker_token`) is the level token; the
#: match ends after the token's ``after``, so a line starting with the matched text has the same marker.
LINE_RE: re.Pattern[str]
#: Same on bytes.
LINE_RE_B: re.Pattern[bytes]
#: Per chunk (bytes): ``findall`` over ``b"\n" + body`` (body ends with b"\n") gives one item per newline: the level
#: token of a marked line, else the first byte of the line (b" "/b"\t": indented), b"" for an empty line; drop the
#: last item. Tokens are 2+ bytes, so they never collide with a first byte.
CHUNK_RE_B: re.Pattern[bytes]
#: vLLM's multi-line header (bytes; group 1: the level name).
VLLM_HEADER_RE_B: re.Pattern[bytes]
_WARNING_RE: re.Pattern[str]
_TB_START: re.Pattern[str]
_EXCEPTION_LINE: re.Pattern[str]
_REGEXES = ("LINE_RE", "LINE_RE_B", "CHUNK_RE_B", "VLLM_HEADER_RE_B", "_WARNING_RE", "_TB_START", "_EXCEPTION_LINE")


def compile_regexes() -> None:
    """Compile the grammar's regexes into the module's names (done on first use of any of them; idempotent)."""
    if "LINE_RE" in globals():
        return
    line, chunk = marker_patterns()
    compiled = {
        "LINE_RE": re.compile(line, re.ASCII),
        "LINE_RE_B": re.compile(line.encode(), re.ASCII),
        "CHUNK_RE_B": re.compile(chunk.encode(), re.ASCII),
        "VLLM_HEADER_RE_B": re.compile(to_regex(VLLM_HEADER).encode()),
        "_WARNING_RE": re.compile(to_regex(WARNING_HEADER), re.ASCII),
        "_TB_START": re.compile(to_regex(seq(alt(*map(lit, TRACEBACK_STARTS)), LINE_END))),
        "_EXCEPTION_LINE": re.compile(to_regex(EXCEPTION_LINE), re.ASCII | re.S),
    }
    line_re = compiled.pop("LINE_RE")
    globals().update(compiled)
    globals()["LINE_RE"] = line_re  # last: its presence means every one is there


def __getattr__(name: str) -> re.Pattern[str] | re.Pattern[bytes]:
    if name in _REGEXES:
        compile_regexes()
        return globals()[name]  # type: ignore[no-any-return]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def token_levels(tokens: Sequence[Tokens] | None = None) -> dict[str, str]:
    """Each level token ``tokens`` (default :data:`TOKENS`) can capture (a key, plus its ``key_end`` character) ->
    level."""
    return {key + end: level for kind in (TOKENS if tokens is None else tokens) for key, level in kind.levels.items()
            for end in (kind.key_end or [""])}


#: Level token (the group of LINE_RE that matched) -> level.
TOKEN_LEVELS: dict[str, str] = token_levels()

#: Marks a line that continues the previous one (indented or empty).
CONTINUATION = "cont"
#: Item of ``CHUNK_RE_B.findall`` -> level, :data:`CONTINUATION` (indented or empty line) or None (no marker).
CHUNK_KEYS: dict[bytes, str | None] = {bytes([byte]): None for byte in range(256)}
CHUNK_KEYS.update({ch.encode(): CONTINUATION for ch in INDENT})
CHUNK_KEYS[b""] = CONTINUATION
CHUNK_KEYS.update({token.encode(): level for token, level in TOKEN_LEVELS.items()})
#: The items of ``CHUNK_RE_B.findall`` that are level tokens.
TOKEN_KEYS = frozenset(token.encode() for token in TOKEN_LEVELS)

#: Digest of the grammar data; the C extension built from ``_grammar.h`` carries the one it was generated from, and the
#: framer uses the extension only when the two are equal.
GRAMMAR_DIGEST = grammar_digest()


def marker_token(match: re.Match[AnyStr]) -> AnyStr:
    """The level token of a :data:`LINE_RE` / :data:`LINE_RE_B` match (``TOKEN_LEVELS`` gives its level)."""
    return match[match.lastindex or 0]


def line_key_level(line: str) -> str | None:
    """Level marked on ``line`` by a structural marker, :data:`CONTINUATION` for indented/empty lines, else None."""
    try:
        match = LINE_RE.match(line)
    except NameError:  # not compiled yet
        compile_regexes()
        match = LINE_RE.match(line)  # noqa: F821 (compiled on first use)
    if match is not None:
        return TOKEN_LEVELS[marker_token(match)]
    if not line or line[0] in INDENT:
        return CONTINUATION
    if WARNING_NEEDLE in line and _WARNING_RE.search(line):  # noqa: F821 (compiled on first use)
        return "WARNING"
    return None


def detect_level(line: str) -> str | None:
    """The level ``line`` carries (DEBUG/INFO/WARNING/ERROR/CRITICAL), or None when it has no structural marker.

    ``line`` is one line without its newline, after ANSI codes and carriage returns were removed.
    """
    level = line_key_level(line)
    return None if level == CONTINUATION else level


# --- Python tracebacks ---------------------------------------------------------------------------------------------

_CHAIN_MARKERS = frozenset(CHAIN_MARKERS)


def is_traceback_start(line: str) -> bool:
    """``Traceback (most recent call last):`` (or the exception-group form) as a whole line."""
    if TRACEBACK_NEEDLE not in line:
        return False
    try:
        return _TB_START.match(line) is not None
    except NameError:  # not compiled yet
        compile_regexes()
        return _TB_START.match(line) is not None  # noqa: F821 (compiled on first use)


def is_chain_marker(line: str) -> bool:
    """The line Python prints between chained tracebacks (``During handling of ...``, ``The above exception ...``)."""
    return line in _CHAIN_MARKERS


def is_traceback_body(line: str) -> bool:
    """A line inside a traceback: indented (``  File ...``, code, ``^^^``), empty, or a chain marker."""
    return not line or line[0] in INDENT or line in _CHAIN_MARKERS


def is_exception_line(line: str) -> bool:
    """The last line of a traceback: ``SomeError: msg``, ``pkg.mod.Error``, ``KeyboardInterrupt``.

    A line carrying a level marker of its own (``INFO:     ...``) is not one: it is another process talking.
    """
    try:
        return _EXCEPTION_LINE.match(line) is not None and LINE_RE.match(line) is None
    except NameError:  # not compiled yet
        compile_regexes()
        return _EXCEPTION_LINE.match(line) is not None and LINE_RE.match(line) is None  # noqa: F821 (compiled on first use)
