"""Shared fixtures: every test gets its own log root and a clean MLOPS_* environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Speed is measured in bench/, never asserted in tests: no per-example deadline (hypothesis' 200 ms default failed
# property tests on a loaded machine with 348 ms examples, a timing assertion in all but name).
settings.register_profile("mlops", deadline=None)
settings.load_profile("mlops")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MLOPS_* variable leaks in from the developer's shell; the default root is a temp dir.

    MLOPS_LOG_SPEEDUPS stays: it is the run's choice of framer (``make test`` runs the integration tests a second time
    with MLOPS_LOG_SPEEDUPS=0, so every logwrap they start runs the pure-Python framer)."""
    for key in list(os.environ):
        if key.startswith("MLOPS_") and key != "MLOPS_LOG_SPEEDUPS":
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLOPS_LOG_ROOT", str(tmp_path / "logs"))


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    """The MLOPS_LOG_ROOT of this test."""
    return tmp_path / "logs"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo configure_logging's changes to the root logger after a test that calls it in-process."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
