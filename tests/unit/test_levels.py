"""Level detection: structural markers of vLLM, uvicorn, MLflow, gunicorn, Python logging/warnings and glog only."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_logging._framer import StreamFramer
from mlops_logging._levels import (
    detect_level,
    is_chain_marker,
    is_exception_line,
    is_traceback_body,
    is_traceback_start,
)
from mlops_logging._line_text import clean_line

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


# --- one line at a time ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "level"),
    [
        # vLLM with the process tag, and the old form without it
        ("(APIServer pid=1) INFO 11-26 08:16:47 [file.py:12] Starting", "INFO"),
        ("(EngineCore_DP0 pid=77) WARNING 11-26 08:16:47 [core.py:1] slow", "WARNING"),
        ("(Worker_TP1 pid=9) ERROR 11-26 08:16:47 [worker.py:3] failed", "ERROR"),
        ("(APIServer pid=1) DEBUG 11-26 08:16:47 [x.py:1] detail", "DEBUG"),
        ("(APIServer pid=1) CRITICAL 11-26 08:16:47 [x.py:1] dead", "CRITICAL"),
        ("INFO 11-26 08:16:47 [api_server.py:12] old form", "INFO"),
        ("WARNING 11-26 08:16:47 [api_server.py:12] old form", "WARNING"),
        # uvicorn
        ("INFO:     127.0.0.1:60500 - \"GET /health HTTP/1.1\" 200 OK", "INFO"),
        ("WARNING:  Invalid HTTP request received.", "WARNING"),
        ("ERROR:    Exception in ASGI application", "ERROR"),
        ("DEBUG:    = connection is CONNECTING", "DEBUG"),
        # MLflow (its own loggers, and uvicorn under MLflow's formatter)
        ("2026/11/26 08:19:10 INFO mlflow.store.db.utils: Creating initial MLflow database tables...", "INFO"),
        ("2026/11/26 08:19:10 WARNING mlflow.utils.requirements_utils: Detected one or more mismatches", "WARNING"),
        ("2026/11/26 08:19:10 ERROR mlflow.server: boom", "ERROR"),
        ("2026/11/26 08:19:24 INFO:     127.0.0.1:49486 - \"POST /api HTTP/1.1\" 200 OK", "INFO"),
        ("2026/11/26 08:19:24 ERROR:    Exception in ASGI application", "ERROR"),
        # gunicorn
        ("[2026-11-26 08:19:10 +0000] [123] [INFO] Starting gunicorn 23.0.0", "INFO"),
        ("[2026-11-26 08:19:10 +0000] [123] [WARNING] Worker graceful timeout (pid:124)", "WARNING"),
        ("[2026-11-26 08:19:10 +0000] [123] [ERROR] Worker (pid:124) was sent SIGKILL!", "ERROR"),
        ("[2026-11-26 08:19:10 +0000] [123] [CRITICAL] WORKER TIMEOUT (pid:124)", "CRITICAL"),
        # Python logging defaults (basicConfig "LEVEL:name:msg"), asctime formats, bare "LEVEL message"
        ("INFO:root:hello", "INFO"),
        ("ERROR:name:msg", "ERROR"),
        ("WARNING:py.warnings:/x.py:1: UserWarning: careful", "WARNING"),
        ("WARNING something looks off", "WARNING"),
        ("ERROR something failed", "ERROR"),
        ("CRITICAL:root:disk on fire", "CRITICAL"),
        ("WARN deprecated flag", "WARNING"),
        ("FATAL out of memory", "CRITICAL"),
        ("2026-11-26 08:19:10,123 INFO myapp.train: epoch 1", "INFO"),
        ("2026-11-26 08:19:10,123 - myapp.train - ERROR - epoch failed", "ERROR"),
        ("2026-11-26T08:19:10.123456Z  WARN tokenizers: slow", "WARNING"),
        # Python warnings module
        ("/opt/venv/lib/python3.11/site-packages/x/y.py:24: DeprecationWarning: old", "WARNING"),
        ("/app/train.py:3: UserWarning: careful", "WARNING"),
        ("sys:1: ResourceWarning: unclosed file", "WARNING"),
        ("<frozen importlib._bootstrap>:241: RuntimeWarning: numpy.ndarray size changed", "WARNING"),
        # glog / PyTorch c10
        ("[W1126 08:17:04.841561457 utils.cpp:68] Warning: NUMA binding", "WARNING"),
        ("I1126 08:17:04.841561  1234 server.cc:12] listening", "INFO"),
        ("E1126 08:17:04.841561  1234 server.cc:12] failed", "ERROR"),
        ("F1126 08:17:04.841561  1234 server.cc:12] check failed", "CRITICAL"),
        # Ray (ray.init() and Ray's own loggers: asctime, a TAB, the level), as in tests/fixtures/ray-2.60-driver.log
        ("2026-12-01 23:31:14,443\tINFO worker.py:2038 -- Started a local Ray instance.", "INFO"),
        ("2026-12-01 23:31:11,290\tWARNING authentication_token_setup.py:85 -- Token authentication is enabled",
         "WARNING"),
    ],
)
def test_structural_markers_give_the_level(line: str, level: str) -> None:
    assert detect_level(line) == level


@pytest.mark.parametrize(
    "line",
    [
        "Triton is installed, but doesn't include CPU backend. Disabling Triton.",
        "an error occurred while loading",
        "Error: something",  # not upper case: a message, not a marker
        "error: something",
        "ERRORS were found",  # a different word
        "INFORMATION follows",
        "INFO",  # a bare word with nothing after it
        "[MLflow] Security middleware enabled with default settings (localhost-only).",
        "nanobind: leaked 4 instances!",
        "Loading safetensors checkpoint shards: 100% Completed | 1/1",
        "the WARNING word in the middle",
        "saw (x) ERROR later",
        "Warning: no level marker here",
        "RuntimeWarning: no file name before the category",
        "",
        "   ",
        "  File \"/x.py\", line 1, in <module>",
    ],
)
def test_lines_without_a_structural_marker_have_no_level(line: str) -> None:
    assert detect_level(line) is None


def test_level_words_are_only_markers_in_marker_position() -> None:
    assert detect_level("(APIServer pid=1) INFO 11-26 08:16:47 [x.py:1] ERROR: upstream said so") == "INFO"
    assert detect_level("INFO:     request failed with ERROR 500") == "INFO"


def test_traceback_start_is_the_whole_line() -> None:
    assert is_traceback_start("Traceback (most recent call last):")
    assert is_traceback_start("Exception Group Traceback (most recent call last):")
    assert is_traceback_start("  + Exception Group Traceback (most recent call last):")
    assert not is_traceback_start("Traceback (most recent call last): and more")
    assert not is_traceback_start("INFO: Traceback (most recent call last):")
    assert not is_traceback_start("  Traceback (most recent call last):")


def test_traceback_body_lines() -> None:
    assert is_traceback_body('  File "/app/x.py", line 3, in main')
    assert is_traceback_body("    raise ValueError('bad')")
    assert is_traceback_body("    ^^^^^^^^^^^^^^^^^^^^^^^")
    assert is_traceback_body("\tindented with a tab")
    assert is_traceback_body("")
    assert is_traceback_body("During handling of the above exception, another exception occurred:")
    assert is_traceback_body("The above exception was the direct cause of the following exception:")
    assert not is_traceback_body("ValueError: bad")
    assert is_chain_marker("During handling of the above exception, another exception occurred:")
    assert not is_chain_marker("During handling of something else")


@pytest.mark.parametrize(
    "line",
    [
        "ValueError: bad value",
        "KeyboardInterrupt",
        "asyncio.exceptions.CancelledError",
        "pkg.mod.Error: message: with colons",
        "RuntimeError:",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    ],
)
def test_exception_lines(line: str) -> None:
    assert is_exception_line(line)


@pytest.mark.parametrize(
    "line",
    ["INFO:     Shutting down", "ERROR:root:boom", "not an exception line", "  File x", "", "Value Error: x"],
)
def test_not_exception_lines(line: str) -> None:
    assert not is_exception_line(line)


# --- the real samples, every line -------------------------------------------------------------------------------------

# Expected level of every line, as (first line, last line, level), 1-based and inclusive, written by reading each line
# of the sample. Notes on the less obvious ones:
#  - "Triton is installed, ..." and "nanobind: leaked ..." are prints without a marker: INFO.
#  - "<file>.py:N: DeprecationWarning: ..." is the warnings module's header: WARNING; the indented source line after
#    it ("  warnings.warn(") continues it and inherits WARNING.
#  - "[W1126 08:17:04.84 utils.cpp:68] Warning: ..." is a PyTorch c10 (glog) warning.
#  - The banner lines end in "\r" and lines 24-26 carry a tab after the vLLM prefix: still vLLM INFO lines.
#  - "\rLoading safetensors ..." (progress bar) has no marker: INFO; the empty line after it inherits INFO.
#  - " - leaked ..." lines are indented: they inherit the level of the "nanobind:" line (INFO).
#  - Line 158 is "See https://...refleaks.html" with a warnings header glued to it (no newline in between): the
#    ".../resource_tracker.py:254: UserWarning: " header makes it WARNING, and the indented line after inherits it.
VLLM_EXPECTED = [
    (1, 1, "INFO"),
    (2, 5, "WARNING"),
    (6, 12, "INFO"),
    (13, 13, "WARNING"),
    (14, 16, "INFO"),
    (17, 19, "WARNING"),
    (20, 28, "INFO"),
    (29, 36, "WARNING"),
    (37, 55, "INFO"),
    (56, 57, "WARNING"),
    (58, 58, "INFO"),
    (59, 59, "WARNING"),
    (60, 109, "INFO"),
    (110, 111, "WARNING"),
    (112, 117, "INFO"),
    (118, 118, "WARNING"),
    (119, 157, "INFO"),
    (158, 161, "WARNING"),
]
MLFLOW_STDOUT_EXPECTED = [(1, 4, "INFO")]
MLFLOW_STDERR_EXPECTED = [
    (1, 7, "INFO"),  # line 3 is "[MLflow] Security middleware ...": a print, INFO
    (8, 11, "WARNING"),  # StarletteDeprecationWarning header + indented source line, twice
    (12, 31, "INFO"),
]


def _expand(table: list[tuple[int, int, str]]) -> list[str]:
    levels: list[str] = []
    for first, last, level in table:
        assert first == len(levels) + 1, f"gap or overlap in the table at line {first}"
        levels.extend([level] * (last - first + 1))
    return levels


def _levels_from_framer(data: bytes, fmt: str, chunk: int) -> list[str]:
    framer = StreamFramer(service="vllm", stream="stderr", fmt=fmt)
    out = b"".join(framer.feed(data[i : i + chunk], float(i)) for i in range(0, len(data), chunk))
    out += framer.close(1e9)
    lines = out.decode().splitlines()
    if fmt == "json":
        import json

        # A record may hold several lines (a vLLM multi-line message): one level per line it holds.
        levels = []
        for line in lines:
            record = json.loads(line)
            levels += [record["level"]] * (record["message"].count("\n") + 1)
        return levels
    return [line.split(" ", 2)[1] for line in lines]


RAY_EXPECTED = [
    (1, 1, "WARNING"),  # Ray's own logger: asctime, TAB, WARNING
    (2, 3, "INFO"),
    (4, 4, "WARNING"),  # the driver's logging.getLogger("ray").warning(...)
    (5, 6, "INFO"),  # a print, then a task's print behind Ray's coloured "(task pid=N)" prefix
]

SAMPLES = [
    ("vllm-0.32-cpu-serve.log", VLLM_EXPECTED, 161),
    ("mlflow-3.17-server.stdout.log", MLFLOW_STDOUT_EXPECTED, 4),
    ("mlflow-3.17-server.stderr.log", MLFLOW_STDERR_EXPECTED, 31),
    ("ray-2.60-driver.log", RAY_EXPECTED, 6),
]


@pytest.mark.parametrize(("name", "table", "count"), SAMPLES)
@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("chunk", [1 << 20, 4096, 7])
def test_every_line_of_the_real_samples_gets_the_right_level(
    name: str, table: list[tuple[int, int, str]], count: int, fmt: str, chunk: int
) -> None:
    data = (FIXTURES / name).read_bytes()
    expected = _expand(table)
    assert len(expected) == count == data.count(b"\n")
    got = _levels_from_framer(data, fmt, chunk)
    mismatches = [(n, e, g) for n, (e, g) in enumerate(zip(expected, got, strict=False), 1) if e != g]
    assert not mismatches, f"{name}: (line, expected, got) {mismatches[:10]}"
    assert len(got) == count


def test_every_line_of_the_real_vllm_sample_gets_the_right_level() -> None:
    data = (FIXTURES / "vllm-0.32-cpu-serve.log").read_bytes()
    assert _levels_from_framer(data, "json", 65536) == _expand(VLLM_EXPECTED)


def test_every_line_of_the_mlflow_stdout_sample_gets_the_right_level() -> None:
    data = (FIXTURES / "mlflow-3.17-server.stdout.log").read_bytes()
    assert _levels_from_framer(data, "json", 65536) == _expand(MLFLOW_STDOUT_EXPECTED)


def test_every_line_of_the_mlflow_stderr_sample_gets_the_right_level() -> None:
    data = (FIXTURES / "mlflow-3.17-server.stderr.log").read_bytes()
    assert _levels_from_framer(data, "json", 65536) == _expand(MLFLOW_STDERR_EXPECTED)


def test_detect_level_on_each_sample_line_agrees_with_the_marker_table() -> None:
    """Lines with their own marker (not continuations) get it from detect_level alone, after cleaning."""
    data = (FIXTURES / "vllm-0.32-cpu-serve.log").read_bytes()
    expected = _expand(VLLM_EXPECTED)
    for number, raw in enumerate(data.split(b"\n")[:-1], 1):
        text = clean_line(raw.decode())
        if text and not text[0].isspace():
            level = detect_level(text) or "INFO"
            assert level == expected[number - 1], f"line {number}: {text[:80]!r}"
