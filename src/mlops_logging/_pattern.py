"""The primitives the level grammar (``_levels``) is written with, and their regex form.

A pattern is a tree of :class:`Lit`, :class:`Chars`, :class:`Seq` and :class:`Alt` (plus :class:`Group`,
:class:`Repeat` and :class:`Anchor`, which only the Python regexes use). Each primitive means what re gives the regex
:func:`to_regex` writes for it: alternatives are tried in order, a greedy repeat tries its longest run first, a lazy one
its shortest. ``scripts/gen_grammar.py`` compiles the same trees to C with that meaning, which is why the C matcher
and the regexes agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError

__all__ = [
    "Alt", "Anchor", "Chars", "DIGITS", "Frozen", "Group", "LINE_END", "LINE_START", "Lit", "Node", "Repeat", "Seq",
    "alt", "chars", "class_regex", "digits", "lit", "nullable", "opt", "regex_part", "seq", "span", "to_regex", "walk",
]


class Frozen:
    """What the primitives (and ``_levels``' entries) share, as a frozen dataclass has it: immutable, equal and hashed
    by their fields (``__slots__``), shown as ``Name(field=value, ...)`` (that text is part of the grammar's digest).
    Plain classes: making them as dataclasses was about 9% of logwrap's start-up (docs/bench-notes/startup.md)."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{name}={getattr(self, name)!r}' for name in self.__slots__)})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


class Lit(Frozen):
    """The characters of ``text``, in order."""

    __slots__ = ("text",)
    text: str

    def __init__(self, text: str) -> None:
        self._set(text=text)


class Chars(Frozen):
    """One of ``chars`` (with ``negated``: any character but those), ``lo`` to ``hi`` times (``hi=None``: no bound).

    Greedy (the longest run first, then shorter ones, as re's ``{lo,hi}``) or ``lazy`` (the shortest first, re's
    ``{lo,hi}?``).
    """

    __slots__ = ("chars", "lo", "hi", "lazy", "negated")
    chars: str
    lo: int
    hi: int | None
    lazy: bool
    negated: bool

    def __init__(self, chars: str, lo: int = 1, hi: int | None = 1, lazy: bool = False, negated: bool = False) -> None:
        self._set(chars=chars, lo=lo, hi=hi, lazy=lazy, negated=negated)


class Seq(Frozen):
    """Each item after the other."""

    __slots__ = ("items",)
    items: tuple[Node, ...]

    def __init__(self, items: tuple[Node, ...]) -> None:
        self._set(items=items)


class Alt(Frozen):
    """The first of ``options``, in this order, with which the rest of the pattern matches (re's ``a|b``)."""

    __slots__ = ("options",)
    options: tuple[Node, ...]

    def __init__(self, options: tuple[Node, ...]) -> None:
        self._set(options=options)


class Group(Frozen):
    """A capturing group (regex only)."""

    __slots__ = ("item",)
    item: Node

    def __init__(self, item: Node) -> None:
        self._set(item=item)


class Repeat(Frozen):
    """``item`` repeated ``lo`` to ``hi`` times, greedy (regex only)."""

    __slots__ = ("item", "lo", "hi")
    item: Node
    lo: int
    hi: int | None

    def __init__(self, item: Node, lo: int = 0, hi: int | None = None) -> None:
        self._set(item=item, lo=lo, hi=hi)


class Anchor(Frozen):
    """A zero-width position (regex only): :data:`LINE_START` or :data:`LINE_END`."""

    __slots__ = ("regex",)
    regex: str

    def __init__(self, regex: str) -> None:
        self._set(regex=regex)


Node = Lit | Chars | Seq | Alt | Group | Repeat | Anchor
LINE_START = Anchor("^")
LINE_END = Anchor(r"\Z")
DIGITS = "0123456789"


def lit(text: str) -> Lit:
    return Lit(text)


def chars(spec: str, lo: int = 1, hi: int | None = 1, *, lazy: bool = False, negated: bool = False) -> Chars:
    """A class of the characters in ``spec`` (each listed; :func:`span` gives a range)."""
    return Chars("".join(sorted(set(spec))), lo, hi, lazy, negated)


def span(first: str, last: str) -> str:
    """The characters from ``first`` to ``last``, for :func:`chars`."""
    return "".join(map(chr, range(ord(first), ord(last) + 1)))


def seq(*items: Node) -> Seq:
    return Seq(items)


def alt(*options: Node) -> Alt:
    return Alt(options)


def opt(*items: Node) -> Alt:
    """``items`` if they match there, else nothing (re's greedy ``(?:...)?``)."""
    return Alt((seq(*items), Seq(())))


def digits(count: int) -> Chars:
    """Exactly ``count`` digits (``chars(DIGITS, lo, hi)`` for a range)."""
    return chars(DIGITS, count, count)


def walk(node: Node) -> Iterator[Node]:
    """``node`` and every node inside it."""
    yield node
    children: tuple[Node, ...] = ()
    if isinstance(node, Seq):
        children = node.items
    elif isinstance(node, Alt):
        children = node.options
    elif isinstance(node, (Group, Repeat)):
        children = (node.item,)
    for child in children:
        yield from walk(child)


def nullable(node: Node) -> bool:
    """Whether ``node`` can match no character at all."""
    if isinstance(node, Lit):
        return not node.text
    if isinstance(node, Chars):
        return node.lo == 0
    if isinstance(node, Seq):
        return all(map(nullable, node.items))
    if isinstance(node, Alt):
        return any(map(nullable, node.options))
    if isinstance(node, Repeat):
        return node.lo == 0 or nullable(node.item)
    if isinstance(node, Group):
        return nullable(node.item)
    return True


# --- the regex form ---------------------------------------------------------------------------------------------------

_SPECIAL = "\\.^$*+?{}[]|()"
_CLASS_SPECIAL = "\\]^-["


def _char(ch: str, special: str = _SPECIAL) -> str:
    if ch in special:
        return "\\" + ch
    if " " <= ch <= "~":
        return ch
    return {"\t": r"\t", "\n": r"\n", "\r": r"\r"}.get(ch, f"\\x{ord(ch):02x}")


def class_regex(spec: str, negated: bool = False) -> str:
    """A character class (a single character when it has one), ranges of 3+ written ``a-z``."""
    if not negated and len(spec) == 1:
        return _char(spec)
    if negated and not spec:
        return "(?s:.)"
    parts: list[str] = []
    codes = sorted(map(ord, spec))
    start = 0
    while start < len(codes):
        end = start
        while end + 1 < len(codes) and codes[end + 1] == codes[end] + 1:
            end += 1
        run = [_char(chr(code), _CLASS_SPECIAL) for code in codes[start : end + 1]]
        parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else "".join(run))
        start = end + 1
    return "[" + "^" * negated + "".join(parts) + "]"


def _quantifier(lo: int, hi: int | None, lazy: bool) -> str:
    text = {(1, 1): "", (0, 1): "?", (0, None): "*", (1, None): "+"}.get((lo, hi))
    if text is None:
        text = f"{{{lo},}}" if hi is None else f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"
    return text + "?" if lazy and text else text


def _rx(node: Node) -> tuple[str, str]:
    """Regex text of ``node`` and what it is: ``atom`` (may take a quantifier), ``seq`` or ``alt`` (needs a group)."""
    if isinstance(node, Lit):
        return "".join(map(_char, node.text)), "atom" if len(node.text) == 1 else "seq"
    if isinstance(node, Chars):
        quantifier = _quantifier(node.lo, node.hi, node.lazy)
        return class_regex(node.chars, node.negated) + quantifier, "seq" if quantifier else "atom"
    if isinstance(node, Seq):
        texts = [_rx(item) for item in node.items]
        if len(texts) == 1:
            return texts[0]
        return "".join(f"(?:{text})" if kind == "alt" else text for text, kind in texts), "seq"
    if isinstance(node, Alt):
        options = [_rx(option)[0] for option in node.options]
        if len(options) >= 2 and options[-1] == "" and "" not in options[:-1]:  # opt(): (?:...)?
            inner, kind = _rx(node.options[0]) if len(options) == 2 else ("|".join(options[:-1]), "alt")
            return (inner if kind == "atom" else f"(?:{inner})") + "?", "seq"
        return "|".join(options), "alt" if len(options) > 1 else "seq"
    if isinstance(node, Group):
        return f"({_rx(node.item)[0]})", "atom"
    if isinstance(node, Repeat):
        inner, kind = _rx(node.item)
        return (inner if kind == "atom" else f"(?:{inner})") + _quantifier(node.lo, node.hi, False), "seq"
    return node.regex, "seq"


def to_regex(node: Node) -> str:
    """The regex text of ``node``: the same strings, and the same first match, as the primitives' meaning says."""
    return _rx(node)[0]


def regex_part(node: Node) -> str:
    """Regex text of ``node`` that more can follow (an alternation gets a group)."""
    text, kind = _rx(node)
    return f"(?:{text})" if kind == "alt" else text
