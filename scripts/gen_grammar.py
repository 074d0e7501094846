#!/usr/bin/env python3
"""Generate ``src/mlops_logging/_grammar.h``, the C extension's side of the level grammar, from ``_levels.py``'s data.

Usage: ``python scripts/gen_grammar.py`` (``make grammar``) writes the header; ``--check`` exits 1 when the committed
one is stale (``tests/unit/test_grammar.py`` does the same).

The marker grammar (``_levels.marker_formats()`` then ``_levels.TOKENS``) is compiled to C functions in continuation
style: ``grammar_mN(s, n, p)`` matches one suffix of the pattern at position ``p`` of the line ``s[0:n]`` and returns
the level index of the token it ends on, or -1. Each primitive is compiled with the meaning re gives the regex that
``_pattern.to_regex`` writes for it, so the first successful path, and so the token, is the same:

- ``Alt``: the options in their order, the first that lets the rest match wins. A ``switch`` on the next byte skips
  the options that cannot start with it (their FIRST set lacks it), which keeps the order of the others.
- ``Chars``: greedy tries the longest run first and then shorter ones, lazy the shortest first, as re backtracks; when
  the rest cannot start with a byte of the class, only the longest run can succeed and that is all that is tried.
- ``Lit``: the bytes, in order. Token keys come from ``_levels.token_keys`` (the order both sides try them).

Nothing here knows a server format: a new ``_levels.FORMATS`` entry is compiled like the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "src"))  # last: an installed mlops_logging (the venv's, or a test build's) comes first

from mlops_logging import _levels as lv  # noqa: E402
from mlops_logging import _pattern as pt  # noqa: E402
from mlops_logging._level_map import LEVELS  # noqa: E402

HEADER = ROOT / "src" / "mlops_logging" / "_grammar.h"


@dataclass(frozen=True)
class Accept:
    """The end of the pattern: the match succeeded."""


@dataclass(frozen=True)
class Level:
    """``item`` ends the pattern; when it matches, the line has level index ``level`` (a token and its ``after``)."""

    level: int
    item: pt.Node


Item = pt.Node | Accept | Level


def flatten(items: tuple[Item, ...]) -> tuple[Item, ...]:
    """Sequences spliced in, adjacent literals merged: the canonical form a continuation is named by."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, pt.Seq):
            out.extend(flatten(item.items))
        elif isinstance(item, pt.Lit) and out and isinstance(out[-1], pt.Lit):
            out[-1] = pt.Lit(out[-1].text + item.text)
        elif not (isinstance(item, pt.Lit) and not item.text):
            out.append(item)
    return tuple(out)


def class_bytes(node: pt.Chars) -> frozenset[int]:
    listed = frozenset(map(ord, node.chars))
    return frozenset(range(256)) - listed if node.negated else listed


def first(items: tuple[Item, ...]) -> tuple[frozenset[int], bool]:
    """The bytes a match of ``items`` can start with, and whether it can match without consuming any."""
    found: set[int] = set()
    for item in items:
        if isinstance(item, Accept):
            return frozenset(found), True
        if isinstance(item, Level):
            item_first, item_empty = first(flatten((item.item, Accept())))
            found |= item_first
            if not item_empty:
                return frozenset(found), False
            continue
        if isinstance(item, pt.Lit):
            found.add(ord(item.text[0]))
            return frozenset(found), False
        if isinstance(item, pt.Chars):
            found |= class_bytes(item)
            if item.lo > 0:
                return frozenset(found), False
            continue
        if isinstance(item, pt.Alt):
            can_be_empty = False
            for option in item.options:
                option_first, option_empty = first(flatten((option,)))
                found |= option_first
                can_be_empty = can_be_empty or option_empty
            if not can_be_empty:
                return frozenset(found), False
            continue
        raise TypeError(f"{type(item).__name__} is not part of the marker grammar")
    return frozenset(found), True


def c_char(byte: int) -> str:
    ch = chr(byte)
    if ch in "'\\":
        return f"'\\{ch}'"
    return f"'{ch}'" if " " <= ch <= "~" else str(byte)


def c_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~" and ch != "?":  # "?" could start a trigraph
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):03o}")
    return '"' + "".join(out) + '"'


def plain(item: Item) -> pt.Node:
    """``item`` as a pattern node, for the regex shown in a comment."""
    if isinstance(item, Accept):
        return pt.Seq(())
    if isinstance(item, Level):
        return plain(item.item)
    if isinstance(item, pt.Seq):
        return pt.Seq(tuple(map(plain, item.items)))
    if isinstance(item, pt.Alt):
        return pt.Alt(tuple(map(plain, item.options)))
    return item


def comment(items: tuple[Item, ...]) -> str:
    """What the function for ``items`` matches first (its head); the rest is the function it calls."""
    head = items[0]
    if isinstance(head, Accept):
        text = "end of the pattern"
    elif isinstance(head, Level):
        text = f"{pt.to_regex(plain(head))} -> {LEVELS[head.level]}"
    else:
        text = pt.to_regex(plain(head))
    if len(text) > 100:
        text = text[:97] + "..."
    return text.replace("*/", "* /")


class Compiler:
    """Turns pattern suffixes into C functions, each once (a suffix shared by several paths is one function)."""

    def __init__(self) -> None:
        self.names: dict[tuple[Item, ...], str] = {}
        self.functions: list[str] = []
        self.classes: dict[frozenset[int], str] = {}
        self.class_defs: list[str] = []

    def fn(self, items: tuple[Item, ...]) -> str:
        items = flatten(items)
        if items in self.names:
            return self.names[items]
        body = self.body(items)
        name = f"grammar_m{len(self.functions)}"
        self.names[items] = name
        self.functions.append(f"/* {comment(items)} */\nstatic inline int {name}(const unsigned char *s, Py_ssize_t n, "
                              f"Py_ssize_t p) {{\n{body}}}\n")
        return name

    def test(self, node: pt.Chars, expr: str) -> str:
        """C expression: the byte ``expr`` (an int, -1 past the line) is in the class."""
        members = class_bytes(node)
        if members not in self.classes:
            name = f"grammar_c{len(self.classes)}"
            self.classes[members] = name
            ranges: list[tuple[int, int]] = []
            for byte in sorted(members):
                if ranges and ranges[-1][1] == byte - 1:
                    ranges[-1] = (ranges[-1][0], byte)
                else:
                    ranges.append((byte, byte))
            if len(ranges) <= 3:
                terms = [f"c == {c_char(a)}" if a == b else f"(c >= {c_char(a)} && c <= {c_char(b)})"
                         for a, b in ranges]
                body = " || ".join(terms)
            else:
                table = ", ".join("1" if byte in members else "0" for byte in range(256))
                self.class_defs.append(f"static const unsigned char {name}_table[256] = {{{table}}};\n")
                body = f"c >= 0 && {name}_table[c]"
            self.class_defs.append(f"/* {pt.to_regex(pt.Chars(node.chars, 1, 1, False, node.negated))} */\n"
                                   f"static inline int {name}(int c) {{ return {body}; }}\n")
        return f"{self.classes[members]}({expr})"

    def body(self, items: tuple[Item, ...]) -> str:
        head, rest = items[0], items[1:]
        if isinstance(head, Accept):
            return "    (void)s; (void)n; (void)p;\n    return 0;\n"
        if isinstance(head, Level):
            if rest:
                raise TypeError("a Level ends the pattern")
            return f"    return {self.fn((head.item, Accept()))}(s, n, p) >= 0 ? {head.level} : -1;\n"
        if isinstance(head, pt.Lit):
            k = self.fn(rest)
            size = len(head.text.encode())
            if size == 1:
                cond = f"p < n && s[p] == {c_char(ord(head.text))}"
            else:
                cond = f"n - p >= {size} && memcmp(s + p, {c_string(head.text)}, {size}) == 0"
            return f"    if ({cond}) return {k}(s, n, p + {size});\n    return -1;\n"
        if isinstance(head, pt.Chars):
            return self.chars(head, rest)
        if isinstance(head, pt.Alt):
            return self.alt(head, rest)
        raise TypeError(f"{type(head).__name__} is not part of the marker grammar")

    def chars(self, node: pt.Chars, rest: tuple[Item, ...]) -> str:
        k = self.fn(rest)
        lo, hi = node.lo, node.hi
        if lo == hi and lo <= 8:
            tests = "".join(f" && {self.test(node, f's[p + {i}]')}" for i in range(lo))
            return f"    if (n - p >= {lo}{tests}) return {k}(s, n, p + {lo});\n    return -1;\n"
        bound = f"r < {hi} && " if hi is not None else ""
        out = (f"    Py_ssize_t r = 0;\n    while ({bound}p + r < n && {self.test(node, 's[p + r]')}) r++;\n"
               f"    if (r < {lo}) return -1;\n")
        follow, follow_empty = first(rest)
        if not follow_empty and not follow & class_bytes(node):
            # The rest cannot start with a byte of the class: a shorter run leaves one there, so it cannot succeed.
            return out + f"    return {k}(s, n, p + r);\n"
        loop = f"j = {lo}; j <= r; j++" if node.lazy else f"j = r; j >= {lo}; j--"
        return out + (f"    for (Py_ssize_t {loop}) {{\n        int v = {k}(s, n, p + j);\n"
                      f"        if (v >= 0) return v;\n    }}\n    return -1;\n")

    def alt(self, node: pt.Alt, rest: tuple[Item, ...]) -> str:
        options = [flatten((option, *rest)) for option in node.options]
        names = [self.fn(option) for option in options]
        firsts = [first(option) for option in options]
        # For each next byte (-1: end of line), the options that can match there, in their order.
        by_byte: dict[int, tuple[int, ...]] = {
            byte: tuple(i for i, (bytes_, empty) in enumerate(firsts) if empty or byte in bytes_)
            for byte in range(-1, 256)
        }
        groups: dict[tuple[int, ...], list[int]] = {}
        for byte, chosen in by_byte.items():
            groups.setdefault(chosen, []).append(byte)
        default = max(groups, key=lambda chosen: (len(groups[chosen]), -len(chosen)))

        def tries(chosen: tuple[int, ...], indent: str) -> str:
            if not chosen:
                return f"{indent}return -1;\n"
            lines = [f"{indent}if ((v = {names[i]}(s, n, p)) >= 0) return v;\n" for i in chosen[:-1]]
            return "".join(lines) + f"{indent}return {names[chosen[-1]]}(s, n, p);\n"

        declare = "    int v;\n" if any(len(chosen) > 1 for chosen in groups) else ""
        if len(groups) == 1:
            return declare + tries(default, "    ")
        out = [declare, "    switch (p < n ? s[p] : -1) {\n"]
        for chosen, bytes_ in groups.items():
            if chosen == default:
                continue
            labels = [f"case {c_char(byte) if byte >= 0 else -1}:" for byte in bytes_]
            out += ["    " + " ".join(labels[i : i + 8]) + "\n" for i in range(0, len(labels), 8)]
            out.append(tries(chosen, "        "))
        out += ["    default:\n", tries(default, "        "), "    }\n"]
        return "".join(out)


def marker_items(formats: Sequence[lv.Format], tokens: Sequence[lv.Tokens]) -> pt.Alt:
    """The marker grammar as one node: each prefix (BARE last) followed by the tokens, each ending in its level."""
    lv.check_grammar(formats, tokens)
    options: list[Item] = []
    for kind in tokens:
        key_end = (pt.chars(kind.key_end),) if kind.key_end else ()
        for key in lv.token_keys(kind):
            options.append(Level(LEVELS.index(kind.levels[key]), pt.Seq((pt.Lit(key), *key_end, kind.after))))
    token_alt = pt.Alt(tuple(options))  # type: ignore[arg-type]  # Level items are the generator's own
    return pt.Alt(tuple(pt.Seq((entry.prefix, token_alt)) for entry in lv.marker_formats(formats)))


def render(formats: Sequence[lv.Format] | None = None, tokens: Sequence[lv.Tokens] | None = None) -> str:
    """The header for ``formats`` and ``tokens`` (default: _levels.FORMATS and _levels.TOKENS)."""
    formats = lv.FORMATS if formats is None else formats
    tokens = lv.TOKENS if tokens is None else tokens
    compiler = Compiler()
    entry = compiler.fn((marker_items(formats, tokens),))
    enum = ", ".join(f"LV_{level} = {index}" for index, level in enumerate(LEVELS))
    indent = " || ".join(f"(c) == {c_char(ord(ch))}" for ch in lv.INDENT)
    starts = "".join(f"    {{{c_string(text)}, {len(text)}}},\n" for text in lv.TRACEBACK_STARTS)
    return (
        "/* Generated by scripts/gen_grammar.py from mlops_logging/_levels.py (`make grammar`): do not edit.\n"
        " * The level grammar of server output lines, for _speedups.c; tests/unit/test_grammar.py fails when this\n"
        " * file is not what the generator writes from the current data. */\n"
        "#ifndef MLOPS_LOGGING_GRAMMAR_H\n#define MLOPS_LOGGING_GRAMMAR_H\n\n"
        f"/* _levels.GRAMMAR_DIGEST of the data this was generated from (the framer checks it at import). */\n"
        f'#define GRAMMAR_DIGEST "{lv.grammar_digest(formats, tokens)}"\n\n'
        f"/* _level_map.LEVELS */\nenum {{ {enum}, NLEVELS = {len(LEVELS)} }};\n"
        f"/* _levels.UNMARKED_LEVEL: a line without a marker */\n"
        f"#define GRAMMAR_UNMARKED LV_{lv.UNMARKED_LEVEL}\n"
        f"/* _levels.INDENT: the first bytes of a line that continues the one before */\n"
        f"#define GRAMMAR_IS_INDENT(c) ({indent})\n"
        f"/* _levels.WARNING_NEEDLE: every Python warnings header contains it */\n"
        f"static const char GRAMMAR_WARNING_NEEDLE[] = {c_string(lv.WARNING_NEEDLE)};\n"
        f"/* _levels.TRACEBACK_STARTS: whole lines */\n"
        f"static const struct {{\n    const char *text;\n    Py_ssize_t len;\n}} GRAMMAR_TRACEBACK_STARTS[] = {{\n"
        f"{starts}}};\n#define GRAMMAR_N_TRACEBACK_STARTS {len(lv.TRACEBACK_STARTS)}\n\n"
        "/* --- the marker grammar: _levels.LINE_RE " + "-" * 63 + " */\n"
        "\n" + "".join(compiler.class_defs) + "\n" + "\n".join(compiler.functions) + "\n"
        "/* The level index of the structural marker at the start of the line s[0:n], or -1 (_levels.LINE_RE_B). */\n"
        "static int grammar_marker(const unsigned char *s, Py_ssize_t n) { return "
        f"{entry}(s, n, 0); }}\n\n#endif\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed header is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if HEADER.read_text() != text:
            print(f"{HEADER.relative_to(ROOT)} is stale: run `make grammar`", file=sys.stderr)
            return 1
        return 0
    HEADER.write_text(text)
    print(f"wrote {HEADER.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
