"""The framer: turns the bytes a child process writes on one stream into rendered log records.

Pure and in-memory (no I/O, no clock of its own except the wall-clock timestamp of each ``feed``), so the event loop in
``wrap`` only moves bytes. Rules, in the order they apply to a line (the bytes up to ``\\n``, without it):

- **Bytes -> text.** Invalid UTF-8 is replaced (U+FFFD) in a JSON ``message`` and written as ``\\xNN`` escapes in
  text.
- **Cleaning.** ANSI escape sequences (CSI such as colours, OSC such as titles/hyperlinks, other 2-byte ESC
  sequences) are removed, then trailing ``\\r`` characters. A ``\\r`` left in the middle of a line (a progress bar
  redrawing itself) keeps only the text after the last ``\\r``, i.e. the final redraw a terminal would show
  (``"\\rLoading 0%\\rLoading 100%"`` -> ``"Loading 100%"``). Passthrough keeps every byte.
- **Lossless.** Whenever ``message`` is not exactly the bytes its record covers (invalid UTF-8, cleaned, a vLLM
  message without its repeated headers), the record keeps those bytes in ``raw_b64`` (JSON field; text: a
  ``<TAB>raw_b64=...`` field after the line: an escaped line holds no TAB, so a reader can always tell). So the
  stream's bytes can be rebuilt from its records: for each record ``raw_b64`` (else ``message``, unescaped in
  text), then a newline unless the record is partial.
- **Level.** A structural marker on the line (see :mod:`_levels`); an indented or empty line inherits the level of the
  line before it; anything else is INFO.
- **Tracebacks.** ``Traceback (most recent call last):`` up to its exception line is ERROR. In JSON mode the whole
  traceback (with chained ``During handling ...`` / ``The above exception ...`` parts) becomes one record, lines
  joined with ``\\n``. The group is emitted when the next line shows the traceback is over, after ``idle_flush``
  seconds without input, at close, or when it reaches ``max_group_lines`` lines / ``4 * max_line_bytes`` bytes.
  A line with a level marker of its own inside an unfinished traceback is another process talking (two writers on
  one stream, as vLLM's API server and engine): it is a record of its own, and the traceback goes on after it, its
  indented lines and exception line still ERROR (at most :data:`MAX_INTERRUPTIONS` such lines in a row; an unmarked,
  unindented line ends the traceback). A group emitted before it is over (idle gap, size bound, such a line) is
  marked ``partial``, ends with its last line's newline and the traceback goes on in a later record. In text mode
  every line is its own record and keeps the ERROR level.
- **vLLM multi-line messages.** vLLM's log formatter repeats its header (``(APIServer pid=1) ERROR 11-26 12:51:15
  [async_llm.py:906] ``) on every line of a multi-line message (a logged exception, a config dump) and ends all
  but the last of them with ``\\r\\n``. In JSON mode such a message becomes one record at the header's level:
  the first line whole (as any line), then the rest of each following line after the header, joined with ``\\n``
  (``raw_b64`` has all the lines as written). It ends at its line without ``\\r``, or at a line without the same
  header (another process talking); the same idle and size bounds as for tracebacks apply. In text mode every line
  is its own record.
- **Long and unterminated lines.** A line longer than ``max_line_bytes`` is cut into pieces of at most that many bytes,
  never inside a UTF-8 character. ``partial`` (JSON ``"partial": true``, text ``<TAB>partial=true``) means *this record
  does not end a line: what follows it in the next record of the stream* (like the P/F tags of the CRI log format;
  for a traceback part, which ends with a newline, in a later record): every piece but the last of a split line is
  partial, so ``max+1`` bytes give a partial record of ``max`` bytes and a plain record of 1 byte, and reassembly is
  unambiguous. An unterminated line is emitted as a partial record after ``idle_flush`` seconds without input and at
  close; bytes are never merged across such a flush: when the rest of the line arrives it starts a new record
  (the last piece, up to the newline, not partial; possibly empty). At most ``max_line_bytes`` of an unfinished line
  are held in memory.

Speed: a chunk of complete lines without special cases (no ESC, CR, DEL, invalid UTF-8, over-long line, traceback or
warnings header, open traceback or split line) takes a fast path (:mod:`._fastpath`); anything else takes the exact
per-line path. The fast path is the optional C extension ``_speedups`` (one pass over the chunk, no Python object per
line) when it was built from the current grammar (its ``GRAMMAR_DIGEST`` is ``_levels.GRAMMAR_DIGEST``) and
``MLOPS_LOG_SPEEDUPS`` does not turn it off, else its pure-Python twin. All three give byte-identical output; the
property tests feed each of them and compare, and :attr:`StreamFramer.paths` counts the chunks each one rendered.
"""

from __future__ import annotations

import binascii
import os
import time
import warnings

from . import _levels as _lv
from ._errors import LogSetupError
from ._fastpath import PythonLines, RecordHeads
from ._level_map import LEVELS
from ._line_text import line_text
from ._records import build_record, format_timestamp
from ._render import render_json, render_stream_text
from ._settings import speedups_requested, validate_service

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["StreamFramer", "speedups_enabled"]


try:
    from . import _speedups
except ImportError:  # built without a C compiler: the pure-Python fast path does the same work
    _speedups = None  # type: ignore[assignment]  # the module or None, as MarkupSafe does
if _speedups is not None and getattr(_speedups, "GRAMMAR_DIGEST", None) != _lv.GRAMMAR_DIGEST:
    # Built from another grammar than _levels.py's (an editable install whose data changed since the last build): it
    # would classify lines differently, so it is not used.
    warnings.warn("mlops_logging._speedups was built from another level grammar than _levels.py's: the framer runs "
                  "in pure Python (regenerate with `make grammar`, rebuild with `pip install -e .`)", RuntimeWarning,
                  stacklevel=1)
    _speedups = None  # type: ignore[assignment]  # (the module or None, as above)

_LEVEL_INDEX = {level: index for index, level in enumerate(LEVELS)}


def speedups_enabled() -> bool:
    """Whether the framer's fast path runs in the C extension: built from this grammar, and not turned off by
    ``MLOPS_LOG_SPEEDUPS=0`` (read now; a bad value keeps the default here, logwrap refuses it at start: exit 2)."""
    try:
        requested = speedups_requested(os.environ)
    except LogSetupError:
        requested = True  # using the framer never fails on it
    return requested and _speedups is not None

#: An unfinished traceback stays open across at most this many lines of other processes in a row (see _line).
MAX_INTERRUPTIONS = 16
# group states: a Python traceback (body, after its exception line, after a chain marker), a vLLM multi-line message
_NONE, _BODY, _AFTER, _CHAIN, _MULTI = 0, 1, 2, 3, 4



def _check_arguments(service: str, stream: str, fmt: str, max_line_bytes: int) -> None:
    """A framer's arguments, checked once: a bad one is a bug of the caller (ValueError, LogSetupError)."""
    validate_service(service)
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
    if fmt not in ("json", "text"):
        raise ValueError(f"format must be 'json' or 'text', not {fmt!r}")
    if max_line_bytes < 1:
        raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes}")


class StreamFramer:
    """Turns one stream's bytes into rendered records (bytes, each ending in b"\\n")."""

    def __init__(
        self,
        *,
        service: str,
        stream: str,
        fmt: str = "json",
        max_line_bytes: int = 65536,
        idle_flush: float = 0.2,
        pid: int | None = None,
        logger: str | None = None,
        max_group_lines: int = 256,
        clock: Any = time.time,
        fast: bool = True,
        native: bool = True,
    ) -> None:
        _check_arguments(service, stream, fmt, max_line_bytes)
        self.service = service
        self.stream = stream
        self.fmt = fmt
        self.json = fmt == "json"
        self.max_line_bytes = max_line_bytes
        self.idle_flush = idle_flush
        self.pid = pid
        self.logger = logger
        self.max_group_lines = max_group_lines
        self.max_group_bytes = 4 * max_line_bytes
        self._clock = clock
        self._fast = fast  # False: every chunk takes the exact line-by-line path (tests compare the two)
        # The fast path: the C extension's, unless asked for the pure-Python one (native=False, for the tests),
        # turned off (MLOPS_LOG_SPEEDUPS=0) or not built; the two give the same bytes.
        self._native = native and speedups_enabled()
        self._render_lines = _speedups.render_lines if self._native else PythonLines().render_lines
        self.lines_in = 0
        self.records_out = 0
        # Which path rendered each chunk of complete lines: the C fast path, the pure-Python fast path, the exact path.
        # All three give the same bytes, so only these counters show that the fast path meant to run really does.
        self.native_chunks = 0
        self.python_chunks = 0
        self.exact_chunks = 0

        self._pending = b""  # unterminated bytes (at most max_line_bytes)
        self._cont = False  # the pending bytes continue a line of which a piece was already emitted
        self._cont_level = _lv.UNMARKED_LEVEL
        self._prev_level = _lv.UNMARKED_LEVEL  # level of the last line, inherited by indented/empty lines
        self._last_data: float | None = None  # monotonic time of the last feed that brought bytes
        # traceback group (JSON) / state (both formats)
        self._tb = _NONE
        self._group: list[str] = []
        self._group_raw: list[bytes] = []
        self._group_lossy = False
        self._interruptions = 0  # lines of other processes in a row inside the open traceback
        self._group_bytes = 0
        self._group_ts = ""
        self._group_level = "ERROR"
        self._multi_header = b""  # the header every line of an open vLLM multi-line message starts with
        self._tentative: list[tuple[bytes, str, bool]] = []  # blank lines after an exception line (JSON)
        # The fast path's record heads, cut out of a record of the one builder (so they cannot drift).
        self._heads = RecordHeads(self._record, json=self.json, stream=stream)

    # --- public API ------------------------------------------------------------------------------------------------

    @property
    def paths(self) -> dict[str, int]:
        """Chunks of complete lines rendered so far by each path: ``native`` (C), ``python`` (fast), ``exact``."""
        return {"native": self.native_chunks, "python": self.python_chunks, "exact": self.exact_chunks}

    def feed(self, data: bytes, now: float) -> bytes:
        """Append ``data`` (read at monotonic time ``now``); return the records now complete (b"" if none)."""
        if not data:
            return b""
        if type(data) is not bytes:
            data = bytes(data)
        self._last_data = now
        ts = format_timestamp(self._clock())
        out: list[bytes] = []
        pending = self._pending
        end = data.rfind(b"\n")
        if end >= 0:
            self._pending = b""
            # The complete lines are pending + data[:end + 1]; the fast path takes the two parts as they are (the
            # read's bytes through a view), which saves copying every chunk twice.
            body = data if end + 1 == len(data) else memoryview(data)[: end + 1]
            rendered = None
            if self._fast and self._tb == _NONE and not self._cont:
                rendered = self._fast_lines(pending, body, ts)
            if rendered is not None:
                out.append(rendered)
            else:
                self.exact_chunks += 1
                lines = (pending + body)[:-1].split(b"\n")
                self.lines_in += len(lines)
                self._slow_lines(lines, ts, out)
            rest = data[end + 1 :]
        else:
            rest = pending + data if pending else data
        if len(rest) > self.max_line_bytes:
            rest = self._pieces(rest, ts, out, final=False)
        self._pending = rest
        return out[0] if len(out) == 1 else b"".join(out)

    def flush_idle(self, now: float) -> bytes:
        """Records due because nothing arrived for ``idle_flush`` seconds (an open traceback, an unterminated line)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return b""
        out: list[bytes] = []
        ts = format_timestamp(self._clock())
        self._flush_group(out, final=False)
        if self._pending:
            self._piece(self._pending, ts, out, partial=True)
            self._pending = b""
        return b"".join(out)

    def restart_idle_clock(self, now: float) -> None:
        """The stream is read again after the reader paused it (backpressure): what is held waits ``idle_flush``
        from ``now``, as if its last bytes had just arrived."""
        if self._last_data is not None:
            self._last_data = now

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`flush_idle` has work, or None when nothing is held."""
        if self._last_data is None or not (self._pending or self._group or self._tentative):
            return None
        return self._last_data + self.idle_flush

    def close(self, now: float) -> bytes:
        """End of stream: flush everything; an unterminated last line becomes a partial record."""
        out: list[bytes] = []
        ts = format_timestamp(self._clock())
        self._flush_group(out, final=True)
        if self._pending or self._cont:
            self.lines_in += 1
        if self._pending:
            self._piece(self._pending, ts, out, partial=True)
            self._pending = b""
        self._cont = False
        return b"".join(out)

    # --- rendering -------------------------------------------------------------------------------------------------

    def _render(self, ts: str, level: str, message: str, raw: bytes | None, partial: bool, out: list[bytes]) -> None:
        """One record; ``raw``: the bytes it covers when ``message`` does not give them back (kept as raw_b64)."""
        self.records_out += 1
        raw_b64 = binascii.b2a_base64(raw, newline=False).decode("ascii") if raw is not None else None
        if self.json:
            record = self._record(ts, level, message)
            if partial:
                record["partial"] = True
            if raw_b64 is not None:
                record["raw_b64"] = raw_b64
            out.append(render_json(record))
            return
        out.append(render_stream_text(ts, level, self.stream, message, raw_b64, partial))

    def _record(self, ts: str, level: str, message: str) -> dict[str, Any]:
        """The record of one line (the one builder), before ``partial`` and ``raw_b64``."""
        record = build_record(level, message, self.service, self.logger, self.pid, None, ts)
        record["stream"] = self.stream
        return record

    # --- fast path: whole chunks, no per-line Python --------------------------------------------------------------

    def _fast_lines(self, pending: bytes, body: bytes | memoryview, ts: str) -> bytes | None:
        """Render complete lines (``pending + body``, ``body`` ends with a newline) in one go: the C extension's
        ``render_lines``, or its pure-Python twin (:mod:`._fastpath`). None when the chunk has anything the exact path
        must see (the caller then takes that path); the output is byte-identical to the exact path's (the tests feed
        both)."""
        result = self._render_lines(body, self.json, self._heads.at(ts), self._heads.tail,
                                    _LEVEL_INDEX[self._prev_level], self.max_line_bytes, pending)
        if result is None:
            return None
        rendered, count, last = result
        self._prev_level = LEVELS[last]
        self.lines_in += count
        self.records_out += count
        if self._native:
            self.native_chunks += 1
        else:
            self.python_chunks += 1
        return rendered

    # --- exact, line-by-line path ----------------------------------------------------------------------------------

    def _message(self, text: str, lossy: bool) -> str:
        """What goes into ``message``: JSON replaces undecodable bytes with U+FFFD; text keeps them for escaping."""
        if lossy and self.json:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return text

    def _slow_lines(self, lines: list[bytes], ts: str, out: list[bytes]) -> None:
        maxb = self.max_line_bytes
        for raw in lines:
            if self._cont or len(raw) > maxb:
                self._pieces(raw, ts, out, final=True)
            else:
                self._line(raw, ts, out)

    def _cut(self, data: bytes) -> int:
        """Where to cut ``data`` (longer than max_line_bytes): at most max bytes, never inside a UTF-8 character."""
        cut = self.max_line_bytes
        back = 0
        while back < 3 and cut > 1 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
            back += 1
        if (data[cut] & 0xC0) == 0x80:  # not UTF-8 around here: any cut is as good as another
            cut = self.max_line_bytes
        return cut

    def _pieces(self, data: bytes, ts: str, out: list[bytes], *, final: bool) -> bytes:
        """Emit ``data`` as pieces of at most max_line_bytes; the last one ends the line (final) or is returned."""
        maxb = self.max_line_bytes
        while len(data) > maxb:
            cut = self._cut(data)
            self._piece(data[:cut], ts, out, partial=True)
            data = data[cut:]
        if final:
            self._piece(data, ts, out, partial=False)
            return b""
        return data

    def _piece(self, raw: bytes, ts: str, out: list[bytes], *, partial: bool) -> None:
        """One piece of a line that is split (too long, or flushed before its newline)."""
        text, lossy = line_text(raw)
        level: str | None
        if self._cont:
            level = self._cont_level
        else:
            self._flush_group(out, final=True)
            level = _lv.line_key_level(text)
            if level is None:
                level = _lv.UNMARKED_LEVEL
            elif level == _lv.CONTINUATION:
                level = self._prev_level
            self._cont_level = self._prev_level = level
        self._render(ts, level, self._message(text, lossy), raw if lossy else None, partial, out)
        self._cont = partial

    def _plain(self, raw: bytes, text: str, lossy: bool, ts: str, out: list[bytes]) -> None:
        """A line outside any traceback."""
        level = _lv.line_key_level(text)
        if level is None:
            level = _lv.UNMARKED_LEVEL
        elif level == _lv.CONTINUATION:
            level = self._prev_level
        self._prev_level = level
        self._render(ts, level, self._message(text, lossy), raw if lossy else None, False, out)

    def _line(self, raw: bytes, ts: str, out: list[bytes]) -> None:
        """One complete line of at most max_line_bytes: the traceback state machine, then the plain rules."""
        text, lossy = line_text(raw)
        state = self._tb
        if state == _NONE:
            if _lv.is_traceback_start(text):
                self._tb = _BODY
                self._group_level = "ERROR"
                self._group_add(raw, text, lossy, ts, out)
            elif self.json and raw.endswith(b"\r") and (header := _lv.VLLM_HEADER_RE_B.match(raw)) is not None:
                self._tb = _MULTI  # the first line of a vLLM multi-line message: one record for all its lines
                self._multi_header = header.group()
                self._group_level = header.group(1).decode()
                self._group_add(raw, text, lossy, ts, out)
            else:
                self._plain(raw, text, lossy, ts, out)
            return
        if self._group_takes(state, raw, text, lossy, ts, out):
            return
        if state in (_BODY, _CHAIN) and self._interruptions < MAX_INTERRUPTIONS:
            level = _lv.line_key_level(text)
            if level is not None and level != _lv.CONTINUATION:
                # Another process's line inside an unfinished traceback (two writers on one stream, as vLLM's API
                # server and engine): a record of its own, and the traceback goes on after it at its own level
                # (JSON: the part so far is emitted, marked partial; the rest follows in a later record).
                self._interruptions += 1
                self._emit_group(partial=True, out=out)
                self._plain(raw, text, lossy, ts, out)
                return
        # The group (traceback or vLLM message) is over: emit it, then this line is an ordinary one.
        self._flush_group(out, final=True)
        self._line(raw, ts, out)

    def _group_takes(self, state: int, raw: bytes, text: str, lossy: bool, ts: str, out: list[bytes]) -> bool:
        """Whether the open group (``state``: a traceback's part, or a vLLM multi-line message) goes on with this line;
        it is added (or, after an exception line, a blank line is held) and the state moves on."""
        if state == _MULTI:
            if raw.startswith(self._multi_header):
                rest, _ = line_text(raw[len(self._multi_header) :])
                self._group_add(raw, rest, True, ts, out)  # lossy: the message leaves the header out
                if not raw.endswith(b"\r"):  # the message's last line
                    self._flush_group(out, final=True)
                return True
        elif state == _BODY:
            if _lv.is_traceback_body(text) or _lv.is_traceback_start(text):
                self._group_add(raw, text, lossy, ts, out)
                return True
            if _lv.is_exception_line(text):
                self._tb = _AFTER
                self._group_add(raw, text, lossy, ts, out)
                return True
        elif state == _AFTER:
            if not text:
                if self.json:
                    self._tentative.append((raw, text, lossy))
                    if len(self._tentative) >= self.max_group_lines:
                        self._flush_group(out, final=True)
                else:
                    self._render(ts, "ERROR", "", raw if lossy else None, False, out)
                return True
            if _lv.is_chain_marker(text):
                self._tb = _CHAIN
                for t_raw, t_text, t_lossy in self._tentative:
                    self._group_add(t_raw, t_text, t_lossy, ts, out)
                self._tentative = []
                self._group_add(raw, text, lossy, ts, out)
                return True
        elif state == _CHAIN:
            if not text or _lv.is_traceback_start(text):
                if text:
                    self._tb = _BODY
                self._group_add(raw, text, lossy, ts, out)
                return True
        return False

    def _group_add(self, raw: bytes, text: str, lossy: bool, ts: str, out: list[bytes]) -> None:
        self._prev_level = self._group_level
        self._interruptions = 0
        if not self.json:
            self._render(ts, self._group_level, text, raw if lossy else None, False, out)
            return
        if not self._group:
            self._group_ts = ts
        self._group.append(self._message(text, lossy))
        self._group_raw.append(raw)
        self._group_lossy = self._group_lossy or lossy
        self._group_bytes += len(raw) + 1
        if len(self._group) >= self.max_group_lines or self._group_bytes >= self.max_group_bytes:
            self._emit_group(partial=True, out=out)

    def _emit_group(self, *, partial: bool, out: list[bytes]) -> None:
        """Emit the lines held (JSON). ``partial``: the group goes on in a later record, so this part ends with the
        newline of its last line (a reader concatenates partial records as they are, as for pieces of a line)."""
        if self._group:
            message = "\n".join(self._group)
            raw = b"\n".join(self._group_raw) if self._group_lossy else None
            if partial:
                message += "\n"
                raw = raw + b"\n" if raw is not None else None
            self._render(self._group_ts, self._group_level, message, raw, partial, out)
        self._group = []
        self._group_raw = []
        self._group_lossy = False
        self._group_bytes = 0

    def _flush_group(self, out: list[bytes], *, final: bool) -> None:
        """Emit the open traceback group. ``final``: the traceback is over (else an idle gap: it may go on)."""
        state = self._tb
        if state == _NONE:
            return
        if state == _AFTER or final:
            self._emit_group(partial=False, out=out)
            self._tb = _NONE
            tentative, self._tentative = self._tentative, []
            for raw, text, lossy in tentative:
                self._plain(raw, text, lossy, self._group_ts, out)
        else:
            self._emit_group(partial=True, out=out)
