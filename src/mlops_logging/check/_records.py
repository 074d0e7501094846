"""logcheck's record side: judge sampled lines (format, completeness, level, time) and sum them up per service.

A line is one of three formats:

- ``json``: our record (``record.schema.json``: RFC 3339 ms ``Z`` timestamp, a level of
  :data:`mlops_logging._level_map.LEVELS`, a string message and service);
- ``json-other``: another JSON object; complete when it has a timestamp (``timestamp``, ``time``, ``ts``,
  ``@timestamp``, ``asctime``...), a level (``level``, ``levelname``, ``severity``...; else the level marker of its
  message, as logwrap reads it) and a message (``message``, ``msg``, ``event``, ``log``);
- ``text``: judged with logwrap's own level grammar (:mod:`mlops_logging._levels`): a record is a line with a
  level marker plus the indented, empty or traceback lines after it; complete when it also has a date-time.

A line that starts like JSON but does not parse, JSON that is not an object, or binary data is an incomplete record.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from .._level_map import LEVELS, level_from_number
from .._levels import (
    CONTINUATION,
    LINE_RE,
    detect_level,
    is_chain_marker,
    is_exception_line,
    is_traceback_start,
    line_key_level,
)

__all__ = ["ErrorSeen", "LossSeen", "Sample", "judge_lines", "parse_time"]

# --- time -----------------------------------------------------------------------------------------------------------

_OUR_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")
# Date-time forms found in log lines (searched in the first 120 characters of a text line):
#   RFC 3339 / ISO 8601, MLflow's and Python asctime's "2026/11/26 08:19:10", gunicorn's "[2026-11-26 08:19:10 +0000]"
_ISO = re.compile(r"([0-9]{4})[-/]([0-9]{2})[-/]([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?"
                  r" ?(Z|[+-][0-9]{2}:?[0-9]{2})?")
#   vLLM's "INFO 11-26 08:16:47" (no year), glog's "W1126 08:17:04.841561"
_VLLM = re.compile(r"(?<![0-9-])([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?![0-9])")
_GLOG = re.compile(r"\[?[IWEF]([0-9]{2})([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})\.[0-9]{6,9} ")
#   syslog's "Nov 26 08:16:47"
_SYSLOG = re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}([0-9]{1,2}) "
                     r"([0-9]{2}):([0-9]{2}):([0-9]{2})\b")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"), 1)}
_HEAD = 120


def _epoch(year: int, month: int, day: int, hh: int, mm: int, ss: float, tz: str | None = None) -> float | None:
    try:
        t = calendar.timegm((year, month, day, hh, mm, 0, 0, 0, 0)) + ss
    except (ValueError, OverflowError):
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        t -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return t


def _yearless(month: int, day: int, hh: int, mm: int, ss: int, now: float) -> float | None:
    """A date without a year (vLLM, glog, syslog) is this year's, or last year's when that would be in the future."""
    year = time.gmtime(now).tm_year
    t = _epoch(year, month, day, hh, mm, ss)
    if t is not None and t > now + 86400:
        t = _epoch(year - 1, month, day, hh, mm, ss)
    return t


def parse_time(text: str, now: float, *, anywhere: bool = True) -> float | None:
    """The first date-time in ``text`` (its first 120 characters) as a Unix time; naive times are taken as UTC."""
    head = text[:_HEAD]
    m = _ISO.search(head) if anywhere else _ISO.match(head)
    if m:
        frac = m.group(7)
        return _epoch(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                      int(m.group(6)) + (int(frac) / 10 ** len(frac) if frac else 0.0), m.group(8))
    if not anywhere:
        return None
    m = _GLOG.match(head) or _VLLM.search(head)
    if m:
        return _yearless(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), now)
    m = _SYSLOG.search(head)
    if m:
        return _yearless(_MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), now)
    return None


def _our_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _json_time(value: Any, now: float) -> float | None:
    """A timestamp field of another JSON format: a date-time string, or a number of s/ms/us/ns since the epoch."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        t = float(value)
        while t > 1e11:  # ms, us, ns since the epoch
            t /= 1000
        return t if t > 0 else None
    if isinstance(value, str):
        return parse_time(value, now, anywhere=False)
    return None


# --- one record -----------------------------------------------------------------------------------------------------

_TS_KEYS = ("timestamp", "time", "ts", "@timestamp", "asctime", "datetime", "date", "t")
_LEVEL_KEYS = ("level", "levelname", "severity", "lvl", "loglevel", "log.level", "level_name")
_MSG_KEYS = ("message", "msg", "event", "log", "text")
_LEVEL_NAMES = {**{name: name for name in LEVELS}, "WARN": "WARNING", "FATAL": "CRITICAL", "CRIT": "CRITICAL",
                "ERR": "ERROR", "TRACE": "DEBUG", "NOTICE": "INFO", "INFORMATION": "INFO", "EMERG": "CRITICAL",
                "EMERGENCY": "CRITICAL", "ALERT": "CRITICAL", "PANIC": "CRITICAL", "SEVERE": "ERROR"}
#: Loggers of this package's own loss records (``configure_logging``'s writer, logwrap).
LOSS_LOGGERS = frozenset({"mlops_logging", "logwrap"})

# Reasons a record is not complete (the keys of Sample.problems).
NO_TIMESTAMP = "no timestamp"
NO_LEVEL = "no level"
NO_MESSAGE = "no message"
CORRUPT_JSON = "corrupt JSON (a line that starts like JSON but does not parse)"
NOT_OBJECT = "JSON that is not an object"
BINARY = "binary data (NUL bytes or not text)"
TOO_LONG = "a line longer than the sample window"


def _level_value(value: Any) -> str | None:
    if isinstance(value, str):
        return _LEVEL_NAMES.get(value.strip().upper())
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 60:
        return level_from_number(value)
    return None


def _first(record: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if key in record:
            return record[key]
    return None


@dataclass
class ErrorSeen:
    """The newest ERROR/CRITICAL record of a sample."""

    time: float | None
    level: str
    message: str
    file: str


@dataclass
class LossSeen:
    """A loss record written by this package: ``lost_records`` lines (``lost_bytes``) lost between since and until."""

    file: str
    time: float | None
    logger: str
    lost_records: int
    lost_bytes: int | None
    lost_since: str | None
    lost_until: str | None
    error: str | None
    message: str


@dataclass
class Sample:
    """What the sampled records of one file (or, summed, one service) say."""

    records: int = 0
    complete: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # problem -> the first offending line (cut)
    times: list[float] = field(default_factory=list)
    last_error: ErrorSeen | None = None
    losses: list[LossSeen] = field(default_factory=list)
    passthrough_dropped_bytes: int = 0

    @property
    def errors(self) -> int:
        """ERROR and CRITICAL records."""
        return self.levels["ERROR"] + self.levels["CRITICAL"]

    @property
    def format(self) -> str:
        """The most common format of the sampled records (``json``, ``json-other``, ``text``), or ``-``."""
        if not self.formats:
            return "-"
        order = ("json", "json-other", "text", "invalid")
        return max(self.formats, key=lambda k: (self.formats[k], -order.index(k)))

    @property
    def newest(self) -> float | None:
        """The newest timestamp of the sample."""
        return max(self.times) if self.times else None

    def add(self, other: Sample) -> None:
        """Sum ``other`` into this sample."""
        self.records += other.records
        self.complete += other.complete
        self.formats.update(other.formats)
        self.levels.update(other.levels)
        self.problems.update(other.problems)
        for key, value in other.examples.items():
            self.examples.setdefault(key, value)
        self.times.extend(other.times)
        if other.last_error is not None and (
            self.last_error is None or (other.last_error.time or 0) >= (self.last_error.time or 0)
        ):
            self.last_error = other.last_error
        self.losses.extend(other.losses)
        self.passthrough_dropped_bytes += other.passthrough_dropped_bytes

    # -- judging ------------------------------------------------------------------------------------------------

    def _problem(self, reason: str, line: str) -> None:
        self.problems[reason] += 1
        self.examples.setdefault(reason, line[:160])

    def _counted(self, fmt: str, level: str | None, t: float | None, message: str, file: str,
                 missing: list[str], line: str) -> None:
        self.records += 1
        self.formats[fmt] += 1
        if level is not None:
            self.levels[level] += 1
            if level in ("ERROR", "CRITICAL") and (self.last_error is None or (t or 0) >= (self.last_error.time or 0)):
                self.last_error = ErrorSeen(t, level, message[:300], file)
        if t is not None:
            self.times.append(t)
        if missing:
            for reason in missing:
                self._problem(reason, line)
        else:
            self.complete += 1

    def bad_line(self, reason: str, line: str) -> None:
        """A line that is no record at all (corrupt, binary, too long): an incomplete record."""
        self.records += 1
        self.formats["invalid"] += 1
        self._problem(reason, line)

    def json_record(self, record: dict[str, Any], line: str, file: str, now: float) -> None:
        """Judge one parsed JSON object."""
        ts, level, message = record.get("timestamp"), record.get("level"), record.get("message")
        if (isinstance(ts, str) and _OUR_TS.match(ts) and level in LEVELS and isinstance(message, str)
                and isinstance(record.get("service"), str)):
            t = _our_time(ts)
            self._counted("json", level, t, message, file, [], line)
            self._note_loss(record, t, file)
            return
        raw_ts = _first(record, _TS_KEYS)
        t = _json_time(raw_ts, now)
        raw_msg = _first(record, _MSG_KEYS)
        msg = raw_msg if isinstance(raw_msg, str) else None
        nested = record.get("log") if isinstance(record.get("log"), Mapping) else None
        lvl = _level_value(_first(record, _LEVEL_KEYS) if nested is None else nested.get("level"))
        if lvl is None and msg is not None:
            lvl = detect_level(msg.rstrip("\n"))
        missing = [reason for reason, ok in ((NO_TIMESTAMP, t is not None), (NO_LEVEL, lvl is not None),
                                             (NO_MESSAGE, msg is not None)) if not ok]
        self._counted("json-other", lvl, t, msg or "", file, missing, line)

    def text_record(self, head: str, level: str | None, file: str, now: float) -> None:
        """Judge one text record (its first line; continuation lines add nothing to judge)."""
        t = parse_time(head, now)
        missing = []
        if t is None:
            missing.append(NO_TIMESTAMP)
        if level is None:
            missing.append(NO_LEVEL)
        else:
            marker = LINE_RE.match(head)
            if marker is not None and not head[marker.end():].strip(" :]-"):
                missing.append(NO_MESSAGE)  # "INFO:" and nothing else
        self._counted("text", level, t, head, file, missing, head)

    def _note_loss(self, record: dict[str, Any], t: float | None, file: str) -> None:
        logger = record.get("logger")
        if logger not in LOSS_LOGGERS:
            return
        lost = record.get("lost_records")
        if isinstance(lost, int) and not isinstance(lost, bool) and lost > 0:
            self.losses.append(LossSeen(file=file, time=t, logger=str(logger), lost_records=lost,
                                        lost_bytes=record.get("lost_bytes"), lost_since=record.get("lost_since"),
                                        lost_until=record.get("lost_until"), error=record.get("error"),
                                        message=str(record.get("message", ""))[:300]))
        dropped = record.get("passthrough_dropped_bytes")
        if isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
            self.passthrough_dropped_bytes += dropped


_NOT_JSON = object()


def _decode(raw: bytes) -> str | None:
    """The line as text, or None when it is binary (NUL bytes, or more than a tenth not UTF-8)."""
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        return None if text.count("\ufffd") * 10 > len(text) else text


def judge_lines(lines: Iterable[bytes], file: str, now: float) -> Sample:
    """Judge sampled lines (oldest first, without their newline) of one file."""
    sample = Sample()
    text_head: str | None = None  # first line of the text record being built
    text_level: str | None = None
    in_traceback = False

    def flush_text() -> None:
        nonlocal text_head
        if text_head is not None:
            sample.text_record(text_head, text_level, file, now)
            text_head = None

    for raw in lines:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = _decode(raw)
        if line is None:
            flush_text()
            sample.bad_line(BINARY, raw[:160].decode("utf-8", "backslashreplace"))
            continue
        if text_head is None and not line.strip():
            continue  # a blank line between JSON records (or at the start): nothing to judge
        if line[:1] in ("{", "[", '"'):  # our writers never indent a JSON record
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = _NOT_JSON
            if value is not _NOT_JSON or line[0] == "{":
                flush_text()
                if value is _NOT_JSON:
                    sample.bad_line(CORRUPT_JSON, line)
                elif isinstance(value, dict):
                    sample.json_record(value, line, file, now)
                else:
                    sample.bad_line(NOT_OBJECT, line)
                continue
            # '[2026-11-26 08:19:10 +0000] [7] [INFO] ...', '[W1126 ...]', '"quoted" text': judged as text
        # Text: a marked line starts a record; indented/empty lines and tracebacks continue it (logwrap's grouping).
        key = line_key_level(line)
        if text_head is not None:
            if key == CONTINUATION:
                continue
            if key is None and in_traceback:
                in_traceback = not is_exception_line(line)
                continue
            if key is None and (is_traceback_start(line) or is_chain_marker(line)):
                in_traceback = True
                continue
        flush_text()
        in_traceback = False
        if key == CONTINUATION:
            continue  # continues a record that started before the sample window
        if key is None and is_traceback_start(line):
            text_head, text_level, in_traceback = line, "ERROR", True  # a bare traceback is an error (as in logwrap)
            continue
        text_head, text_level = line, key
    flush_text()
    return sample
