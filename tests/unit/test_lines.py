"""The framer: one stream's bytes -> records. Pure logic, fed by hand; the real-process tests live in integration/."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_logging._framer import StreamFramer
from mlops_logging._line_text import clean_line
from mlops_logging.testing import assert_valid

TS = 1_795_680_000.25  # a fixed wall clock, so outputs of different runs compare byte for byte


def framer(**kwargs: Any) -> StreamFramer:
    options: dict[str, Any] = {"service": "vllm", "stream": "stdout", "clock": lambda: TS}
    options.update(kwargs)
    return StreamFramer(**options)


def run(data: bytes | list[bytes], **kwargs: Any) -> bytes:
    """Feed ``data`` (one chunk or a list of chunks), then close; all output."""
    f = framer(**kwargs)
    chunks = [data] if isinstance(data, bytes) else data
    return b"".join(f.feed(chunk, 1.0) for chunk in chunks) + f.close(2.0)


def records(data: bytes | list[bytes], **kwargs: Any) -> list[dict[str, Any]]:
    out = run(data, **kwargs)
    assert out == b"" or out.endswith(b"\n")
    result = [json.loads(line) for line in out.split(b"\n")[:-1]]
    for record in result:
        assert_valid(record)
    return result


def texts(data: bytes | list[bytes], **kwargs: Any) -> list[str]:
    return run(data, fmt="text", **kwargs).decode().split("\n")[:-1]


# --- the record ------------------------------------------------------------------------------------------------------


def test_one_json_record_per_line_with_the_schema_keys_in_order() -> None:
    out = run(b"(APIServer pid=1) INFO 11-26 08:16:47 [api.py:1] hello\n", pid=4242, logger="vllm.server")
    assert out == (
        b'{"timestamp":"2026-11-26T08:00:00.250Z","level":"INFO",'
        b'"message":"(APIServer pid=1) INFO 11-26 08:16:47 [api.py:1] hello",'
        b'"service":"vllm","logger":"vllm.server","pid":4242,"stream":"stdout"}\n'
    )


def test_logger_and_pid_are_left_out_when_not_given() -> None:
    (record,) = records(b"x\n", stream="stderr")
    assert list(record) == ["timestamp", "level", "message", "service", "stream"]
    assert record["stream"] == "stderr"


def test_text_format_is_timestamp_level_stream_line() -> None:
    assert texts(b"WARNING:  careful\nplain\n", stream="stderr") == [
        "2026-11-26T08:00:00.250Z WARNING [stderr] WARNING:  careful",
        "2026-11-26T08:00:00.250Z INFO [stderr] plain",
    ]


def test_text_format_escapes_control_characters_so_one_record_is_one_line() -> None:
    assert texts(b"a\tb\\c\x00d\x7fe\xe2\x80\xa8f\xe2\x80\xa9g\xc2\x85h\x0bi\x1cj\n") == [
        "2026-11-26T08:00:00.250Z INFO [stdout] a\\tb\\\\c\\x00d\\x7fe\\u2028f\\u2029g\\u0085h\\x0bi\\x1cj"
    ]


def test_a_record_is_one_line_even_when_the_message_holds_json_special_characters() -> None:
    line = b'INFO:     127.0.0.1:1 - "GET /a\\b HTTP/1.1" 200 \x01\t'
    (record,) = records(line + b"\n")
    assert record["message"] == line.decode()


def test_the_timestamp_is_the_wall_clock_at_read_time() -> None:
    (record,) = records(b"x\n")
    assert record["timestamp"] == "2026-11-26T08:00:00.250Z"


def test_bad_arguments_are_refused() -> None:
    from mlops_logging._errors import LogSetupError

    with pytest.raises(LogSetupError):
        StreamFramer(service="../etc", stream="stdout")
    with pytest.raises(ValueError):
        StreamFramer(service="vllm", stream="stdin")
    with pytest.raises(ValueError):
        StreamFramer(service="vllm", stream="stdout", fmt="xml")
    with pytest.raises(ValueError):
        StreamFramer(service="vllm", stream="stdout", max_line_bytes=0)


# --- levels and continuation lines -----------------------------------------------------------------------------------


def test_level_is_parsed_from_the_line_and_anything_else_is_info() -> None:
    got = records(b"ERROR:    boom\n2026/11/26 08:19:10 WARNING mlflow.x: hm\nan error occurred\n")
    assert [r["level"] for r in got] == ["ERROR", "WARNING", "INFO"]


def test_continuation_lines_inherit_the_level_of_the_line_they_continue() -> None:
    data = b"WARNING:  first\n  indented\n\tmore\n\nnext plain\n  indented after plain\n"
    expected = ["WARNING", "WARNING", "WARNING", "WARNING", "INFO", "INFO"]
    assert [r["level"] for r in records(data)] == expected
    assert [line.split()[1] for line in texts(data)] == expected


@pytest.mark.parametrize("native", [True, False], ids=["c-fast-path", "python-fast-path"])
def test_a_line_that_only_starts_like_the_chunks_first_glog_line_is_not_given_its_level(native: bool) -> None:
    """The one-prefix shortcut compares every byte the marker grammar looked at, the glog letter's tail included."""
    data = b"W1126 08:17:04.841561 12 f.cc:3] x\nW11 is not a glog line\n"
    assert [line.split()[1] for line in texts(data, native=native)] == ["WARNING", "INFO"]
    assert run(data, native=native) == run(data, fast=False)


def test_continuation_inherits_across_feeds() -> None:
    f = framer()
    f.feed(b"ERROR:    first\n", 1.0)
    out = f.feed(b"  continued\n", 1.1)
    assert json.loads(out)["level"] == "ERROR"


# --- cleaning --------------------------------------------------------------------------------------------------------


def test_cr_and_ansi_are_stripped() -> None:
    data = (
        b"\x1b[32mINFO\x1b[0m:     Started server process [1]\n"  # uvicorn with colours
        b"(APIServer pid=1) INFO 11-26 08:16:47 [api_utils.py:347] banner\r\n"  # vLLM banner ends in CR
        b"\rLoading: 0%\rLoading: 50%\rLoading: 100%\n"  # progress bar: the final redraw
        b"\x1b]0;title\x07after title\n"  # OSC
        b"crlf line\r\r\n"
    )
    got = records(data)
    assert [r["message"] for r in got] == [
        "INFO:     Started server process [1]",
        "(APIServer pid=1) INFO 11-26 08:16:47 [api_utils.py:347] banner",
        "Loading: 100%",
        "after title",
        "crlf line",
    ]
    assert got[0]["level"] == "INFO"
    assert [line.split(" ", 3)[3].split("\traw_b64=")[0] for line in texts(data)] == [r["message"] for r in got]


@pytest.mark.parametrize("line", [b"\x1b[32mINFO\x1b[0m:     coloured", b"crlf ending\r",
                                  b"\rLoading: 0%\rLoading: 100%", b"\x1b]0;title\x07after title",
                                  b"bad \xff \x1b[1m", b"\r"])
def test_a_line_the_cleaning_changed_keeps_its_original_bytes_in_raw_b64(line: bytes) -> None:
    (record,) = records(line + b"\n")
    assert base64.b64decode(record["raw_b64"]) == line
    assert "\x1b" not in record["message"] and "\r" not in record["message"]
    (text,) = texts(line + b"\n")
    assert text.endswith("\traw_b64=" + base64.b64encode(line).decode())


def test_a_line_the_cleaning_left_alone_has_no_raw_b64() -> None:
    assert [list(r) for r in records(b"plain\ttab\n\n")] == [["timestamp", "level", "message", "service", "stream"]] * 2
    assert all("raw_b64=" not in line for line in texts(b"plain\ttab\n\n"))


def test_text_records_mark_pieces_partial_in_a_tab_separated_field_no_line_can_forge() -> None:
    assert texts(b"abcdefghij", max_line_bytes=6) == [
        "2026-11-26T08:00:00.250Z INFO [stdout] abcdef\tpartial=true",
        "2026-11-26T08:00:00.250Z INFO [stdout] ghij\tpartial=true",
    ]
    # A line that looks like it ends with those fields is just text: its TAB is escaped, a field's is not.
    assert texts(b"x\tpartial=true\n") == ["2026-11-26T08:00:00.250Z INFO [stdout] x\\tpartial=true"]


def test_clean_line_rules() -> None:
    assert clean_line("abc\r") == "abc"
    assert clean_line("old text\rnew") == "new"
    assert clean_line("\x1b[1;31mred\x1b[0m") == "red"
    assert clean_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert clean_line("no escapes") == "no escapes"


# --- invalid UTF-8 ---------------------------------------------------------------------------------------------------


def test_invalid_utf8_round_trips_through_raw_b64() -> None:
    line = b"bin \xff\xfe\x00 \xe2\x82 end"
    (record,) = records(line + b"\n")
    assert base64.b64decode(record["raw_b64"]) == line
    assert record["message"] == line.decode("utf-8", "replace")
    assert "\ufffd" in record["message"]


def test_valid_utf8_has_no_raw_b64() -> None:
    (record,) = records("héllo € 日本\n".encode())
    assert "raw_b64" not in record
    assert record["message"] == "héllo € 日本"


def test_invalid_utf8_in_text_mode_is_written_as_hex_escapes_and_kept_in_raw_b64() -> None:
    assert texts(b"a\xffb\\\n") == ["2026-11-26T08:00:00.250Z INFO [stdout] a\\xffb\\\\\traw_b64=Yf9iXA=="]


# --- long and unterminated lines -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_lines_of_max_minus_one_max_and_max_plus_one_bytes(fmt: str) -> None:
    m = 64
    lines = [b"a" * (m - 1), b"b" * m, b"c" * (m + 1)]
    data = b"".join(line + b"\n" for line in lines)
    if fmt == "text":
        assert [t.split(" ", 3)[3] for t in texts(data, max_line_bytes=m)] == [
            "a" * 63, "b" * 64, "c" * 64 + "\tpartial=true", "c"]
        return
    got = records(data, max_line_bytes=m)
    assert [(r["message"], r.get("partial", False)) for r in got] == [
        ("a" * 63, False),
        ("b" * 64, False),
        ("c" * 64, True),  # partial: the line goes on in the next record
        ("c", False),  # the last piece ends the line
    ]
    assert reassemble(got) == lines


def reassemble(recs: list[dict[str, Any]]) -> list[bytes]:
    """Lines back from records: a partial record continues in the next one."""
    lines: list[bytes] = []
    current = b""
    for record in recs:
        current += base64.b64decode(record["raw_b64"]) if "raw_b64" in record else record["message"].encode()
        if not record.get("partial"):
            lines.append(current)
            current = b""
    if current:
        lines.append(current)
    return lines


def test_a_long_line_arriving_in_small_chunks_is_split_the_same_way() -> None:
    data = b"x" * 250 + b"\n"
    at_once = records(data, max_line_bytes=100)
    trickled = records([data[i : i + 7] for i in range(0, len(data), 7)], max_line_bytes=100)
    assert at_once == trickled
    assert [len(r["message"]) for r in at_once] == [100, 100, 50]


def test_never_cuts_inside_a_utf8_character() -> None:
    data = "€".encode() * 50 + b"\n"  # 3 bytes each
    got = records(data, max_line_bytes=10)
    assert all("raw_b64" not in r for r in got)
    assert [len(r["message"].encode()) for r in got] == [9] * 16 + [6]
    assert "".join(r["message"] for r in got) == "€" * 50


def test_never_holds_more_than_max_line_bytes_of_an_unfinished_line() -> None:
    f = framer(max_line_bytes=1000)
    emitted = b""
    for _ in range(100):
        emitted += f.feed(b"y" * 333, 1.0)
        assert len(f._pending) <= 1000
    assert emitted.count(b"\n") == 33  # 33 300 bytes so far: 33 full pieces out, the rest held


def test_partial_last_line_is_flushed_on_close() -> None:
    got = records(b"complete\nunterminated")
    assert [(r["message"], r.get("partial", False)) for r in got] == [("complete", False), ("unterminated", True)]


def test_unterminated_line_is_flushed_after_an_idle_gap_and_not_merged_with_the_rest() -> None:
    f = framer(idle_flush=0.2)
    assert f.feed(b"done\npart", 10.0).count(b"\n") == 1
    assert f.next_deadline() == pytest.approx(10.2)
    assert f.flush_idle(10.1) == b""
    first = json.loads(f.flush_idle(10.2))
    assert (first["message"], first["partial"]) == ("part", True)
    assert f.next_deadline() is None
    second = json.loads(f.feed(b" rest\n", 11.0))
    assert second["message"] == " rest"
    assert "partial" not in second  # it ends the line
    assert second["level"] == first["level"]


def test_next_deadline_is_none_when_nothing_is_held() -> None:
    f = framer()
    assert f.next_deadline() is None
    f.feed(b"whole line\n", 1.0)
    assert f.next_deadline() is None
    assert f.close(2.0) == b""


def test_counters() -> None:
    f = framer(max_line_bytes=10)
    f.feed(b"a\n" + b"b" * 25 + b"\nc", 1.0)
    f.close(2.0)
    assert f.lines_in == 3
    assert f.records_out == 5


# --- tracebacks ------------------------------------------------------------------------------------------------------

TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "/app/server.py", line 12, in handle\n'
    b"    result = compute(x)\n"
    b"             ^^^^^^^^^^\n"
    b'  File "/app/server.py", line 5, in compute\n'
    b"    raise ValueError('bad input')\n"
    b"ValueError: bad input\n"
)
CHAINED = (
    TRACEBACK + b"\nDuring handling of the above exception, another exception occurred:\n\n"
    b"Traceback (most recent call last):\n"
    b'  File "/app/server.py", line 14, in handle\n'
    b"    raise RuntimeError('wrapped') from exc\n"
    b"RuntimeError: wrapped\n"
)


def test_traceback_is_one_error_record() -> None:
    got = records(b"INFO:     before\n" + TRACEBACK + b"INFO:     after\n")
    assert [r["level"] for r in got] == ["INFO", "ERROR", "INFO"]
    assert got[1]["message"] == TRACEBACK.decode()[:-1]


def test_chained_traceback_is_one_record() -> None:
    got = records(CHAINED + b"INFO:     after\n")
    assert [r["level"] for r in got] == ["ERROR", "INFO"]
    assert got[0]["message"] == CHAINED.decode()[:-1]


def test_traceback_in_text_mode_is_one_error_record_per_line() -> None:
    lines = texts(CHAINED + b"INFO:     after\n")
    assert [line.split(" ", 2)[1] for line in lines] == ["ERROR"] * CHAINED.count(b"\n") + ["INFO"]


def test_traceback_is_flushed_when_the_next_line_arrives_or_after_an_idle_gap() -> None:
    f = framer(idle_flush=0.2)
    assert f.feed(TRACEBACK, 5.0) == b""  # a chained part might follow
    assert f.next_deadline() == pytest.approx(5.2)
    (record,) = [json.loads(line) for line in f.flush_idle(5.3).splitlines()]
    assert record["level"] == "ERROR" and "partial" not in record
    assert json.loads(f.feed(b"INFO:     next\n", 6.0))["level"] == "INFO"


def test_a_traceback_cut_by_an_idle_gap_is_partial_and_goes_on() -> None:
    f = framer(idle_flush=0.2)
    head, tail = TRACEBACK[:60], TRACEBACK[60:]
    head = head[: head.rfind(b"\n") + 1]
    tail = TRACEBACK[len(head) :]
    assert f.feed(head, 1.0) == b""
    first = json.loads(f.flush_idle(1.5))
    assert first["partial"] is True and first["level"] == "ERROR"
    f.feed(tail, 2.0)
    second = json.loads(f.close(3.0))
    assert second["level"] == "ERROR"
    # The part emitted early ends with its last line's newline: the parts concatenate to the whole traceback.
    assert first["message"].endswith("\n")
    assert first["message"] + second["message"] == TRACEBACK.decode()[:-1]


def test_traceback_group_is_bounded() -> None:
    body = b"".join(b'  File "/x.py", line %d, in f\n' % i for i in range(600))
    got = records(b"Traceback (most recent call last):\n" + body + b"RecursionError: too deep\n")
    assert all(r["level"] == "ERROR" for r in got)
    assert [r["message"].count("\n") for r in got] == [256, 256, 89]  # the first two end with a newline
    assert [r.get("partial", False) for r in got] == [True, True, False]


FOREIGN = b"(EngineCore_DP0 pid=8) WARNING 11-26 08:16:47 [core.py:1] engine says hi"
INTERRUPTED = (b"Traceback (most recent call last):\n"
               b'  File "/app/x.py", line 3, in <module>\n'
               + FOREIGN + b"\n"
               b"    main()\n"
               b"ValueError: bad\n"
               b"INFO:     after\n")
# The three paths of the framer: the C fast path, the pure-Python fast path, the exact line-by-line path.
PATHS = pytest.mark.parametrize("path", [{}, {"native": False}, {"fast": False}], ids=["c", "python", "exact"])


@PATHS
def test_a_traceback_interrupted_by_another_process_line_goes_on_after_it_at_error(path: dict[str, bool]) -> None:
    """One stream, two processes (vLLM's API server and engine): the other process's line is its own record, and the
    rest of the traceback, its exception line included, stays ERROR in a record that continues the first part."""
    got = records(INTERRUPTED, **path)
    assert [(r["level"], r["message"], r.get("partial", False)) for r in got] == [
        ("ERROR", 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in <module>\n', True),
        ("WARNING", FOREIGN.decode(), False),
        ("ERROR", "    main()\nValueError: bad", False),
        ("INFO", "INFO:     after", False),
    ]


@PATHS
def test_a_traceback_interrupted_by_another_process_line_keeps_error_on_every_line_in_text_mode(
        path: dict[str, bool]) -> None:
    assert [line.split(" ", 2)[1] for line in texts(INTERRUPTED, **path)] == [
        "ERROR", "ERROR", "WARNING", "ERROR", "ERROR", "INFO"]


def test_a_traceback_stays_open_across_at_most_16_lines_of_other_processes_in_a_row() -> None:
    other = b"INFO:     other\n"
    got = records(b"Traceback (most recent call last):\n" + other * 17 + b"  File x\n")
    assert [r["level"] for r in got] == ["ERROR"] + ["INFO"] * 17 + ["INFO"]  # over: "  File x" continues INFO
    got = records(b"Traceback (most recent call last):\n" + other * 16 + b"  File x\n")
    assert [r["level"] for r in got] == ["ERROR"] + ["INFO"] * 16 + ["ERROR"]


def test_a_line_without_a_marker_still_ends_an_unfinished_traceback() -> None:
    got = records(b"Traceback (most recent call last):\n  File x\nplain print\n  indented\n")
    assert [(r["level"], r["message"]) for r in got] == [
        ("ERROR", "Traceback (most recent call last):\n  File x"), ("INFO", "plain print"), ("INFO", "  indented")]


def test_traceback_with_invalid_utf8_keeps_the_raw_bytes() -> None:
    data = b"Traceback (most recent call last):\n  File \xff\nKeyError: 1\n"
    (record,) = records(data)
    assert base64.b64decode(record["raw_b64"]) == data[:-1]


# vLLM's own formatter on a logged exception and a two-line warning (tests/fixtures/README.md says how it was made).
VLLM_MULTILINE = (Path(__file__).resolve().parent.parent / "fixtures" / "vllm-0.32-cpu-multiline.log").read_bytes()
H = b"(MainProcess pid=7653) ERROR 11-26 12:51:15 [vlog.py:13] "


def test_a_vllm_multi_line_message_is_one_record_at_its_level() -> None:
    got = records(VLLM_MULTILINE)
    assert [r["level"] for r in got] == ["INFO", "ERROR", "WARNING", "INFO"]
    error = got[1]["message"].split("\n")
    assert error[0] == H.decode() + "AsyncLLM output_handler failed."  # the first line whole, as any line
    assert error[1:3] == ["Traceback (most recent call last):", '  File "/tmp/wb/vlog.py", line 9, in <module>']
    assert error[-1] == "RuntimeError: engine step failed" and len(error) == 14
    assert got[2]["message"] == ("(MainProcess pid=7653) WARNING 11-26 12:51:15 [vlog.py:14] a warning\n"
                                 "with a second line")
    assert not any("partial" in r or "\r" in r["message"] for r in got)


def test_the_raw_bytes_of_a_vllm_multi_line_record_are_all_its_lines_headers_and_crs_included() -> None:
    got = records(VLLM_MULTILINE)
    lines = VLLM_MULTILINE.split(b"\n")
    assert base64.b64decode(got[1]["raw_b64"]) == b"\n".join(lines[1:15])
    assert base64.b64decode(got[2]["raw_b64"]) == b"\n".join(lines[15:17])


def test_a_vllm_multi_line_message_is_one_record_per_line_in_text_mode() -> None:
    lines = texts(VLLM_MULTILINE)
    assert len(lines) == VLLM_MULTILINE.count(b"\n")
    assert [line.split(" ", 2)[1] for line in lines] == ["INFO"] + ["ERROR"] * 14 + ["WARNING"] * 2 + ["INFO"]


def test_a_vllm_multi_line_message_ends_at_a_line_with_another_header() -> None:
    other = b"(EngineCore_DP0 pid=8) INFO 11-26 12:51:15 [core.py:1] engine says hi\n"
    data = H + b"failed.\r\n" + H + b"Traceback (most recent call last):\r\n" + other + H + b"ValueError: x\n"
    got = records(data)
    assert [(r["level"], r["message"]) for r in got] == [
        ("ERROR", H.decode() + "failed.\nTraceback (most recent call last):"),
        ("INFO", other.decode().strip()),
        ("ERROR", H.decode() + "ValueError: x"),  # the rest of the message, on its own
    ]


@pytest.mark.parametrize("next_line", [b"", b"Traceback (most recent call last):"])
def test_an_empty_line_or_a_traceback_without_the_header_ends_a_vllm_multi_line_message(next_line: bytes) -> None:
    got = records(H + b"failed.\r\n" + next_line + b"\nINFO:     after\n")
    # (The traceback that starts after it is unfinished when another line with a marker comes: it may go on later.)
    assert [(r["level"], r["message"], r.get("partial", False)) for r in got] == [
        ("ERROR", H.decode() + "failed.", False),
        ("ERROR", next_line.decode() + "\n" * bool(next_line), bool(next_line)),
        ("INFO", "INFO:     after", False)]


def test_a_vllm_multi_line_message_cut_by_an_idle_gap_is_partial_and_goes_on() -> None:
    f = framer(idle_flush=0.2)
    assert f.feed(H + b"failed.\r\n" + H + b"Traceback (most recent call last):\r\n", 1.0) == b""
    first = json.loads(f.flush_idle(1.5))
    assert (first["level"], first["partial"]) == ("ERROR", True)
    assert first["message"] == H.decode() + "failed.\nTraceback (most recent call last):\n"
    second = json.loads(f.feed(H + b"  File x\r\n" + H + b"ValueError: x\n", 2.0))
    assert second["message"] == "  File x\nValueError: x" and "partial" not in second
    assert base64.b64decode(second["raw_b64"]) == H + b"  File x\r\n" + H + b"ValueError: x"


def test_crlf_lines_without_a_vllm_header_stay_one_record_each() -> None:
    got = records(b"INFO:     a\r\nINFO:     b\r\n")
    assert [r["message"] for r in got] == ["INFO:     a", "INFO:     b"]


# --- properties ------------------------------------------------------------------------------------------------------

FRAGMENTS = [
    b"\n", b"\n", b"\n", b"a", b"xyz ", b"  ", b"\t", b"\r", b"\r\n", b"\x1b[31m", b"\xff", b"\xe2\x82\xac",
    b"\xe2", b'"', b"\\", b"\x00", b"\x7f", b"INFO:     ", b"WARNING:  ",
    b"(APIServer pid=1) ERROR 11-26 08:16:47 [a.py:1] ", b"[W1126 08:17:04.841561457 utils.cpp:68] ",
    b"2026/11/26 08:19:10 DEBUG m: ", b"Traceback (most recent call last):",
    b"  File \"x.py\", line 1", b"ValueError: v",
    b"During handling of the above exception, another exception occurred:", b"/a/b.py:3: UserWarning: ",
    b"INFO", b"E" * 40, b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\x0b", b"\x0c", b"\x1c",
]
streams = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)), max_size=60).map(b"".join)
# Fragments of well-formed server output (what the chunk-at-a-time fast path takes).
SERVER_FRAGMENTS = [
    b"(APIServer pid=1) INFO 11-26 08:16:47 [a.py:1] ", b"(APIServer pid=1) WARNING 11-26 08:16:47 [a.py:1] ",
    b"INFO:     127.0.0.1:5 - \"GET / HTTP/1.1\" 200", b"ERROR:    boom", b"2026/11/26 08:19:10 INFO m: x",
    b"[2026-11-26 08:19:10 +0000] [1] [WARNING] w", b"I1126 08:17:04.841561  12 f.cc:3] ", b"plain text ",
    b"  indented", b"\tx", b"\\", b"\xc3\xa9", b"\r\n", b"\n", b"\n", b"\n", b"\n",
]
server_streams = st.lists(st.sampled_from(SERVER_FRAGMENTS), min_size=1, max_size=120).map(b"".join)
# No ESC, no CR, no traceback: records carry every byte (message, or raw_b64 when not UTF-8).
plain_streams = st.lists(
    st.one_of(st.sampled_from([f for f in FRAGMENTS if b"Traceback" not in f and b"\x1b" not in f
                               and b"\r" not in f]),
              st.binary(max_size=12).filter(lambda b: b"\x1b" not in b and b"\r" not in b)),
    max_size=60,
).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# The fast path comes in two implementations: the C extension (native=True, when built) and pure Python.
# test_speedups.py checks that the extension is built in the test environment.
NATIVE = pytest.mark.parametrize("native", [True, False], ids=["c-fast-path", "python-fast-path"])


@NATIVE
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(streams, server_streams, server_streams),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       fmt=st.sampled_from(["json", "text"]), max_line_bytes=st.sampled_from([5, 16, 64, 200, 65536, 65536]))
def test_any_chunking_gives_the_same_records_as_one_feed(native: bool, data: bytes, cuts: list[int], fmt: str,
                                                         max_line_bytes: int) -> None:
    reference = run(data, fmt=fmt, max_line_bytes=max_line_bytes, fast=False)
    assert run(chunked(data, cuts), fmt=fmt, max_line_bytes=max_line_bytes, native=native) == reference
    # the fast path agrees with the exact one
    assert run(data, fmt=fmt, max_line_bytes=max_line_bytes, native=native) == reference


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       max_line_bytes=st.sampled_from([5, 16, 65536]))
def test_every_output_line_is_a_valid_record(data: bytes, cuts: list[int], max_line_bytes: int) -> None:
    out = run(chunked(data, cuts), max_line_bytes=max_line_bytes, pid=9)
    assert out == b"" or out.endswith(b"\n")
    for line in out.split(b"\n")[:-1]:
        assert_valid(json.loads(line))
    text = run(chunked(data, cuts), fmt="text", max_line_bytes=max_line_bytes)
    assert text.count(b"\n") == len(text.decode().splitlines())  # no stray line breaks inside a text record


@NATIVE
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(streams, st.binary(max_size=200), st.text(max_size=80).map(lambda t: (t + "\n").encode())),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_every_text_record_is_one_line_for_str_splitlines_on_every_path(native: bool, data: bytes,
                                                                        cuts: list[int]) -> None:
    out = run(chunked(data, cuts), fmt="text", native=native)
    assert out == run(data, fmt="text", fast=False)  # C or Python fast path == exact path
    assert out == b"" or out.endswith(b"\n")
    lines = out.decode("utf-8").splitlines()  # str.splitlines: also U+2028, U+2029, NEL, VT, FF, FS, GS, RS
    assert len(lines) == out.count(b"\n")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=plain_streams, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       max_line_bytes=st.sampled_from([5, 16, 65536]))
def test_messages_and_raw_bytes_reconstruct_the_input_lines(data: bytes, cuts: list[int],
                                                            max_line_bytes: int) -> None:
    got = records(chunked(data, cuts), max_line_bytes=max_line_bytes)
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert reassemble(got) == expected
    assert all(len(base64.b64decode(r["raw_b64"]) if "raw_b64" in r else r["message"].encode()) <= max_line_bytes
               for r in got)


# Realistic lines, whole: what a vLLM container prints (both process tags, every level, uvicorn access lines with
# quotes, MLflow, gunicorn, glog, warnings headers), tracebacks, indented continuations, and the rarer bytes the exact
# path must handle (invalid UTF-8, ANSI colours, CRLF and lone CR, tabs, backslashes, NUL, over-long lines).
REALISTIC_LINES = [
    b"(APIServer pid=6892) INFO 11-26 08:16:47 [api_server.py:1204] Starting vLLM API server on http://0.0.0.0:8000",
    b"(APIServer pid=6892) WARNING 11-26 08:16:47 [config.py:512] max_model_len is greater than the model's",
    b"(EngineCore_DP0 pid=7) DEBUG 11-26 08:16:48 [core.py:66] scheduler step 12",
    b"(EngineCore_DP0 pid=7) ERROR 11-26 08:16:49 [core.py:70] EngineCore failed to start.",
    b"(APIServer pid=6892) CRITICAL 11-26 08:16:49 [launcher.py:9] engine dead",
    b"INFO 11-26 08:16:47 [__init__.py:241] Automatically detected platform cpu.",
    b'INFO:     127.0.0.1:53642 - "POST /v1/completions HTTP/1.1" 200 OK',
    b'INFO:     10.0.0.2:40004 - "GET /metrics?a=\\"b\\" HTTP/1.1" 404 Not Found',
    b"WARNING:  Invalid HTTP request received.",
    b"2026/11/26 08:19:10 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
    b"2026/11/26 08:19:24 WARNING mlflow.utils.requirements_utils: Found torch version (2.13.0+cpu)",
    b"[2026-11-26 08:19:10 +0000] [123] [INFO] Booting worker with pid: 123",
    b"[2026-11-26 08:19:11 +0000] [124] [ERROR] Exception in worker process",
    b"[W1126 08:17:04.841561457 utils.cpp:68] Warning: could not find ITT",
    b"I1126 08:17:04.841561  12 file.cc:3] glog info",
    b"/usr/lib/python3.11/site-packages/torch/x.py:12: UserWarning: TypedStorage is deprecated",
    b"WARNING:root:slow step 9 took 1.856s",
    b"2026-11-26 08:16:47,123 - vllm.engine - ERROR - boom",
    b"Traceback (most recent call last):",
    b'  File "/app/server.py", line 12, in handle',
    b"    result = compute(x)",
    b"             ^^^^^^^^^^",
    b"ValueError: bad input",
    b"During handling of the above exception, another exception occurred:",
    b"RuntimeError: wrapped",
    b"",
    b"  indented continuation",
    b"\tindented with a tab",
    b"plain print without a level",
    b"caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac",
    b"binary \xff\xfe here",
    b"\x1b[32mINFO\x1b[0m:     coloured",
    b"crlf ending\r",
    b"\rLoading: 0%\rLoading: 100%",
    b"tab\tand back\\slash and NUL\x00 and DEL\x7f",
    b"INFO:     " + b"x" * 150,
    b"(APIServer pid=1) ERROR 11-26 12:51:15 [async_llm.py:906] AsyncLLM output_handler failed.\r",
    b"(APIServer pid=1) ERROR 11-26 12:51:15 [async_llm.py:906] Traceback (most recent call last):\r",
    b"(APIServer pid=1) ERROR 11-26 12:51:15 [async_llm.py:906]   File \"/x.py\", line 9, in run\r",
    b"(APIServer pid=1) ERROR 11-26 12:51:15 [async_llm.py:906] ValueError: bad",
    b"(APIServer pid=1) WARNING 11-26 08:16:47 [a.py:1] " + "é".encode() * 60,
]


@NATIVE
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.sampled_from(REALISTIC_LINES), min_size=1, max_size=80),
       unterminated=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
       fmt=st.sampled_from(["json", "text"]), max_line_bytes=st.sampled_from([64, 100, 65536]))
def test_realistic_mixes_in_any_chunking_give_the_exact_path_output(native: bool, picks: list[bytes],
                                                                    unterminated: bool, cuts: list[int], fmt: str,
                                                                    max_line_bytes: int) -> None:
    data = b"\n".join(picks) + (b"" if unterminated else b"\n")
    reference = run(data, fmt=fmt, max_line_bytes=max_line_bytes, fast=False)
    assert run(chunked(data, cuts), fmt=fmt, max_line_bytes=max_line_bytes, native=native) == reference
    assert run(data, fmt=fmt, max_line_bytes=max_line_bytes, native=native) == reference


# --- every record stream is lossless --------------------------------------------------------------------------------

_UNESCAPE = re.compile(r"\\(?:([nrt\\])|x([0-9a-f]{2})|u([0-9a-f]{4}))")
_NAMED = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _unescape_char(match: re.Match[str]) -> str:
    if match.group(1):
        return _NAMED[match.group(1)]
    if match.group(2):
        code = int(match.group(2), 16)
        return chr(code) if code < 0x80 else chr(0xDC00 + code)  # \xNN of 0x80 and up: an undecodable byte
    return chr(int(match.group(3), 16))


def rebuild_json(out: bytes) -> bytes:
    """The stream's bytes from its JSON records: raw_b64 or message; a record not marked partial ends a line."""
    data = b""
    for line in out.split(b"\n")[:-1]:
        record = json.loads(line)
        body = base64.b64decode(record["raw_b64"]) if "raw_b64" in record else record["message"].encode()
        data += body + (b"" if record.get("partial") else b"\n")
    return data


def rebuild_text(out: bytes) -> bytes:
    """The same from text records: ``<ts> <LEVEL> [<stream>] <escaped line>[<TAB>raw_b64=B64][<TAB>partial=true]``."""
    data = b""
    for line in out.decode().split("\n")[:-1]:
        _ts, _level, _stream, rest = line.split(" ", 3)
        text, *fields = rest.split("\t")
        partial = "partial=true" in fields
        raw = next((re.fullmatch(r"raw_b64=([A-Za-z0-9+/]*={0,2})", f) for f in fields if f.startswith("raw_b64=")),
                   None)
        if raw:
            body = base64.b64decode(raw.group(1))
        else:
            body = _UNESCAPE.sub(_unescape_char, text).encode("utf-8", "surrogateescape")
        data += body + (b"" if partial else b"\n")
    return data


def run_with_gaps(chunks: list[bytes], gaps: list[bool], **kwargs: Any) -> bytes:
    """Feed the chunks; after those with a gap, let the idle flush run (unterminated lines, open groups)."""
    f = framer(**kwargs)
    out = b""
    now = 1.0
    for chunk, gap in zip(chunks, gaps + [False] * len(chunks), strict=False):
        out += f.feed(chunk, now)
        if gap:
            now += 1.0
            out += f.flush_idle(now)
        now += 0.01
    return out + f.close(now)


@NATIVE
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(streams, server_streams,
                      st.lists(st.sampled_from(REALISTIC_LINES), min_size=1, max_size=40).map(b"\n".join),
                      st.just(VLLM_MULTILINE), st.just(INTERRUPTED)),
       cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12), gaps=st.lists(st.booleans()),
       fmt=st.sampled_from(["json", "text"]), max_line_bytes=st.sampled_from([5, 16, 64, 65536]))
def test_the_streams_bytes_can_be_rebuilt_from_its_records(native: bool, data: bytes, cuts: list[int],
                                                            gaps: list[bool], fmt: str, max_line_bytes: int) -> None:
    out = run_with_gaps(chunked(data, cuts), gaps, fmt=fmt, max_line_bytes=max_line_bytes, native=native)
    assert (rebuild_json if fmt == "json" else rebuild_text)(out) == data
