"""W3C Trace Context ``traceparent`` values, as the FastAPI middleware reads them and the gateway writes them.

The rules (https://www.w3.org/TR/trace-context/#traceparent-header): version 00 is exactly ``00-<32 hex>-<16 hex>-
<2 hex>``, lower-case; a later version may append ``-<fields>`` (the first four are read); version ff, upper-case hex
and all-zero ids are invalid. An invalid value is never an error: it is None.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_logging._traceparent import (
    is_span_id,
    is_trace_flags,
    is_trace_id,
    make_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)

TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


def test_a_version_00_value_gives_its_trace_id_parent_id_and_flags() -> None:
    assert parse_traceparent(VALID.encode()) == (TRACE, PARENT, "01")
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-00".encode()) == (TRACE, PARENT, "00")


def test_a_later_version_is_read_by_its_first_four_fields_extra_fields_and_all() -> None:
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01".encode()) == (TRACE, PARENT, "01")
    assert parse_traceparent(f"cc-{TRACE}-{PARENT}-09-what-the-future-adds".encode()) == (TRACE, PARENT, "09")


MALFORMED = {
    "54 characters": VALID[:-1],
    "56 characters": VALID + "0",
    "upper-case trace id": f"00-{TRACE.upper()}-{PARENT}-01",
    "upper-case parent id": f"00-{TRACE}-{PARENT.upper()}-01",
    "upper-case flags": f"00-{TRACE}-{PARENT}-0A",
    "all-zero trace id": f"00-{'0' * 32}-{PARENT}-01",
    "all-zero parent id": f"00-{TRACE}-{'0' * 16}-01",
    "version ff": f"ff-{TRACE}-{PARENT}-01",
    "version 00 with an extra field": f"{VALID}-extra",
    "a later version, more characters without a dash": f"01-{TRACE}-{PARENT}-01extra",
    "not hex": f"00-{TRACE[:-1]}g-{PARENT}-01",
    "underscores for dashes": VALID.replace("-", "_"),
    "two values joined (two headers)": f"{VALID},{VALID}",
    "leading space": f" {VALID}"[:55],
    "empty": "",
    "10 KB": VALID + "-" + "a" * 10_000,
    "10 KB of a later version's fields": "01" + VALID[2:] + "-" + "a" * 10_000,
}


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_every_malformed_value_is_none_never_an_error(value: str) -> None:
    expected_valid = value.startswith("01-") and len(value) > 10_000  # a later version may append fields
    assert (parse_traceparent(value.encode("latin-1")) is not None) == expected_valid


@given(st.binary(max_size=120))
def test_any_bytes_give_none_or_ids_a_record_may_carry(value: bytes) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        trace_id, parent_id, flags = parsed
        assert is_trace_id(trace_id) and is_span_id(parent_id) and is_trace_flags(flags)
        assert value.startswith(make_traceparent(trace_id, parent_id, flags)[2:].encode(), 2)


@given(st.from_regex(r"\A[0-9a-e][0-9a-f]-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z"))
def test_any_well_formed_value_with_nonzero_ids_is_read_back_as_written(value: str) -> None:
    zero = value[3:35] == "0" * 32 or value[36:52] == "0" * 16
    assert parse_traceparent(value.encode()) == (None if zero else (value[3:35], value[36:52], value[53:55]))


def test_new_ids_are_valid_distinct_and_make_a_value_that_reads_back() -> None:
    traces = {new_trace_id() for _ in range(1000)}
    spans = {new_span_id() for _ in range(1000)}
    assert len(traces) == len(spans) == 1000
    assert all(is_trace_id(t) for t in traces) and all(is_span_id(s) for s in spans)
    value = make_traceparent(next(iter(traces)), next(iter(spans)), "01")
    assert parse_traceparent(value.encode()) == (next(iter(traces)), next(iter(spans)), "01")


def test_the_field_checks_take_only_lower_case_hex_of_the_right_length_and_no_zero_id() -> None:
    assert is_trace_id(TRACE) and not is_trace_id(TRACE.upper()) and not is_trace_id("0" * 32)
    assert not is_trace_id(TRACE[:-1]) and not is_trace_id(int(TRACE, 16)) and not is_trace_id(TRACE + "\n")
    assert is_span_id(PARENT) and not is_span_id("0" * 16) and not is_span_id(PARENT + "0")
    assert is_trace_flags("01") and is_trace_flags("ff") and not is_trace_flags("1") and not is_trace_flags(1)
