"""The level grammar written once, as data: its primitives, the regexes built from it, the C header generated from it.

``_levels.FORMATS`` / ``_levels.TOKENS`` are the data; ``_levels.LINE_RE`` and ``CHUNK_RE_B`` are built from them here,
``_grammar.h`` by ``scripts/gen_grammar.py``. test_speedups.py checks the compiled C against the regexes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.support import grammar
from tests.support.grammar import reference_level

import gen_grammar
from mlops_logging import _framer as lines
from mlops_logging import _levels as lv
from mlops_logging import _pattern as pt
from mlops_logging._level_map import LEVELS

HEADER = Path(lv.__file__).resolve().with_name("_grammar.h")


# --- the generated header ---------------------------------------------------------------------------------------------


def test_the_committed_c_header_is_what_the_generator_writes_from_the_current_grammar() -> None:
    assert HEADER.read_text() == gen_grammar.render(), (
        "src/mlops_logging/_grammar.h is stale: run `make grammar` (scripts/gen_grammar.py), then `make setup` to "
        "rebuild the extension, and commit the header")


def test_the_header_names_the_digest_of_the_data_it_was_generated_from() -> None:
    assert f'#define GRAMMAR_DIGEST "{lv.GRAMMAR_DIGEST}"' in HEADER.read_text()


@pytest.mark.skipif(lines._speedups is None, reason="C extension not built (test_speedups.py says so)")
def test_the_built_extension_was_generated_from_the_current_grammar() -> None:
    assert lines._speedups.GRAMMAR_DIGEST == lv.GRAMMAR_DIGEST, "rebuild: `make setup` or `pip install -e .`"


def test_an_extension_built_from_another_grammar_is_not_used() -> None:
    """An editable install whose _levels.py changed since the build: the framer runs in pure Python and says why."""
    code = ("import warnings; warnings.simplefilter('always'); import mlops_logging._levels as lv; "
            "lv.GRAMMAR_DIGEST = 'other'; from mlops_logging import _framer as lines; print(lines.speedups_enabled())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={k: v for k, v in os.environ.items() if k != "MLOPS_LOG_SPEEDUPS"})
    assert result.stdout.strip() == "False"
    if lines._speedups is not None:
        assert "built from another level grammar" in result.stderr and "make grammar" in result.stderr


def test_the_generator_check_mode_passes_on_the_committed_header() -> None:
    assert gen_grammar.main(["--check"]) == 0


def test_the_header_defines_the_levels_in_records_order() -> None:
    text = HEADER.read_text()
    assert "enum { " + ", ".join(f"LV_{level} = {i}" for i, level in enumerate(LEVELS)) + f", NLEVELS = {len(LEVELS)}" \
        in text
    for start in lv.TRACEBACK_STARTS:
        assert f'{{"{start}", {len(start)}}}' in text


# --- the primitives mean what re gives them ---------------------------------------------------------------------------


@pytest.mark.parametrize(("node", "regex"), [
    (pt.lit("a.b(c)"), r"a\.b\(c\)"),
    (pt.chars("-/"), r"[\-/]"),
    (pt.chars(pt.DIGITS, 1, 9), "[0-9]{1,9}"),
    (pt.chars(" ", 1, 2), " {1,2}"),
    (pt.chars(pt.span(" ", "~"), 1, 64, lazy=True), "[ -~]{1,64}?"),
    (pt.chars("]\n", 1, 256, negated=True), r"[^\n\]]{1,256}"),
    (pt.opt(pt.lit(":")), ":?"),
    (pt.opt(pt.chars(".,"), pt.digits(2)), "(?:[,.][0-9]{2})?"),
    (pt.seq(pt.alt(pt.lit("Z"), pt.lit("+0")), pt.lit("]")), r"(?:Z|\+0)\]"),
    (pt.lit("\t"), r"\t"),
])
def test_each_primitive_is_written_as_the_regex_of_its_meaning(node: pt.Node, regex: str) -> None:
    assert pt.to_regex(node) == regex


def test_alternatives_are_tried_in_order_and_repeats_greedy_or_lazy_as_in_re() -> None:
    pattern = pt.seq(pt.chars("ab", 1, 5), pt.alt(pt.lit("b"), pt.lit("bb")), pt.chars(pt.span(" ", "~"), 1, 9,
                                                                                       lazy=True), pt.lit("!"))
    match = re.match(pt.to_regex(pattern), "abbbb x! y!")
    assert match is not None and match.group() == "abbbb x!"  # greedy run backed off one b, the lazy one is shortest


# --- the regexes are built from the data ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", lv.marker_formats(), ids=lambda entry: entry.name.split(" (")[0])
def test_every_formats_examples_are_marked_through_its_own_prefix(entry: lv.Format) -> None:
    tokens = "|".join(f"(?:{lv._key_regex(kind)}){pt.regex_part(kind.after)}" for kind in lv.TOKENS)
    own = re.compile(f"{pt.regex_part(entry.prefix)}(?:{tokens})")
    assert entry.examples
    for example in entry.examples:
        assert own.match(example), example
        assert lv.detect_level(example) is not None


def test_every_level_word_and_glog_letter_names_its_level() -> None:
    for word, level in lv.LEVEL_WORDS.items():
        assert lv.detect_level(f"{word}: x") == level
    for letter, level in lv.GLOG_LETTERS.items():
        assert lv.detect_level(f"{letter}1126 08:17:04.841561  12 f.cc:3] x") == level


def test_longer_keys_are_tried_before_the_keys_they_start_with() -> None:
    assert lv.token_keys(lv.Tokens("t", {"WARN": "WARNING", "WARNING": "WARNING", "INFO": "INFO"}, pt.lit(" "))) == [
        "WARNING", "WARN", "INFO"]


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.one_of(grammar.marked_lines(), grammar.grammar_lines()), rest=st.binary(max_size=24))
def test_a_line_that_starts_with_what_a_marker_matched_has_the_same_level(line: bytes, rest: bytes) -> None:
    """What the framer's one-prefix fast path relies on: the match covers every byte the grammar looked at."""
    match = lv.LINE_RE_B.match(line)
    assume(match is not None)
    assert match is not None
    assert reference_level(line[: match.end()] + rest) == reference_level(line)


# --- the data is checked when it is built -----------------------------------------------------------------------------


def test_a_prefix_that_can_match_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one character"):
        lv.check_grammar([lv.Format("x", pt.opt(pt.lit("[")))], lv.TOKENS)


def test_a_key_of_one_character_without_key_end_is_refused() -> None:
    with pytest.raises(ValueError, match="2\\+ ASCII characters"):
        lv.check_grammar(lv.FORMATS, [lv.Tokens("letters", {"W": "WARNING"}, pt.lit(" "))])


def test_primitives_the_c_generator_cannot_compile_and_non_ascii_are_refused_in_the_marker_grammar() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        lv.check_grammar([lv.Format("x", pt.seq(pt.lit("["), pt.Group(pt.lit("a"))))], lv.TOKENS)
    with pytest.raises(ValueError, match="ASCII"):
        lv.check_grammar([lv.Format("x", pt.lit("«"))], lv.TOKENS)
    with pytest.raises(ValueError, match="levels must be among"):
        lv.check_grammar(lv.FORMATS, [lv.Tokens("t", {"NOTICE": "NOTICE"}, pt.lit(" "))])
