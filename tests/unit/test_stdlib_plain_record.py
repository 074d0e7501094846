"""The stdlib handler's one-pass record of the usual call is the formatter's record, byte for byte."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mlops_logging import _stdlib
from mlops_logging._render import render_json
from mlops_logging._stdlib import JsonFormatter, _plain_record


def _record(msg: Any = "request handled", args: Any = (), level: int = logging.INFO, exc: Any = None,
            extra: dict[str, Any] | None = None, stack: str | None = None) -> logging.LogRecord:
    logger = logging.getLogger("bench.plain")
    return logger.makeRecord(logger.name, level, "/app/x.py", 7, msg, args, exc, extra=extra, sinfo=stack)


USUAL = [
    _record(),
    _record(extra={"user": "alice", "n": 3, "ratio": 0.5, "ok": True, "none": None}),
    _record("%s - %d", ("GET /", 200)),
    _record("%(a)s", ({"a": "x"},)),
    _record(level=logging.CRITICAL, extra={"color_message": "\x1b[1mx", "_private": 1, "user": "bob"}),
]

UNUSUAL = [
    _record({"event": "dict message", "k": 1}),
    _record(RuntimeError("not a str")),
    _record("%d", ("x",)),  # the formatter says the interpolation failed
    _record(level=25),
    _record(extra={"password": "hunter2"}),  # redacted by the formatter
    _record(extra={"level": "mine"}),  # reserved: kept as level_
    _record(extra={"trace_id": "nothex"}),  # typed
    _record(extra={"request_id": 5}),  # typed
    _record(extra={"nested": {"token": "x"}}),  # not a scalar: redaction looks inside
    _record(extra={"items": [1, 2]}),
    _record(stack="Stack (most recent call last):\n  here"),
]


@pytest.mark.parametrize("service", [None, "svc"])
@pytest.mark.parametrize("index", range(len(USUAL)))
def test_the_usual_record_is_the_formatters(index: int, service: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    # structlog's registry keeps every key ever bound (other tests bind some): here nothing was
    monkeypatch.setattr(_stdlib, "REGISTRY", {})
    record = USUAL[index]
    plain = _plain_record(record, service)
    assert plain is not None
    expected = JsonFormatter(service=service).to_record(record)
    assert render_json(plain) == render_json(expected)
    assert list(plain) == list(expected)


@pytest.mark.parametrize("index", range(len(UNUSUAL)))
def test_anything_else_goes_to_the_formatter(index: int) -> None:
    assert _plain_record(UNUSUAL[index], "svc") is None


def test_an_exception_goes_to_the_formatter() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(exc=True)
    record.exc_info = __import__("sys").exc_info()
    assert _plain_record(record, "svc") is None


def test_a_record_with_bound_context_goes_to_the_formatter() -> None:
    import structlog.contextvars

    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        assert _plain_record(_record(), "svc") is None
