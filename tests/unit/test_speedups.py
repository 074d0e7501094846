"""The framer's optional C extension: built here, switchable off, and equal to the Python grammar and renderers.

The framer-level property tests (test_lines.py) compare whole outputs of the C fast path, the Python fast path and the
exact path; these tests pin down the pieces: the level classifier against ``_levels.LINE_RE_B`` on lines built to probe
every branch of the marker grammar, the escapes, and the cases the extension must hand to the exact path.
"""

from __future__ import annotations

import ast
import inspect
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support import grammar
from tests.support.grammar import reference_level

import build_speedups
import gen_grammar
from mlops_logging import _framer as lines
from mlops_logging import _levels as lv
from mlops_logging import _pattern as pt
from mlops_logging._fastpath import PythonLines
from mlops_logging._level_map import LEVELS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
speedups = lines._speedups  # None when not built; the first test says so


def test_the_c_extension_is_built_in_the_test_environment() -> None:
    assert lines.speedups_enabled(), (
        "mlops_logging._speedups is not built: `make setup` compiles it with the machine's C compiler "
        "(gcc and the Python headers); without them logwrap runs the slower pure-Python framer"
    )


def test_mlops_log_speedups_0_turns_the_extension_off() -> None:
    code = "from mlops_logging import _framer as lines; print(lines.speedups_enabled())"
    env = {**os.environ, "MLOPS_LOG_SPEEDUPS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


needs_c = pytest.mark.skipif(speedups is None, reason="C extension not built (see the test above)")


@needs_c
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.one_of(grammar.grammar_lines(), st.binary(max_size=40)))
def test_the_c_classifier_agrees_with_the_python_grammar(line: bytes) -> None:
    assert speedups.line_level(line) == reference_level(line)


@needs_c
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(line=grammar.marked_lines())
def test_the_c_classifier_agrees_on_well_formed_lines_of_every_format(line: bytes) -> None:
    assert speedups.line_level(line) == reference_level(line) >= 0


@needs_c
def test_the_c_classifier_agrees_on_every_cut_and_mutation_of_every_formats_examples() -> None:
    for valid in grammar.examples():
        assert reference_level(valid) >= 0, valid
        for line in grammar.mutations(valid):
            assert speedups.line_level(line) == reference_level(line), line


@needs_c
@pytest.mark.parametrize("length", [1, 127, 128, 129, 200])
def test_process_tags_are_bounded_at_128_characters(length: int) -> None:
    line = b"(" + b"p" * length + b") ERROR x"
    assert speedups.line_level(line) == reference_level(line) == (3 if length <= 128 else -1)


@needs_c
@pytest.mark.parametrize("sample", sorted(path.name for path in FIXTURES.glob("*.log")))
def test_the_c_classifier_agrees_on_every_line_of_the_real_server_samples(sample: str) -> None:
    for line in (FIXTURES / sample).read_bytes().split(b"\n"):
        line = line.removesuffix(b"\r")
        assert speedups.line_level(line) == reference_level(line), line


def framed(data: bytes, fmt: str, **kwargs: object) -> bytes:
    framer = lines.StreamFramer(service="vllm", stream="stdout", fmt=fmt, clock=lambda: 1_795_680_000.25,
                                **kwargs)  # type: ignore[arg-type]
    return framer.feed(data, 1.0) + framer.close(2.0)


@needs_c
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_every_control_character_quote_backslash_and_separator_is_escaped_as_the_exact_path_does(fmt: str) -> None:
    controls = bytes(c for c in range(32) if c not in (0x0A, 0x0D, 0x1B))
    data = (b"INFO: " + controls
            + b' "quoted" back\\slash \xe2\x80\xa8 \xe2\x80\xa9 \xc2\x85 caf\xc3\xa9 \xf0\x9f\x98\x80\n')
    heads = tuple(b"<%d>" % i for i in range(5))
    assert speedups.render_lines(data, fmt == "json", heads, b"|\n", 1, 65536) is not None  # the C path took it
    assert framed(data, fmt) == framed(data, fmt, fast=False)


BAIL_OUT = {
    "ESC": b"INFO: \x1b[31mred\n",
    "DEL": b"INFO: a\x7fb\n",
    "lone CR": b"Loading 0%\rLoading 100%\n",
    "CR CR LF": b"x\r\r\n",
    "CRLF": b"x\r\n",
    "invalid UTF-8": b"bad \xff byte\n",
    "surrogate in UTF-8": b"\xed\xa0\x80\n",
    "overlong UTF-8": b"\xc0\xaf\n",
    "truncated UTF-8": b"\xe2\x82\n",
    "traceback": b"Traceback (most recent call last):\n",
    "exception group": b"  + Exception Group Traceback (most recent call last):\n",
    "warnings header": b"/a/b.py:3: UserWarning: careful\n",
    "over-long line": b"x" * 65 + b"\n",
}


@needs_c
@pytest.mark.parametrize("name", list(BAIL_OUT))
def test_chunks_the_exact_path_must_see_are_handed_back(name: str) -> None:
    heads = tuple(b"" for _ in range(5))
    body = b"INFO: fine\n" + BAIL_OUT[name]
    assert speedups.render_lines(body, True, heads, b"\n", 1, 64) is None
    assert speedups.render_lines(body, False, heads, b"\n", 1, 64) is None


@needs_c
def test_levels_are_inherited_across_indented_and_empty_lines() -> None:
    heads = tuple(b"<" + level.encode() + b">" for level in LEVELS)
    body = b"WARNING: w\n  more\n\nINFO: i\n\tx\n"
    assert speedups.render_lines(body, False, heads, b"\n", 3, 65536) == (
        b"<WARNING>WARNING: w\n<WARNING>  more\n<WARNING>\n<INFO>INFO: i\n<INFO>\\tx\n", 5, 1)
    assert speedups.render_lines(b"  first line indented\n", False, heads, b"\n", 3, 65536) == (
        b"<ERROR>  first line indented\n", 1, 3)


@needs_c
@pytest.mark.parametrize("digits", [5, 6, 9, 10])
def test_glog_markers_take_6_to_9_fraction_digits(digits: int) -> None:
    line = b"W1126 08:17:04." + b"7" * digits + b" 12 f.cc:3] x"
    assert speedups.line_level(line) == reference_level(line) == (2 if 6 <= digits <= 9 else -1)


PLAIN_CHUNK = b"(APIServer pid=1) INFO 11-26 08:16:47 [a.py:1] hello\nINFO:     127.0.0.1:5 - \"GET / HTTP/1.1\" 200\n"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_framer_really_runs_the_c_fast_path_when_speedups_are_enabled(fmt: str) -> None:
    """Both fast paths give the same bytes, so only the framer's own counters show which one ran."""
    assert lines.speedups_enabled()
    framer = lines.StreamFramer(service="vllm", stream="stdout", fmt=fmt)
    framer.feed(PLAIN_CHUNK, 1.0)
    framer.feed(b"INFO: \x1b[31mred\x1b[0m\n", 1.0)  # ESC: the C path hands it to the exact path
    assert framer.paths == {"native": 1, "python": 0, "exact": 1}


def test_the_framer_runs_the_python_fast_path_without_the_extension() -> None:
    framer = lines.StreamFramer(service="vllm", stream="stdout", native=False)
    framer.feed(PLAIN_CHUNK, 1.0)
    assert framer.paths == {"native": 0, "python": 1, "exact": 0}
    exact = lines.StreamFramer(service="vllm", stream="stdout", fast=False)
    exact.feed(PLAIN_CHUNK, 1.0)
    assert exact.paths == {"native": 0, "python": 0, "exact": 1}


def test_mlops_log_speedups_0_makes_the_framer_run_the_python_fast_path() -> None:
    code = ("from mlops_logging import _framer as lines; f = lines.StreamFramer(service='s', stream='stdout'); "
            f"f.feed({PLAIN_CHUNK!r}, 1.0); print(lines.speedups_enabled(), f.paths)")
    env = {**os.environ, "MLOPS_LOG_SPEEDUPS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False {'native': 0, 'python': 1, 'exact': 0}"


# --- the extension as built elsewhere: the portable scan, another grammar, the stub ----------------------------------


@pytest.fixture(scope="module")
def portable(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The extension built with the bytewise scan a big-endian machine (or a compiler without ctz) gets."""
    return build_speedups.load(build_speedups.build(tmp_path_factory.mktemp("portable"), cflags=["-O1"],
                                                    defines=["MLOPS_SPEEDUPS_PORTABLE_SCAN"]))


@pytest.fixture(scope="module")
def word(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The extension built with the 8-bytes-a-word scan a little-endian machine without SSE2 gets."""
    return build_speedups.load(build_speedups.build(tmp_path_factory.mktemp("word"), cflags=["-O1"],
                                                    defines=["MLOPS_SPEEDUPS_WORD_SCAN"]))


def _native_scan() -> str:
    """The scan this machine's build should have: SSE2 on x86-64, else words where little-endian."""
    if sys.byteorder != "little":
        return "byte"
    return "sse2" if platform.machine().lower() in ("x86_64", "amd64") else "word"


@needs_c
def test_the_installed_build_scans_16_or_8_bytes_at_a_time_on_this_machine(portable: ModuleType,
                                                                           word: ModuleType) -> None:
    assert (speedups.SCAN, word.SCAN, portable.SCAN) == (
        _native_scan(), "word" if sys.byteorder == "little" else "byte", "byte")


# Bytes every scan must stop at, or not, around its 16- and 8-byte blocks and their padded tails.
_scan_bytes = st.sampled_from([b"a", b" ", b"~", b"\\", b'"', b"\t", b"\x1f", b"\x7f", b"\x80", b"\xc3\xa9",
                               b"\xe2\x80\xa8", b"\xc2\x85", b"\xff", b"\x00", b"\x1b", b"\r"])
_scan_lines = st.lists(_scan_bytes, max_size=40).map(b"".join).map(lambda line: b"x" * 13 + line)


@needs_c
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines_=st.lists(st.one_of(grammar.marked_lines(), grammar.grammar_lines(), st.binary(max_size=40),
                                 _scan_lines), min_size=1, max_size=30),
       json=st.booleans(), prev=st.integers(0, 4), max_line=st.sampled_from([0, 1, 8, 64, 65536]),
       pad=st.integers(0, 33))
def test_the_portable_bytewise_and_word_scans_render_exactly_what_the_installed_scan_does(
        portable: ModuleType, word: ModuleType, lines_: list[bytes], json: bool, prev: int, max_line: int,
        pad: int) -> None:
    body = b"a" * pad + b"\n".join(line.replace(b"\n", b" ") for line in lines_) + b"\n"
    heads = tuple(b"<%d>" % level for level in range(len(LEVELS)))
    args = (body, json, heads, b"|\n", prev, max_line)
    expected = speedups.render_lines(*args)
    assert portable.render_lines(*args) == expected
    assert word.render_lines(*args) == expected
    for line in lines_:
        assert portable.line_level(line) == speedups.line_level(line) == word.line_level(line)


@needs_c
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(lines_=st.lists(st.one_of(grammar.marked_lines(), grammar.grammar_lines(), st.binary(max_size=40),
                                 _scan_lines), min_size=1, max_size=12),
       json=st.booleans(), prev=st.integers(0, 4), max_line=st.sampled_from([0, 1, 8, 64, 65536]),
       cut=st.integers(0, 400), view=st.booleans())
def test_pending_bytes_render_as_if_the_body_started_with_them(lines_: list[bytes], json: bool, prev: int,
                                                               max_line: int, cut: int, view: bool) -> None:
    """``render_lines(body, ..., pending)`` is ``render_lines(pending + body, ...)``, the C path and its Python twin
    alike, whatever the cut (inside the first line: the framer's held, unterminated bytes), also on a memoryview."""
    whole = b"\n".join(line.replace(b"\n", b" ") for line in lines_) + b"\n"
    cut = min(cut, whole.index(b"\n"))
    pending, body = whole[:cut], whole[cut:]
    heads = tuple(b"<%d>" % level for level in range(len(LEVELS)))
    args = (json, heads, b"|\n", prev, max_line)
    expected = speedups.render_lines(whole, *args)
    given_body = memoryview(b"junk" + body + b"more")[4:-4] if view else body
    assert speedups.render_lines(given_body, *args, pending) == expected
    twin = PythonLines().render_lines
    assert twin(given_body, *args, pending) == twin(whole, *args)


# A format none of the real servers writes, made to need backtracking: the greedy run of a/b must give back a "b", the
# lazy name must stop at the first ": " after which a token follows; and a token kind with a greedy tail of its own.
SYNTHETIC = lv.Format("synthetic", pt.seq(
    pt.lit("<"), pt.chars(pt.DIGITS, 1, 3), pt.lit(">"), pt.chars("ab", 1, 6), pt.alt(pt.lit("b"), pt.lit("bb")),
    pt.chars(pt.span(" ", "~"), 1, 12, lazy=True), pt.lit(": ")), ("<13>abbb x: y: WARNING: z",))
ANGLE = lv.Tokens("angle", {"<3>": "ERROR", "<4>": "WARNING", "<6>": "INFO"}, after=pt.chars(" ", 1, None))


SYNTHETIC_FORMATS, SYNTHETIC_TOKENS = (*lv.FORMATS, SYNTHETIC), (*lv.TOKENS, ANGLE)
_synthetic_pieces = st.lists(st.sampled_from([*grammar.pieces(), b"<", b">", b"ab", b"bb", b"b", b": ", b"<4>",
                                              b"<3> "]), max_size=10).map(b"".join)
_synthetic_token = st.one_of(grammar.tokens(), st.tuples(st.sampled_from(sorted(ANGLE.levels)).map(str.encode),
                                                         grammar.matching(ANGLE.after)).map(b"".join))
synthetic_lines = st.one_of(st.tuples(grammar.matching(SYNTHETIC.prefix), _synthetic_token, _synthetic_pieces)
                            .map(b"".join), _synthetic_pieces)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, re.Pattern[bytes], dict[str, str]]:
    """The extension built from the generator's header for the data plus SYNTHETIC and ANGLE, and the regex the same
    data builds."""
    header = gen_grammar.render(SYNTHETIC_FORMATS, SYNTHETIC_TOKENS)
    module = build_speedups.load(build_speedups.build(tmp_path_factory.mktemp("synthetic"), cflags=["-O1"],
                                                      header=header))
    return (module, *grammar.marker_regex(SYNTHETIC_FORMATS, SYNTHETIC_TOKENS))


@needs_c
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(line=synthetic_lines)
def test_a_new_format_is_one_data_entry_the_generated_c_then_matches_as_the_regex_does(
        synthetic: tuple[ModuleType, re.Pattern[bytes], dict[str, str]], line: bytes) -> None:
    """Adding a format (and a kind of token) to the data: no C edit, the generator's header built as is."""
    module, line_re, token_levels = synthetic
    assert module.line_level(line) == reference_level(line, line_re, token_levels)


@needs_c
def test_a_build_from_other_data_carries_that_datas_digest(
        synthetic: tuple[ModuleType, re.Pattern[bytes], dict[str, str]]) -> None:
    assert synthetic[0].GRAMMAR_DIGEST == lv.grammar_digest(SYNTHETIC_FORMATS, SYNTHETIC_TOKENS) != lv.GRAMMAR_DIGEST
    assert synthetic[0].line_level(SYNTHETIC.examples[0].encode()) == LEVELS.index("WARNING")


@needs_c
def test_the_stub_declares_exactly_what_the_module_has() -> None:
    stub = ast.parse(Path(lines.__file__).with_name("_speedups.pyi").read_text())
    functions = {node.name: [arg.arg for arg in node.args.posonlyargs + node.args.args] for node in stub.body
                 if isinstance(node, ast.FunctionDef)}
    constants = {node.target.id for node in stub.body if isinstance(node, ast.AnnAssign)
                 and isinstance(node.target, ast.Name)}
    assert set(functions) | constants == {name for name in dir(speedups) if not name.startswith("_")}
    for name, params in functions.items():
        assert list(inspect.signature(getattr(speedups, name)).parameters) == params, name
    for name in constants:
        assert isinstance(getattr(speedups, name), (str, int))


@needs_c
@pytest.mark.parametrize("pending", [b"", b"(APIServer pid=1) INFO 11-26"])
def test_every_failed_allocation_is_a_memory_error_that_leaks_no_reference(pending: bytes) -> None:
    """Each allocation render_lines makes (the output, its growth, the final shrink, the result) made to fail in turn
    (CPython's _testcapi.set_nomemory): a MemoryError, the arguments' references as they were, else the same result."""
    testcapi = pytest.importorskip("_testcapi")
    if not hasattr(testcapi, "set_nomemory"):
        pytest.skip("this CPython's _testcapi cannot make allocations fail")
    body = (b"(APIServer pid=1) INFO 11-26 08:16:47 [a.py:1] x\n  indented \"q\"\n" * 500)[len(pending):]
    heads = tuple(b"<%d>" % level * 20 for level in range(len(LEVELS)))
    tail = b"|tail\n"
    expected = speedups.render_lines(body, True, heads, tail, 1, 65536, pending)
    before = [sys.getrefcount(obj) for obj in (body, heads, tail, pending, *heads)]
    outcomes = set()
    for nth in range(40):
        testcapi.set_nomemory(nth, nth + 1)
        try:
            result = speedups.render_lines(body, True, heads, tail, 1, 65536, pending)
        except MemoryError:
            outcomes.add("MemoryError")
        else:
            outcomes.add("ok")
            assert result == expected
        finally:
            testcapi.remove_mem_hooks()
    assert outcomes == {"MemoryError", "ok"}
    assert [sys.getrefcount(obj) for obj in (body, heads, tail, pending, *heads)] == before
