"""Helpers for your own tests (as ``structlog.testing`` is for structlog's users).

- :func:`capture_records`: the records a block of code wrote, through structlog or stdlib ``logging``, as the dicts
  that would be in the log file (built, redacted and rendered as always), whether or not ``configure_logging`` ran.
- :func:`read_records`: a log file's records, each checked against the schema.
- :func:`assert_valid`: one record against ``record.schema.json`` (needs ``jsonschema``: the ``testing`` extra).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import structlog

from . import _output
from ._level_map import LEVEL_NUMBERS
from ._records import Loss
from ._render import render_json
from ._sink import FileSink
from ._stdlib import RecordHandler
from ._structlog import SinkLoggerFactory, bound_logger_class, processors

__all__ = ["assert_valid", "capture_records", "read_records"]


class _Capture:
    """A sink that keeps what it is given, parsed: the records exactly as the file would have them."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def submit(self, data: bytes) -> None:
        self.records.extend(orjson.loads(line) for line in data.splitlines())

    def flush(self, now: float, *, force: bool = False) -> bool:
        return True

    def next_deadline(self) -> float | None:
        return None

    @property
    def loss(self) -> Loss:
        return Loss()

    def close(self) -> None:
        pass


@contextmanager
def capture_records() -> Iterator[list[dict[str, Any]]]:
    """Yield a list that fills with the records the block writes on both logging paths; restore everything after.

    The records are the dicts the log file would hold (JSON-decoded, so values are what the file shows), with the
    configured service, level and redaction; without ``configure_logging``, every level is captured and the service
    is ``MLOPS_SERVICE`` (else ``unconfigured``). Nothing reaches the log file or the console meanwhile.
    """
    records: list[dict[str, Any]] = []
    previous = _output.current
    configured = isinstance(previous.writer, FileSink) or previous.console is not None
    _output.install(_output.Output(service=previous.service, writer=_Capture(records), render=render_json))
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_structlog = structlog.get_config()
    try:
        if not configured:
            levelno = LEVEL_NUMBERS["DEBUG"]
            # Not cached: loggers bound meanwhile follow the configuration restored after the block.
            structlog.configure(processors=processors, wrapper_class=bound_logger_class(levelno),
                                logger_factory=SinkLoggerFactory(), cache_logger_on_first_use=False)
            root.setLevel(levelno)
        if not any(getattr(h, "_mlops_logging", False) for h in root.handlers):
            root.addHandler(RecordHandler())
        yield records
    finally:
        _output.install(previous)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


def read_records(path: str | Path, *, validate: bool = True) -> list[dict[str, Any]]:
    """Every line of the log file ``path`` parsed as JSON, in order; fails (``AssertionError``) on a line that is not
    JSON, a file that does not end with a newline and, with ``validate``, a record that breaks the schema."""
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} does not end with a newline: {data[-80:]!r}"
    records = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"{path}:{number} is not JSON: {line[:200]!r}") from exc
        if validate:
            assert_valid(record, where=f"{path}:{number}")
        records.append(record)
    return records


def assert_valid(record: dict[str, Any], where: str = "record") -> None:
    """Fail (``AssertionError``) with a readable message when ``record`` breaks ``record.schema.json``."""
    errors = sorted(_validator().iter_errors(record), key=str)
    assert not errors, f"{where} breaks the record schema: {errors[0].message} in {record!r}"


@cache
def _validator() -> Any:
    try:
        import jsonschema
    except ImportError:
        raise ModuleNotFoundError("mlops_logging.testing needs jsonschema to check records against the schema: "
                                  "pip install 'mlops-logging[testing]'") from None
    schema = json.loads(resources.files("mlops_logging").joinpath("record.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)
