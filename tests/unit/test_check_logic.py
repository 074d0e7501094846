"""logcheck's pure logic: judging lines, cutting a tail window, ids in lines, time parsing, activity, settings."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_logging._errors import LogSetupError
from mlops_logging._render import render_json
from mlops_logging.check import sample_file_lines
from mlops_logging.check._config import DEFAULT_SERVICES, load_config, parse_duration, resolve
from mlops_logging.check._records import (
    BINARY,
    CORRUPT_JSON,
    NO_LEVEL,
    NO_TIMESTAMP,
    NOT_OBJECT,
    judge_lines,
    parse_time,
)
from mlops_logging.check._render import activity, sparkline
from mlops_logging.check._trace import carries_id

NOW = calendar.timegm((2026, 11, 26, 8, 30, 0, 0, 0, 0))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def ours(message: str = "hello", level: str = "INFO", **fields: object) -> bytes:
    record = {"timestamp": "2026-11-26T08:16:47.123Z", "level": level, "message": message, "service": "training",
              **fields}
    return render_json(record)[:-1]


# --- judging lines ------------------------------------------------------------------------------------------------


def test_our_records_are_json_and_complete() -> None:
    sample = judge_lines([ours(), ours("boom", "ERROR"), ours("late", "WARNING")], "t.log", NOW)
    assert (sample.records, sample.complete, sample.format) == (3, 3, "json")
    assert sample.errors == 1 and sample.last_error is not None and sample.last_error.message == "boom"
    assert sample.levels["WARNING"] == 1
    assert sample.times == [pytest.approx(calendar.timegm((2026, 11, 26, 8, 16, 47, 0, 0, 0)) + 0.123)] * 3


def test_other_json_needs_timestamp_level_and_message_under_any_usual_name() -> None:
    lines = [
        b'{"time": "2026-11-26T08:16:47Z", "levelname": "warning", "msg": "x"}',
        b'{"ts": 1795682207.5, "severity": "ERROR", "event": "y"}',
        b'{"log": "INFO:     127.0.0.1 - \\"GET / HTTP/1.1\\" 200\\n", "stream": "stdout", '
        b'"time": "2026-11-26T08:16:47.1234Z"}',  # Docker's json-file: the level is the line's own marker
        b'{"message": "no time, no level"}',
    ]
    sample = judge_lines(lines, "x.log", NOW)
    assert sample.formats["json-other"] == 4 and sample.complete == 3
    assert sample.problems[NO_TIMESTAMP] == 1 and sample.problems[NO_LEVEL] == 1
    assert sample.levels["ERROR"] == 1 and sample.levels["WARNING"] == 1 and sample.levels["INFO"] == 1


def test_text_lines_are_judged_with_logwraps_level_grammar() -> None:
    lines = [
        b"2026-11-26T08:16:47.123Z INFO training: epoch finished epoch=1",  # our text format
        b"(APIServer pid=6892) WARNING 11-26 08:16:47 [x.py:12] slow",  # vLLM
        b"2026/11/26 08:19:10 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
        b"[2026-11-26 08:19:10 +0000] [123] [ERROR] Worker failed",  # gunicorn
        b"INFO:     127.0.0.1:49472 - \"GET /health HTTP/1.1\" 200 OK",  # uvicorn's default: no timestamp
        b"the line mentions an error but has no marker",
    ]
    sample = judge_lines(lines, "x.log", NOW)
    assert sample.formats["text"] == 6 and sample.complete == 4
    assert sample.problems[NO_TIMESTAMP] == 2 and sample.problems[NO_LEVEL] == 1
    assert sample.levels["ERROR"] == 1 and sample.levels["WARNING"] == 1


def test_a_traceback_and_indented_lines_continue_the_text_record_before_them() -> None:
    lines = [
        b"2026-11-26 08:16:47,123 ERROR app: request failed",
        b"Traceback (most recent call last):",
        b'  File "app.py", line 3, in <module>',
        b"ValueError: bad",
        b"",
        b"During handling of the above exception, another exception occurred:",
        b"Traceback (most recent call last):",
        b'  File "app.py", line 5, in <module>',
        b"RuntimeError: worse",
        b"2026-11-26 08:16:48,000 INFO app: next",
    ]
    sample = judge_lines(lines, "x.log", NOW)
    assert (sample.records, sample.complete, sample.errors) == (2, 2, 1)


def test_a_bare_traceback_is_an_error_record_without_timestamp() -> None:
    sample = judge_lines([b"Traceback (most recent call last):", b'  File "x.py", line 1', b"KeyError: 'k'"],
                         "x.log", NOW)
    assert (sample.records, sample.complete, sample.errors) == (1, 0, 1)
    assert sample.problems[NO_TIMESTAMP] == 1


def test_every_real_vllm_and_mlflow_line_with_a_marker_is_a_complete_text_record() -> None:
    for name in ("vllm-0.32-cpu-serve.log", "mlflow-3.17-server.stderr.log"):
        lines = (FIXTURES / name).read_bytes().split(b"\n")[:-1]
        sample = judge_lines(lines, name, NOW)
        assert sample.records > 10
        # MLflow prints a few lines of its own without time or level ("[MLflow] Security middleware ..."):
        # those, and only those, are incomplete.
        assert sample.complete / sample.records > 0.8, (name, sample.problems, sample.examples)


def test_bad_lines_are_incomplete_records_never_errors() -> None:
    lines = [b'{"timestamp": "2026-11-26T08:16:47.123Z", "lev', b"[1, 2, 3]", b'"a string"', b"\x00\x00\x01\x02",
             bytes(range(128, 256)), ours()]
    sample = judge_lines(lines, "x.log", NOW)
    assert sample.records == 6 and sample.complete == 1
    assert sample.problems[CORRUPT_JSON] == 1 and sample.problems[NOT_OBJECT] == 2 and sample.problems[BINARY] == 2


def test_loss_records_of_this_package_are_found_and_passthrough_drops_are_not_losses() -> None:
    lines = [
        ours("log file write failed", "WARNING", logger="mlops_logging", lost_records=3, lost_bytes=300,
             lost_since="2026-11-26T08:16:40.000Z", lost_until="2026-11-26T08:16:46.000Z", error="[Errno 28] x"),
        ours("outage", "WARNING", logger="logwrap", lost_records=0, late_records=5),  # nothing lost
        ours("passthrough fell behind", "WARNING", logger="logwrap", stream="stdout", passthrough_dropped_bytes=99),
        ours("not ours", "WARNING", logger="someone.else", lost_records=7),
    ]
    sample = judge_lines(lines, "x.log", NOW)
    assert [(loss.logger, loss.lost_records) for loss in sample.losses] == [("mlops_logging", 3)]
    assert sample.passthrough_dropped_bytes == 99


@given(st.lists(st.binary(max_size=200), max_size=30))
def test_judging_any_bytes_never_raises_and_counts_every_record_once(lines: list[bytes]) -> None:
    sample = judge_lines(lines, "x.log", NOW)
    assert 0 <= sample.complete <= sample.records <= len(lines)


# --- the tail window ----------------------------------------------------------------------------------------------


def test_a_window_from_the_start_keeps_every_line_and_a_last_one_without_newline() -> None:
    assert sample_file_lines(b"a\nb\nc", 0, 10) == ([b"a", b"b", b"c"], False)
    assert sample_file_lines(b"a\nb\n", 0, 10) == ([b"a", b"b"], False)


def test_a_window_from_the_middle_drops_its_cut_first_line_and_keeps_the_last_n() -> None:
    assert sample_file_lines(b"ut\nb\nc\nd\n", 5, 2) == ([b"c", b"d"], False)


def test_a_window_inside_one_long_line_says_so() -> None:
    assert sample_file_lines(b"xxxxxxxx", 100, 10) == ([], True)
    assert sample_file_lines(b"xxxxxxx\n", 100, 10) == ([], True)
    assert sample_file_lines(b"xxxxxxx\nnext", 100, 10) == ([b"next"], False)


# --- ids ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    '{"request_id":"abc-123","level":"INFO"}',
    "Received request cmpl-abc-123-0: params: SamplingParams(...)",
    "Added request chatcmpl-abc-123-0-9f8e7d6c.",
    "Aborted request(s) x,abc-123.",
    "abc-123",
])
def test_an_id_is_found_as_a_whole_token_and_in_vllms_request_ids(text: str) -> None:
    assert carries_id(text, "abc-123")


@pytest.mark.parametrize("text", ["xabc-123", "abc-1234", "abc-123x", "zcmpl-abc-123", "abc-12", "abc.123"])
def test_an_id_inside_a_longer_token_is_not_a_match(text: str) -> None:
    assert not carries_id(text, "abc-123")


# --- time -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-26T08:16:47.123Z INFO x", (2026, 11, 26, 8, 16, 47, 0.123)),
    ("2026/11/26 08:16:47 INFO mlflow: x", (2026, 11, 26, 8, 16, 47, 0)),
    ("[2026-11-26 10:16:47 +0200] [7] [INFO] x", (2026, 11, 26, 8, 16, 47, 0)),
    ("(APIServer pid=1) INFO 11-26 08:16:47 [x.py:1] y", (2026, 11, 26, 8, 16, 47, 0)),
    ("W1126 08:16:47.841561 123 file.cc:3] y", (2026, 11, 26, 8, 16, 47, 0)),
    ("Nov 26 08:16:47 host sshd[1]: y", (2026, 11, 26, 8, 16, 47, 0)),
])
def test_usual_log_date_times_are_read_as_utc(text: str, expected: tuple) -> None:
    *fields, frac = expected
    assert parse_time(text, NOW) == pytest.approx(calendar.timegm((*fields, 0, 0, 0)) + frac)


def test_a_date_without_a_year_is_never_in_the_future() -> None:
    jan_1 = calendar.timegm((2027, 1, 1, 0, 10, 0, 0, 0, 0))
    assert parse_time("INFO 12-31 23:59:00 x", jan_1) == calendar.timegm((2026, 12, 31, 23, 59, 0, 0, 0, 0))


# --- activity -------------------------------------------------------------------------------------------------------


def test_activity_buckets_fit_the_sampled_span_into_the_width() -> None:
    assert activity([]) == (60, [])
    bucket, counts = activity([0, 10, 59, 61, 200])
    assert bucket == 15 and len(counts) == 14 and sum(counts) == 5 and counts[-1] == 1 and counts[0] == 1
    bucket, counts = activity([i * 60.0 for i in range(100)], width=20)
    assert bucket == 300 and len(counts) == 20 and sum(counts) == 100
    assert activity([5.0, 5.0]) == (1, [2])


def test_sparkline_has_one_bar_per_bucket_and_a_gap_for_none() -> None:
    assert sparkline([1, 0, 8, 4]) == "▁ █▄"
    assert sparkline([]) == "" and sparkline([0, 0]) == ""


# --- settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("900", 900), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400),
                                               (30, 30)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text, name="--max-age") == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "15 minutes"])
def test_a_bad_duration_names_the_option_and_the_fix(text: str) -> None:
    with pytest.raises(LogSetupError, match=r"--max-age=.*(duration|more than 0)"):
        parse_duration(text, name="--max-age")


def test_command_line_wins_over_the_config_file_which_wins_over_mlops_log_root(tmp_path: Path) -> None:
    config = {"root": "cfg-logs", "unused": ["inference"], "max_age": "5m"}
    settings = resolve({"max_age": "1h"}, config, tmp_path / "logcheck.toml", env={"MLOPS_LOG_ROOT": "/env"})
    assert settings.root == tmp_path / "cfg-logs"  # relative to the config file
    assert settings.max_age == 3600 and settings.unused == ("inference",) and settings.services == DEFAULT_SERVICES
    assert resolve({}, {}, None, env={"MLOPS_LOG_ROOT": "/env"}).root == Path("/env")


def test_an_unknown_config_key_or_unused_service_fails_with_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(LogSetupError, match=r"logcheck.toml: unknown key 'max_agee'"):
        resolve({}, {"max_agee": 3}, tmp_path / "logcheck.toml", env={})
    with pytest.raises(LogSetupError, match=r"--unused: gpu is not an audited service"):
        resolve({"unused": ["gpu"]}, {}, None, env={})


def test_config_comes_from_logcheck_toml_else_pyproject_tool_logcheck(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.logcheck]\nunused = ["vllm"]\n')
    assert load_config(None, tmp_path) == ({"unused": ["vllm"]}, tmp_path / "pyproject.toml")
    (tmp_path / "logcheck.toml").write_text('unused = "inference"\n')
    assert load_config(None, tmp_path) == ({"unused": "inference"}, tmp_path / "logcheck.toml")
    (tmp_path / "bad.toml").write_text("unused = [\n")
    with pytest.raises(LogSetupError, match="is not valid TOML"):
        load_config(tmp_path / "bad.toml", tmp_path)
