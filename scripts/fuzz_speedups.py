#!/usr/bin/env python3
"""Fuzz the framer's C extension against the Python paths, a bounded number of iterations (``make test-sanitize``).

Usage: ``python scripts/fuzz_speedups.py [--iterations N] [--seed S]``

Each iteration builds a chunk from the level grammar's pieces (``tests/support/grammar.py``), the bytes the framer
treats specially (ESC, CR, DEL, quotes, controls, line separators, invalid and truncated UTF-8, traceback and warnings
headers, over-long lines) and random bytes, then checks:

- ``_speedups.line_level`` of each line equals the Python grammar's answer (``_levels.LINE_RE_B``);
- the framer's output with the C fast path equals the exact path's, byte for byte, in both formats, fed in random
  pieces with a random ``max_line_bytes``;
- ``render_lines`` called directly with random heads, tail, previous level, bound and buffer type returns None or a
  well-formed result, and refuses bad arguments with the documented exceptions.

With ``--grammars N``, also N random grammars (prefixes drawn from the primitives over a small alphabet, so that
alternatives overlap and repeats must backtrack) are generated to C by ``scripts/gen_grammar.py``, built
(``--cflags``) and run against the regex ``_levels.marker_patterns`` builds from the same data.

Exits 1 at the first difference, printing the seed and the input; 0 after ``--iterations`` clean iterations.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from tests.support import grammar  # noqa: E402

import build_speedups  # noqa: E402
import gen_grammar  # noqa: E402
from mlops_logging import _framer as lines  # noqa: E402
from mlops_logging import _levels as lv  # noqa: E402
from mlops_logging import _pattern as pt  # noqa: E402
from mlops_logging._level_map import LEVELS  # noqa: E402

SPECIAL = [
    b"\x1b[31m", b"\x1b]0;t\x07", b"\r", b"\r\n", b"\x7f", b'"', b"\\", b"\x00", b"\x08", b"\x0c", b"\x0b", b"\x1c",
    b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xff", b"\xe2\x82",
    b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"Traceback (most recent call last):",
    b"  File \"x.py\", line 1",
    b"ValueError: v", b"/a/b.py:3: UserWarning: ", b"  + Exception Group Traceback (most recent call last):",
    b"During handling of the above exception, another exception occurred:", b"\n", b"\n", b"\n", b"\n\n", b"x" * 300,
]


#: Bytes the fast paths escape without handing the chunk over (quotes, backslash, controls, tabs, line separators).
ESCAPED = [b'"', b"\\", b"\x00", b"\x08", b"\x0c", b"\x0b", b"\x1c", b"\t", b"\xc2\x85", b"\xe2\x80\xa8", b"\xc3\xa9"]


def chunk(rng: random.Random, pieces: list[bytes]) -> bytes:
    """Lines of grammar pieces; one chunk in three also gets bytes the exact path must see, and random bytes."""
    special = rng.random() < 0.35
    parts = []
    for _ in range(rng.randint(1, 120)):
        roll = rng.random()
        if roll < 0.2:
            parts.append(b"\n")
        elif roll < 0.75:
            parts.append(rng.choice(pieces))
        elif roll < 0.85:
            parts.append(rng.choice(ESCAPED))
        elif special:
            parts.append(rng.choice(SPECIAL) if roll < 0.93 else rng.randbytes(rng.randint(0, 12)))
    return b"".join(parts)


def framed(data: bytes, cuts: list[int], **kwargs: object) -> bytes:
    framer = lines.StreamFramer(service="fuzz", stream="stdout", clock=lambda: 1_795_680_000.25, **kwargs)  # type: ignore[arg-type]
    out = b""
    start = 0
    for cut in [*cuts, len(data)]:
        out += framer.feed(data[start:cut], 1.0)
        start = cut
    return out + framer.close(2.0)


def check_render_lines_directly(rng: random.Random, speedups: object, data: bytes) -> None:
    render = speedups.render_lines  # type: ignore[attr-defined]
    body = data if data.endswith(b"\n") else data + b"\n"
    heads = tuple(rng.randbytes(rng.randint(0, 40)) for _ in LEVELS)
    tail = rng.randbytes(rng.randint(0, 40))
    prev, bound, json = rng.randrange(len(LEVELS)), rng.choice([-1, 0, 1, 7, 64, 1 << 20]), rng.random() < 0.5
    buffer = rng.choice([bytes, bytearray, memoryview])(body)
    result = render(buffer, json, heads, tail, prev, bound)
    if result is not None:
        rendered, count, last = result
        assert isinstance(rendered, bytes) and count == body.count(b"\n") and 0 <= last < len(LEVELS), result
        first = speedups.line_level(body[: body.index(b"\n")])  # type: ignore[attr-defined]
        head = heads[first if first >= 0 else prev if first == -2 else LEVELS.index(lv.UNMARKED_LEVEL)]
        assert rendered.startswith(head) and rendered.endswith(tail), result
    for bad, error in (((b"no newline", json, heads, tail, prev, bound), ValueError),
                       ((body, json, heads[:-1], tail, prev, bound), ValueError),
                       ((body, json, heads, tail, len(LEVELS), bound), ValueError),
                       ((body, json, (*heads[:-1], "str"), tail, prev, bound), TypeError)):
        try:
            render(*bad)
        except error:
            pass
        else:
            raise AssertionError(f"render_lines{bad!r:.200} did not raise {error.__name__}")


ALPHABET = "ab :0"


def random_node(rng: random.Random, depth: int = 0) -> pt.Node:
    """A random pattern over ALPHABET: literals, classes (greedy or lazy, bounded or not), sequences, alternatives."""
    roll = rng.random()
    if depth >= 3 or roll < 0.35:
        return pt.lit("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3))))
    if roll < 0.65:
        lo = rng.randint(0, 2)
        hi = rng.choice([lo, lo + 1, lo + 3, None])
        return pt.chars("".join(rng.sample(ALPHABET, rng.randint(1, 3))), lo, hi, lazy=rng.random() < 0.4)
    if roll < 0.85:
        return pt.seq(*(random_node(rng, depth + 1) for _ in range(rng.randint(2, 3))))
    return pt.alt(*(random_node(rng, depth + 1) for _ in range(rng.randint(2, 3))))


def random_match(rng: random.Random, node: pt.Node) -> bytes:
    """A string ``node`` matches, its runs drawn at random within their bounds."""
    if isinstance(node, pt.Lit):
        return node.text.encode()
    if isinstance(node, pt.Chars):
        count = rng.randint(node.lo, node.lo + 4 if node.hi is None else node.hi)
        return "".join(rng.choice(node.chars) for _ in range(count)).encode()
    if isinstance(node, pt.Seq):
        return b"".join(random_match(rng, item) for item in node.items)
    assert isinstance(node, pt.Alt)
    return random_match(rng, rng.choice(node.options))


def check_random_grammar(rng: random.Random, cflags: list[str], work: Path, lines_per_grammar: int) -> str | None:
    """One random grammar, its C built and compared with its regex on random lines; a description of a difference."""
    formats = [lv.Format(f"random {i}", pt.seq(pt.lit(rng.choice(ALPHABET)), random_node(rng)))
               for i in range(rng.randint(1, 3))]
    header = gen_grammar.render(formats, lv.TOKENS)
    module = build_speedups.load(build_speedups.build(work, cflags=cflags, header=header))
    line_re, token_levels = grammar.marker_regex(formats, lv.TOKENS)
    tokens = [key.encode() + b" " for key in lv.LEVEL_WORDS] + [b"W1126 08:17:04.123456 ", b"INF", b"ERROR"]
    for _ in range(lines_per_grammar):
        line = random_match(rng, rng.choice(formats).prefix) + rng.choice(tokens)
        for _ in range(rng.randint(0, 3)):  # a few mutations: near misses of the grammar
            at = rng.randint(0, len(line))
            line = line[:at] + rng.choice([b"", rng.choice(ALPHABET).encode()]) + line[at + rng.randint(0, 1):]
        expected = grammar.reference_level(line, line_re, token_levels)
        if module.line_level(line) != expected:
            return f"grammar {formats!r}: line {line!r}: C {module.line_level(line)}, regex {expected}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--grammars", type=int, default=0, help="random grammars to build and compare")
    parser.add_argument("--cflags", default="-O1", help="compiler flags for the random grammars' builds")
    parser.add_argument("--expect", type=Path, help="fail unless the extension is loaded from this file")
    args = parser.parse_args(argv)
    # The module the framer uses (private on purpose), unless it does not use one.
    speedups = lines._speedups if lines.speedups_enabled() else None  # type: ignore[attr-defined]
    if speedups is None:
        print("fuzz_speedups: the C extension is not built (or MLOPS_LOG_SPEEDUPS=0): nothing to fuzz", file=sys.stderr)
        return 1
    if args.expect is not None and Path(speedups.__file__).resolve() != args.expect.resolve():
        print(f"fuzz_speedups: the extension is {speedups.__file__}, not {args.expect}", file=sys.stderr)
        return 1
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    pieces = grammar.pieces() + grammar.examples()
    print(f"fuzz_speedups: {speedups.__file__}, seed {seed}, {args.iterations} iterations", flush=True)
    started = time.monotonic()
    for iteration in range(args.iterations):
        data = chunk(rng, pieces)
        try:
            for line in data.split(b"\n"):
                assert speedups.line_level(line) == grammar.reference_level(line), line
            cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 4)))
            options = {"fmt": rng.choice(["json", "text"]), "max_line_bytes": rng.choice([5, 16, 64, 200, 65536])}
            assert framed(data, cuts, **options) == framed(data, [], fast=False, **options), options
            check_render_lines_directly(rng, speedups, data)
        except AssertionError as exc:
            print(f"fuzz_speedups: iteration {iteration} (seed {seed}) differs: {exc}\ninput: {data!r}",
                  file=sys.stderr)
            return 1
    print(f"fuzz_speedups: {args.iterations} iterations clean in {time.monotonic() - started:.1f} s", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-grammar-") as tmp:
        for number in range(args.grammars):
            difference = check_random_grammar(rng, shlex.split(args.cflags), Path(tmp) / str(number), 3000)
            if difference is not None:
                print(f"fuzz_speedups: random grammar {number} (seed {seed}) differs: {difference}", file=sys.stderr)
                return 1
    if args.grammars:
        print(f"fuzz_speedups: {args.grammars} random grammars clean in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
