"""Lines built from the level grammar's data (``mlops_logging._levels``), for the property tests of both matchers.

Everything here walks ``_levels.marker_formats()`` and ``_levels.TOKENS``, so a new format entry is in every generated
test without a test edit: its literals and classes join the pieces, its prefix the well-formed lines, its examples the
lines that get cut and mutated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from hypothesis import strategies as st

from mlops_logging import _levels as lv
from mlops_logging import _pattern as pt
from mlops_logging._level_map import LEVELS

#: Bytes no format uses, which any line may still hold (tab, UTF-8, invalid UTF-8).
OTHER_BYTES = [b"x", b"\t", b"\xc3\xa9", b"\xff", b" ", b"  "]


def reference_level(line: bytes, line_re: re.Pattern[bytes] = lv.LINE_RE_B,
                    token_levels: Mapping[str, str] = lv.TOKEN_LEVELS) -> int:
    """What the Python grammar (``line_re``, default ``_levels.LINE_RE_B``) says of one line: level index, -2
    indented/empty, -1 no marker (``line_level``'s contract in the C extension)."""
    match = line_re.match(line)
    if match is not None:
        return LEVELS.index(token_levels[lv.marker_token(match).decode()])
    if not line or line[:1].decode("latin-1") in lv.INDENT:
        return -2
    return -1


def marker_regex(formats: Sequence[lv.Format], tokens: Sequence[lv.Tokens]) -> tuple[re.Pattern[bytes], dict[str, str]]:
    """The per-line regex and the token -> level map that other grammar data builds (as levels builds its own)."""
    return re.compile(lv.marker_patterns(formats, tokens)[0].encode(), re.ASCII), lv.token_levels(tokens)


def _nodes(node: pt.Node) -> list[pt.Node]:
    found = [node]
    for child in getattr(node, "items", ()) or getattr(node, "options", ()):
        found += _nodes(child)
    return found


def _marker_nodes() -> list[pt.Node]:
    nodes: list[pt.Node] = []
    for entry in lv.marker_formats():
        nodes += _nodes(entry.prefix)
    for kind in lv.TOKENS:
        nodes += _nodes(kind.after) + [pt.Lit(key) for key in kind.levels]
        nodes += [pt.chars(kind.key_end)] if kind.key_end else []
    return nodes


def _class_samples(node: pt.Chars) -> list[str]:
    """The first and last character of each range of the class, and the characters just outside them."""
    codes = sorted(map(ord, node.chars))
    out: set[int] = set()
    for index, code in enumerate(codes):
        if index == 0 or codes[index - 1] != code - 1:
            out |= {code, code - 1}
        if index == len(codes) - 1 or codes[index + 1] != code + 1:
            out |= {code, code + 1}
    return [chr(code) for code in sorted(out) if 0 <= code < 128 and code != 10]


def pieces() -> list[bytes]:
    """Pieces of every alternative of the marker grammar, valid and almost valid, so that random concatenations reach
    the backtracking corners: each literal and its proper prefixes, each class's edge characters, runs of a class
    member at and around the repeat bounds, each token key with and without its ``after``."""
    found: set[bytes] = set()
    for node in _marker_nodes():
        if isinstance(node, pt.Lit):
            found |= {node.text[:k].encode() for k in range(1, len(node.text) + 1)}
        elif isinstance(node, pt.Chars):
            samples = _class_samples(node)
            found |= {ch.encode() for ch in samples}
            member = node.chars[len(node.chars) // 2]
            bounds = {node.lo - 1, node.lo, node.lo + 1}
            if node.hi is not None:
                bounds |= {node.hi - 1, node.hi, node.hi + 1}
            found |= {member.encode() * k for k in bounds if 0 < k <= 130}
    for entry in lv.marker_formats():
        for example in entry.examples:
            found.add(example.encode()[: len(example) // 2])
    return sorted(found) + OTHER_BYTES


def matching(node: pt.Node) -> st.SearchStrategy[bytes]:
    """Strings ``node`` matches (runs drawn at their bounds and just inside them)."""
    if isinstance(node, pt.Lit):
        return st.just(node.text.encode())
    if isinstance(node, pt.Chars):
        hi = node.lo + 4 if node.hi is None else node.hi
        lengths = st.sampled_from(sorted({node.lo, min(node.lo + 1, hi), max(hi - 1, node.lo), hi}))
        member = st.sampled_from(node.chars).map(str.encode)
        return lengths.flatmap(lambda k: st.lists(member, min_size=k, max_size=k).map(b"".join))
    if isinstance(node, pt.Seq):
        return st.tuples(*map(matching, node.items)).map(b"".join) if node.items else st.just(b"")
    if isinstance(node, pt.Alt):
        return st.one_of(*map(matching, node.options))
    raise TypeError(f"{type(node).__name__} is not part of the marker grammar")


def tokens() -> st.SearchStrategy[bytes]:
    """A level token with what must follow it."""
    choices = []
    for kind in lv.TOKENS:
        key_end = matching(pt.chars(kind.key_end)) if kind.key_end else st.just(b"")
        choices.append(st.tuples(st.sampled_from(sorted(kind.levels)).map(str.encode), key_end, matching(kind.after))
                       .map(b"".join))
    return st.one_of(*choices)


def marked_lines() -> st.SearchStrategy[bytes]:
    """Well-formed marked lines of every format (prefix, token, anything), the bare one included."""
    prefixes = st.one_of(*(matching(entry.prefix) for entry in lv.marker_formats()))
    rest = st.lists(st.sampled_from(pieces()), max_size=4).map(b"".join)
    return st.tuples(prefixes, tokens(), rest).map(b"".join)


def grammar_lines() -> st.SearchStrategy[bytes]:
    """Random concatenations of grammar pieces."""
    return st.lists(st.sampled_from(pieces()), max_size=12).map(b"".join)


def examples() -> list[bytes]:
    """Every format's example lines."""
    return [example.encode() for entry in lv.marker_formats() for example in entry.examples]


def mutations(line: bytes) -> list[bytes]:
    """The line cut at every length, and with each of its first 48 bytes replaced by a digit, a space, a letter and
    each separator character the grammar uses."""
    separators = sorted({ch for node in _marker_nodes() if isinstance(node, pt.Lit) for ch in node.text
                         if not ch.isalnum()} | {"0", " ", "x"})
    out = [line[:k] for k in range(len(line) + 1)]
    for k in range(min(len(line), 48)):
        for ch in separators:
            out.append(line[:k] + ch.encode() + line[k + 1 :])
    return out
