"""The record schema helpers: timestamps, levels, redaction and the two renderers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_logging._level_map import level_from_number, normalize_level
from mlops_logging._records import format_timestamp, render_wrapper_record
from mlops_logging._redaction import REDACTED, is_secret_key, redact
from mlops_logging._render import render_json, render_text
from mlops_logging.testing import assert_valid

RFC3339_MS_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_timestamp_is_rfc3339_utc_with_milliseconds_and_z(t: float) -> None:
    text = format_timestamp(t)
    assert RFC3339_MS_Z.fullmatch(text), text
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(parsed.timestamp() - t) < 0.001 + 1e-6 * max(1.0, t) / 1e6


def test_timestamp_of_a_known_instant() -> None:
    assert format_timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert format_timestamp(1_795_680_000.123) == "2026-11-26T08:00:00.123Z"


@pytest.mark.parametrize(
    ("name", "level"),
    [("info", "INFO"), ("WARN", "WARNING"), ("warning", "WARNING"), ("fatal", "CRITICAL"), ("Error", "ERROR"),
     ("debug", "DEBUG"), ("trace", "DEBUG"), ("whatever", "INFO")],
)
def test_level_names_are_normalised_upper_case(name: str, level: str) -> None:
    assert normalize_level(name) == level


@pytest.mark.parametrize(("number", "level"), [(5, "DEBUG"), (10, "DEBUG"), (25, "INFO"), (30, "WARNING"),
                                               (45, "ERROR"), (50, "CRITICAL"), (60, "CRITICAL")])
def test_custom_level_numbers_map_to_the_level_at_or_below(number: int, level: str) -> None:
    assert level_from_number(number) == level


@pytest.mark.parametrize(
    "key",
    ["authorization", "Authorization", "api_key", "x-api-key", "apikey", "token", "hf_token", "HF_TOKEN",
     "access_token", "password", "db_password", "secret", "client_secret", "cookie", "set-cookie", "cookies",
     "private_key", "proxy-authorization"],
)
def test_secret_looking_keys_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "prompt_tokens", "prompt_token_ids", "token_count", "message", "request_id", "keyword",
     "key", "monkey", "secretary_name", "path", "user"],
)
def test_llm_fields_that_mention_tokens_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_replaces_secret_values_also_in_nested_mappings() -> None:
    record = {"message": "m", "api_key": "sk-123", "headers": {"Authorization": "Bearer x", "accept": "*/*"},
              "max_tokens": 5, "password": None}
    redact(record)
    assert record == {"message": "m", "api_key": REDACTED, "headers": {"Authorization": REDACTED, "accept": "*/*"},
                      "max_tokens": 5, "password": None}


@given(st.text())
def test_a_message_can_never_forge_a_second_json_record(message: str) -> None:
    line = render_json({"timestamp": format_timestamp(0), "level": "INFO", "message": message, "service": "s"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["message"] == message


@given(st.text(), st.dictionaries(st.text(min_size=1), st.one_of(st.text(), st.integers(), st.none())))
def test_a_text_record_is_always_exactly_one_line(message: str, fields: dict) -> None:
    record = {"timestamp": format_timestamp(0), "level": "INFO", "logger": "x\ny", "message": message, **fields}
    line = render_text(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line


def test_text_record_layout() -> None:
    line = render_text({"timestamp": "2026-11-26T08:00:00.000Z", "level": "INFO", "message": "loaded\nmodel",
                        "service": "training", "logger": "train", "epoch": 3, "note": "two words"})
    assert line == b'2026-11-26T08:00:00.000Z INFO train: loaded\\nmodel service=training epoch=3 note="two words"\n'


def test_unserialisable_values_are_rendered_as_text_not_raised() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    record = {"timestamp": format_timestamp(0), "level": "INFO", "message": "m", "service": "s", "obj": Odd(),
              "big": 2**70, "raw": b"\xff"}
    parsed = json.loads(render_json(record))
    assert parsed["obj"] == "odd" and parsed["big"] == str(2**70)
    assert_valid(parsed)


# --- the text escaper: one for the whole package ----------------------------------------------------------------------

#: Every character str.splitlines() ends a line at.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.mark.parametrize("char", list(LINE_BREAKS))
def test_a_text_record_is_one_line_whatever_line_separator_its_message_key_or_value_holds(char: str) -> None:
    record = {"timestamp": "t", "level": "INFO", "logger": f"a{char}b", "message": f"x{char}y", f"k{char}": f"v{char}",
              "nested": {"n": f"w{char}"}}
    line = render_text(record).decode()
    assert line.endswith("\n") and len(line.splitlines()) == 1, repr(line)
    assert char not in line[:-1]


def test_text_escapes_are_the_same_for_in_process_records_and_logwrap_lines() -> None:
    from mlops_logging._framer import StreamFramer

    message = "tab\tback\\slash nul\x00 del\x7f nel\x85 ls\u2028 ps\u2029 vt\x0b"
    in_process = render_text({"timestamp": "t", "level": "INFO", "logger": "l", "message": message}).decode()
    framer = StreamFramer(service="s", stream="stdout", fmt="text", clock=lambda: 0.0)
    wrapped = (framer.feed(message.encode() + b"\n", 0.0) + framer.close(0.0)).decode()
    escaped = "tab\\tback\\\\slash nul\\x00 del\\x7f nel\\u0085 ls\\u2028 ps\\u2029 vt\\x0b"
    assert in_process == f"t INFO l: {escaped}\n"
    assert wrapped.endswith(f" INFO [stdout] {escaped}\n")


@given(st.text(), st.text(), st.text(), st.text())
def test_any_text_renders_as_exactly_one_line(message: str, logger: str, key: str, value: str) -> None:
    line = render_text({"timestamp": "t", "level": "INFO", "logger": logger, "message": message, key or "k": value,
                        "extra": [value]}).decode()
    assert len(line.splitlines()) == 1 and line.endswith("\n"), repr(line)


# --- wrapper records -------------------------------------------------------------------------------------------------


def test_wrapper_record_has_logger_logwrap_and_is_redacted() -> None:
    record = json.loads(render_wrapper_record(service="vllm", level="warn", message="child exited", exit_code=3,
                                              api_key="sk-123", pid=77))
    assert_valid(record)
    assert list(record)[:5] == ["timestamp", "level", "message", "service", "logger"]
    assert (record["level"], record["logger"], record["exit_code"], record["api_key"], record["pid"]) == (
        "WARNING", "logwrap", 3, "[REDACTED]", 77)


def test_wrapper_record_in_text_format_is_one_line() -> None:
    line = render_wrapper_record(service="vllm", level="INFO", message="start\nnow", fmt="text", argv=["a b"])
    assert line.count(b"\n") == 1
    assert b" INFO [logwrap] start\\nnow argv=" in line


def test_a_wrapper_record_keeps_a_clashing_field_under_another_name() -> None:
    record = json.loads(render_wrapper_record(service="vllm", level="INFO", message="m", logger="other",
                                              timestamp=5, stream="both"))
    assert_valid(record)
    assert (record["logger"], record["logger_"], record["timestamp_"], record["stream_"]) == ("logwrap", "other", 5,
                                                                                              "both")


# --- the builder and its field rules ---------------------------------------------------------------------------


def test_a_field_named_like_a_typed_schema_field_is_renamed_only_when_its_value_does_not_fit() -> None:
    from mlops_logging._records import TYPED_FIELDS, build_record

    fits = {"stream": "stderr", "request_id": "r-1", "exception": "Traceback", "partial": True, "raw_b64": "eA==",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "trace_flags": "01"}
    wrong = {"stream": "both", "request_id": 7, "exception": ValueError("x"), "partial": "yes", "raw_b64": b"x",
             "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736", "span_id": "0" * 16, "trace_flags": 1}
    assert set(fits) == set(wrong) == set(TYPED_FIELDS)
    kept = build_record("INFO", "m", "s", "l", 1, dict(fits))
    assert {k: kept[k] for k in fits} == fits
    renamed = build_record("INFO", "m", "s", "l", 1, {"n": 1, **wrong})
    assert list(renamed)[6:] == ["n", "stream_", "request_id_", "exception_", "partial_", "raw_b64_", "trace_id_",
                                 "span_id_", "trace_flags_"]
    assert_valid(json.loads(render_json(renamed)))


def test_the_typed_fields_are_the_schemas_typed_optional_properties() -> None:
    from importlib import resources

    from mlops_logging._records import RESERVED, TYPED_FIELDS

    schema = json.loads(resources.files("mlops_logging").joinpath("record.schema.json").read_text())
    assert set(schema["properties"]) == RESERVED | set(TYPED_FIELDS)


def test_one_level_map_serves_every_name_and_number() -> None:
    from mlops_logging._level_map import LEVEL_NAMES, LEVEL_NUMBERS, METHOD_LEVELS, level_named

    assert set(LEVEL_NAMES.values()) == set(LEVEL_NUMBERS) == {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    assert (METHOD_LEVELS["exception"], METHOD_LEVELS["msg"], METHOD_LEVELS["warn"]) == ("ERROR", "INFO", "WARNING")
    assert level_named("Severe") == "ERROR" and level_named("loud") is None
    assert all(level_from_number(number) == level for level, number in LEVEL_NUMBERS.items())


# --- the FastAPI middleware's access record: its one-literal form is the builder's record --------------------------

_awkward = st.text(st.characters(codec="utf-8"), max_size=40) | st.text(max_size=40) | st.sampled_from(
    ["", "/caf\u00e9/\u4e2d\u6587", 'a"b\\c', "\x00\x1f\x7f\n\r\t", "\u2028\u2029\x85", "/caf\udce9", "x" * 20_000])
_hex = st.text("0123456789abcdef", min_size=1)


@given(message=_awkward, service=st.sampled_from(["fastapi", "caf\u00e9", 'q"s']), logger=_awkward,
       request_id=_awkward, method=_awkward, path=_awkward, query=_awkward,
       status=st.integers(min_value=0, max_value=999), duration=st.floats(min_value=0, max_value=1e12),
       sent=st.integers(min_value=0, max_value=2**63 - 1), client=st.none() | _awkward, user_agent=_awkward,
       trace=st.tuples(_hex, _hex, _hex), level=st.sampled_from(["INFO", "WARNING", "ERROR"]))
def test_the_access_record_literal_is_the_builders_record_with_the_middlewares_fields(
        message: str, service: str, logger: str, request_id: str, method: str, path: str, query: str, status: int,
        duration: float, sent: int, client: str | None, user_agent: str, trace: tuple[str, str, str],
        level: str) -> None:
    from unittest import mock

    from mlops_logging import _records
    from mlops_logging._records import THIS_PROCESS, access_record, build_record

    with mock.patch.object(_records, "format_timestamp", return_value="2026-11-26T08:16:47.123Z"):
        fast = access_record(level, message, service, logger, request_id, method, path, query, status, duration,
                             sent, client, user_agent, trace)
        built = build_record(level, message, service, logger, THIS_PROCESS)
    built.update({"request_id": request_id, "method": method, "path": path, "query": query, "status_code": status,
                  "duration_ms": duration, "bytes_sent": sent, "client": client, "user_agent": user_agent})
    built["trace_id"], built["span_id"], built["trace_flags"] = trace
    assert list(fast.items()) == list(built.items())  # the same fields, values and order
    assert render_json(fast) == render_json(built)  # so the same bytes, whatever the renderer's fallbacks do
