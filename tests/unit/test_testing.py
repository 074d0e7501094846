"""mlops_logging.testing: what users' own tests see, on both logging paths, configured or not."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from mlops_logging import _output, configure_logging, get_logger
from mlops_logging.testing import assert_valid, capture_records, read_records


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """The process as before any configure_logging (other tests of this process may have called it)."""
    root = logging.getLogger()
    saved = (_output.current, list(root.handlers), root.level, structlog.get_config())
    _output.install(_output.Output(service="unconfigured"))
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_mlops_logging", False)]
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()
    yield
    _output.install(saved[0])
    root.handlers[:] = saved[1]
    root.setLevel(saved[2])
    structlog.configure(**saved[3])


def test_capture_records_without_configure_logging_gets_both_paths_redacted_and_restores_everything(
        unconfigured: None) -> None:
    root = logging.getLogger()
    before = (_output.current, list(root.handlers), root.level, structlog.get_config())
    with capture_records() as records:
        get_logger("app").debug("loaded", api_key="sk-1", n=1)
        logging.getLogger("lib").warning("slow %s", "call", extra={"level": "VERBOSE"})
    assert [(r["logger"], r["level"], r["message"]) for r in records] == [
        ("app", "DEBUG", "loaded"), ("lib", "WARNING", "slow call")]
    assert records[0]["api_key"] == "[REDACTED]" and records[1]["level_"] == "VERBOSE"
    for record in records:
        assert_valid(record)
    assert (_output.current, list(root.handlers), root.level, structlog.get_config()) == before


def test_capture_records_after_configure_logging_keeps_the_level_and_writes_nothing_to_the_file(
        tmp_path: Path, restore_logging: None) -> None:
    path = configure_logging("svc", log_dir=tmp_path, stdout=False, level="INFO")
    get_logger("app").info("before")
    with capture_records() as records:
        get_logger("app").debug("filtered out, as in the file")
        get_logger("app").info("captured", when="now")
        logging.getLogger("lib").error("stdlib too")
    get_logger("app").info("after")
    assert [(r["message"], r["service"]) for r in records] == [("captured", "svc"), ("stdlib too", "svc")]
    assert [r["message"] for r in read_records(path)] == ["before", "after"]


def test_capture_records_gives_the_values_as_the_file_holds_them(unconfigured: None) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    with capture_records() as records:
        get_logger("app").info("values", obj=Odd(), big=2**70, stream=3)
    [record] = records
    assert (record["obj"], record["big"], record["stream_"]) == ("odd", str(2**70), 3)


def test_read_records_validates_every_line_and_names_the_bad_one(tmp_path: Path) -> None:
    good = {"timestamp": "2026-11-26T08:00:00.000Z", "level": "INFO", "message": "m", "service": "s"}
    path = tmp_path / "s.log"
    path.write_text(json.dumps(good) + "\n")
    assert read_records(path) == [good]
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "level": "LOUD"}) + "\n")
    with pytest.raises(AssertionError, match=r"s.log:2 breaks the record schema"):
        read_records(path)
    assert len(read_records(path, validate=False)) == 2
    path.write_text("not json\n")
    with pytest.raises(AssertionError, match=r"s.log:1 is not JSON"):
        read_records(path)
    path.write_text(json.dumps(good))
    with pytest.raises(AssertionError, match="does not end with a newline"):
        read_records(path)
