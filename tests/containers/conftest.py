"""The container suite's engine and base images: found (or the suite skipped, saying why) and made once a session.

``make test`` sets ``MLOPS_REQUIRE_ENGINE=1`` after ``make setup-containers`` installed the engine: there a missing
engine fails the suite instead of skipping it. Base images are pulled where a registry answers, else stand-ins are
built (``scripts/engine.py``; tests/containers/README.md).
"""

from __future__ import annotations

import os

import pytest

from engine import Engine, detect, ensure_bases, why_none


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = detect()
    if found is None:
        if os.environ.get("MLOPS_REQUIRE_ENGINE") == "1":
            pytest.fail(f"MLOPS_REQUIRE_ENGINE=1 but {why_none()}")
        pytest.skip(why_none())
    ensure_bases(found)
    return found
