"""A console line on a pipe is at most PIPE_BUF bytes: cut with a marker naming the file that has the whole record, or,
without a file, split into whole lines that keep all of it; never inside a UTF-8 character or a backslash escape."""

from __future__ import annotations

import re
import select

from hypothesis import given
from hypothesis import strategies as st

from mlops_logging._console import _line, cut_line, split_line

TAIL = " \u2026[cut: {} bytes; whole record in /logs/svc.log]\n"
#: The text layout's escapes (escape_text) and JSON's (quoted values): a kept part holds only whole ones.
WHOLE_ESCAPES = re.compile(r'(?:[^\\]|\\[nrtbf"\\/]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4})*', re.DOTALL)
TEXT = (st.text(st.characters(codec="utf-8"), max_size=3000)
        | st.text("\\\n\"é€😀x\x85\u2028\udc80\ud800\x7f", max_size=3000))  # escapes and multi-byte characters
LIMITS = st.integers(min_value=300, max_value=select.PIPE_BUF)


def _console_line(message: str, value: str) -> bytes:
    return _line({"timestamp": "2026-01-01T00:00:00.000Z", "level": "INFO", "logger": "t", "message": message,
                  "service": "svc", "pid": 1, "field": value})


@given(TEXT, TEXT, LIMITS)
def test_a_cut_line_fits_keeps_whole_characters_and_escapes_and_says_how_much_it_left_out(message: str, value: str,
                                                                                          limit: int) -> None:
    line = _console_line(message, value)
    cut = cut_line(line, limit, TAIL)
    if len(line) <= limit:
        assert cut == line
        return
    match = re.fullmatch(rb"(.*) \xe2\x80\xa6\[cut: (\d+) bytes; whole record in /logs/svc\.log\]\n", cut, re.DOTALL)
    assert match is not None and len(cut) <= limit
    kept = match.group(1)
    assert line.startswith(kept) and len(kept) + int(match.group(2)) + 1 == len(line)
    assert b"\n" not in kept
    assert WHOLE_ESCAPES.fullmatch(kept.decode("utf-8"))  # valid UTF-8, no half escape at the end
    assert len(cut) > limit - 12  # nothing more than a character or an escape is given up


def test_a_line_of_exactly_pipe_buf_bytes_is_not_cut_and_one_more_byte_is() -> None:
    for size in (select.PIPE_BUF, select.PIPE_BUF + 1):
        line = b"x" * (size - 1) + b"\n"
        cut = cut_line(line, select.PIPE_BUF, TAIL)
        assert (cut == line) == (size <= select.PIPE_BUF)
        assert len(cut) <= select.PIPE_BUF


@given(TEXT, LIMITS)
def test_a_split_line_is_whole_lines_each_with_the_head_that_hold_all_of_it(message: str, limit: int) -> None:
    line = _console_line(message * 8, "v")
    head = len(b"2026-01-01T00:00:00.000Z INFO t: ")
    pieces = split_line(line, limit, head)
    continues, continued = " \u2026[continues]\n".encode(), "\u2026[continued] ".encode()
    assert all(len(p) <= limit and p.count(b"\n") == 1 and p.endswith(b"\n") for p in pieces)
    assert all(p[:head] == line[:head] for p in pieces)
    assert all(p.endswith(continues) for p in pieces[:-1])
    assert all(p[head:].startswith(continued) for p in pieces[1:])
    for piece in pieces:
        assert WHOLE_ESCAPES.fullmatch(piece.decode("utf-8"))
    rebuilt = pieces[0][:-len(continues)] if len(pieces) > 1 else pieces[0]
    for index, piece in enumerate(pieces[1:], 1):
        rebuilt += piece[head + len(continued):] if index == len(pieces) - 1 else piece[head + len(continued):
                                                                                         -len(continues)]
    assert rebuilt == line
