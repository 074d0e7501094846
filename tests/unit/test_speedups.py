"""The framer's optional C extension: built here, switchable off, and equal to the Python grammar and renderers.

The framer-level property tests (test_lines.py) compare whole outputs of the C fast path, the Python fast path and the
exact path; these tests pin down the pieces: the level classifier against ``levels.LINE_RE_B`` on lines built to probe
every branch of the marker grammar, the escapes, and the cases the extension must hand to the exact path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_logging import levels, lines
from mlops_logging._records import LEVELS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
speedups = lines._speedups  # None when not built; the first test says so


def test_the_c_extension_is_built_in_the_test_environment() -> None:
    assert lines.speedups_enabled(), (
        "mlops_logging._speedups is not built: `make setup` compiles it with the machine's C compiler "
        "(gcc and the Python headers); without them logwrap runs the slower pure-Python framer"
    )


def test_mlops_log_speedups_0_turns_the_extension_off() -> None:
    code = "from mlops_logging import lines; print(lines.speedups_enabled())"
    env = {**os.environ, "MLOPS_LOG_SPEEDUPS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


needs_c = pytest.mark.skipif(speedups is None, reason="C extension not built (see the test above)")


def reference_level(line: bytes) -> int:
    """What the Python grammar says: level index, -2 indented/empty, -1 no marker."""
    match = levels.LINE_RE_B.match(line)
    if match is not None:
        return LEVELS.index(levels.TOKEN_LEVELS[match.group(1).decode()])
    if not line or line[:1] in (b" ", b"\t"):
        return -2
    return -1


# Pieces of every alternative of the marker grammar, valid and almost valid, so that random concatenations reach the
# backtracking corners (fractions of 1-10 digits, time zones with and without colon, " - name - " separators,
# gunicorn's bracketed prefix, process tags around the 128-character bound, glog letters and their 6-9 digit tails).
GRAMMAR_PIECES = [
    b"(", b")", b" ", b"  ", b"(APIServer pid=1) ", b"(EngineCore_DP0 pid=7)", b"(" + b"a" * 127, b"a" * 128 + b") ",
    b"2026/11/26 08:19:10", b"2026-11-26T08:19:10", b"2026-11-26 08:16:47", b"[2026-11-26 08:19:10", b"2026",
    b"11", b"08:19:10", b"-", b"/", b":", b".", b",", b"T", b"Z", b"+", b"+0000", b"+00:00", b"-05:00", b" +0000",
    b"123", b"123456", b"123456789", b"1234567890", b"] [", b"[123] [", b"] ", b"[", b"]", b" - ", b" - vllm - ",
    b" - a - b - ", b"DEBUG", b"INFO", b"WARNING", b"WARN", b"WARNI", b"ERROR", b"CRITICAL", b"FATAL", b"TRACE",
    b"info", b"Traceback", b"I1126 08:17:04.841561 ", b"W1126 08:17:04.", b"E0101 00:00:00.", b"W1", b"E0", b"F9",
    b"1126 08:17:04.", b"I", b"W", b"E", b"F",
    b"x", b"\t", b"\xc3\xa9", b"\xff",
]
grammar_lines = st.lists(st.sampled_from(GRAMMAR_PIECES), max_size=12).map(b"".join)
VALID_LINES = [
    b"(APIServer pid=6892) INFO 11-26 08:16:47 [api_server.py:1204] Starting",
    b"(EngineCore_DP0 pid=7) WARNING 11-26 08:16:48 [core.py:66] x",
    b"INFO 11-26 08:16:47 [__init__.py:241] Automatically detected platform cpu.",
    b"WARNING:  Invalid HTTP request received.",
    b"INFO:root:x",
    b"2026/11/26 08:19:10 ERROR mlflow.server: x",
    b"2026/11/26 08:19:24 INFO:     127.0.0.1 - x",
    b"2026-11-26 08:16:47,123 - vllm.engine - CRITICAL - boom",
    b"2026-11-26T08:16:47.123456789+00:00  DEBUG x",
    b"[2026-11-26 08:19:10 +0000] [123] [INFO] Booting worker",
    b"[2026-11-26T08:19:10.5Z] [1] [FATAL] x",
    b"[W1126 08:17:04.841561457 utils.cpp:68] Warning: x",
    b"E1126 08:17:04.841561  12 file.cc:3] x",
    b"[ERROR] x",
]


def mutations(line: bytes) -> list[bytes]:
    """The line cut at every length, and with each of its first 48 bytes replaced by a digit, a space, a letter and
    each separator of the grammar."""
    out = [line[:k] for k in range(len(line) + 1)]
    for k in range(min(len(line), 48)):
        for byte in (b"0", b" ", b"x", b"/", b"-", b":", b".", b"]", b")"):
            out.append(line[:k] + byte + line[k + 1 :])
    return out


@needs_c
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.one_of(grammar_lines, st.binary(max_size=40)))
def test_the_c_classifier_agrees_with_the_python_grammar(line: bytes) -> None:
    assert speedups.line_level(line) == reference_level(line)


@needs_c
def test_the_c_classifier_agrees_on_every_cut_and_mutation_of_well_formed_lines() -> None:
    for valid in VALID_LINES:
        for line in mutations(valid):
            assert speedups.line_level(line) == reference_level(line), line


@needs_c
@pytest.mark.parametrize("length", [1, 127, 128, 129, 200])
def test_process_tags_are_bounded_at_128_characters(length: int) -> None:
    line = b"(" + b"p" * length + b") ERROR x"
    assert speedups.line_level(line) == reference_level(line) == (3 if length <= 128 else -1)


@needs_c
@pytest.mark.parametrize("sample", ["vllm-0.32-cpu-serve.log", "mlflow-3.17-server.stderr.log",
                                    "mlflow-3.17-server.stdout.log"])
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
    data = b"INFO: " + controls + b' "quoted" back\\slash \xe2\x80\xa8 \xe2\x80\xa9 \xc2\x85 caf\xc3\xa9 \xf0\x9f\x98\x80\n'
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
    code = ("from mlops_logging import lines; f = lines.StreamFramer(service='s', stream='stdout'); "
            f"f.feed({PLAIN_CHUNK!r}, 1.0); print(lines.speedups_enabled(), f.paths)")
    env = {**os.environ, "MLOPS_LOG_SPEEDUPS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False {'native': 0, 'python': 1, 'exact': 0}"
