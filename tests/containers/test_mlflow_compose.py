"""``docker/docker-compose.mlflow.yml`` as shipped, under the real engine: the PRD's FR-1/FR-5 checks on the host's
``logs/mlflow/``.

One module-scoped life story of the service, each step recorded, then the tests read what the steps left on disk:
``up -d --build`` with no ``logs/`` yet; the real ``mlflow`` client logs a run through the published port 5000 (and
asks for an experiment that does not exist: 404); ``restart``; ``stop``; ``down`` then ``up``; ``down``, ``rm -rf
logs/mlflow``, ``up``; a host user who is not root reads the file and audits it; ``down -v``.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from support.mlflow_traffic import ACCESS, client_traffic, recording_requests
from support.stack import Stack, as_nobody, copy_repository

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

PORT = 5000  # what the compose file publishes
READY = "Uvicorn running on http://0.0.0.0:5000"
STOP_GRACE = 30  # the compose file's stop_grace_period


@dataclass
class Life:
    """What one step left in the log file: its bytes, and the records it added."""

    data: bytes = b""
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Story:
    stack: Stack
    ready_after_up: float = 0.0
    requests: list[tuple[str, str]] = field(default_factory=list)
    lives: dict[str, Life] = field(default_factory=dict)
    stop_seconds: float = 0.0
    stop_state: str = ""
    recreated_dir: bool = False
    pid1: list[str] = field(default_factory=list)
    nobody_ls: str = ""
    nobody_tail: str = ""
    nobody_check: tuple[int, str] = (-1, "")


def _snapshot(story: Story, name: str) -> None:
    """The file after step ``name`` and the records the step added (every step before it appended to it)."""
    seen = sum(len(life.records) for life in story.lives.values())
    story.lives[name] = Life(story.stack.log_file("mlflow").read_bytes(), story.stack.records("mlflow")[seen:])


def _ready(stack: Stack, lives: int) -> float:
    """Seconds until the file holds ``lives`` ready lines (each life of the server prints one)."""
    return stack.wait_until(f"mlflow life {lives} ready", lambda: stack.count("mlflow", READY) >= lives, 120)


@pytest.fixture(scope="module")
def story(engine: Engine) -> Iterator[Story]:
    root = copy_repository("mlops-mlflow-compose-")
    stack = Stack(engine, root, ["docker-compose.mlflow.yml"], f"mlopsmlflow{uuid.uuid4().hex[:8]}")
    story = Story(stack)
    try:
        stack.build()
        assert not stack.logs.exists()
        started = time.monotonic()
        stack.compose("up", "-d")
        _ready(stack, 1)
        story.ready_after_up = time.monotonic() - started
        stack.wait_healthy("mlflow", 60)
        story.pid1 = stack.pid1("mlflow")
        with recording_requests(PORT) as sent:
            client_traffic(PORT, root)
        story.requests = sent
        stack.wait_until("the client's last request in the file",
                         lambda: stack.count("mlflow", "get-by-name?experiment_name=no-such-experiment") == 1, 30)
        _snapshot(story, "up")

        stack.compose("restart", "mlflow")
        _ready(stack, 2)
        _snapshot(story, "restart")

        started = time.monotonic()
        stack.compose("stop", "mlflow")
        story.stop_seconds = time.monotonic() - started
        story.stop_state = stack.inspect("mlflow", "{{.State.Status}} {{.State.ExitCode}}")
        _snapshot(story, "stop")

        stack.compose("down")
        stack.compose("up", "-d")
        _ready(stack, 3)
        _snapshot(story, "down-up")

        story.nobody_ls = as_nobody(["ls", "-la", "logs/mlflow/"], root).stdout
        story.nobody_tail = as_nobody(["tail", "-20", "logs/mlflow/mlflow.log"], root).stdout
        check = as_nobody([sys.executable, "-m", "mlops_logging.check", "--root", "logs", "--services", "mlflow",
                           "--no-transcript"], root)
        story.nobody_check = (check.returncode, check.stdout + check.stderr)

        stack.compose("down")
        shutil.rmtree(stack.logs / "mlflow")
        stack.compose("up", "-d")
        story.recreated_dir = (stack.logs / "mlflow").is_dir()
        _ready(stack, 1)
        story.lives["deleted"] = Life(stack.log_file("mlflow").read_bytes(), stack.records("mlflow"))
        yield story
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def _starts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "logwrap" and "command" in r]


def _exits(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "logwrap" and "exit_code" in r]


def test_the_server_start_lines_are_on_the_host_within_60_s_of_up(story: Story) -> None:
    assert story.ready_after_up < 60, story.ready_after_up
    messages = [r["message"] for r in story.lives["up"].records]
    assert any("Started parent process" in m for m in messages)
    assert sum("Application startup complete." in m for m in messages) == 2  # --workers 2
    [start] = _starts(story.lives["up"].records)
    assert start["pid"] == 1 and start["service"] == "mlflow"


def test_logwrap_is_pid_1_of_the_mlflow_container(story: Story) -> None:
    # python3 running logwrap's console script, as the entrypoint exec'd it (no shell left in between)
    assert Path(story.pid1[1]).name == "logwrap" and story.pid1[2:4] == ["--service", "mlflow"], story.pid1
    assert story.pid1[story.pid1.index("--") + 1:][:2] == ["mlflow", "server"], story.pid1


def test_one_access_record_per_request_of_the_real_client_and_the_404_with_its_status(story: Story) -> None:
    kinds = {path.split("?")[0].rsplit("/", 1)[-1] for _method, path in story.requests}
    assert {"create", "log-parameter", "log-metric", "update", "get-by-name"} <= kinds, story.requests
    access = [m.groups() for r in story.lives["up"].records if (m := ACCESS.search(r["message"]))]
    assert Counter((method, path) for method, path, _ in access if path != "/health") == Counter(story.requests)
    [miss] = [status for _, path, status in access if "experiment_name=no-such-experiment" in path]
    assert miss == "404"


def test_restart_appends_both_lives_start_and_exit_records_and_keeps_every_earlier_line(story: Story) -> None:
    before, after = story.lives["up"].data, story.lives["restart"].data
    assert after.startswith(before) and len(after) > len(before)
    records = story.lives["up"].records + story.lives["restart"].records
    assert len(_starts(records)) == 2 and len(_exits(records)) == 1  # the first life ended, the second runs
    [ended] = _exits(records)
    assert ended["exit_code"] == 0  # MLflow's own status after the engine's TERM
    assert _starts(story.lives["restart"].records)


def test_stop_writes_the_exit_record_with_mlflows_status_within_the_grace_period(story: Story) -> None:
    assert story.stop_seconds < STOP_GRACE, story.stop_seconds
    assert story.stop_state == "exited 0", story.stop_state
    [ended] = _exits(story.lives["stop"].records)
    assert ended["exit_code"] == 0 and ended["level"] == "INFO"
    assert any("forwarded SIGTERM to the child" in r["message"] for r in story.lives["stop"].records)


def test_down_then_up_appends_to_the_same_file(story: Story) -> None:
    assert story.lives["down-up"].data.startswith(story.lives["stop"].data)
    assert len(_starts(story.lives["down-up"].records)) == 1


def test_a_deleted_log_directory_is_created_again_by_up(story: Story) -> None:
    assert story.recreated_dir
    records = story.lives["deleted"].records
    assert len(_starts(records)) == 1 and records[0].get("logger") == "logwrap"


def test_a_host_user_who_is_not_root_lists_tails_and_audits_the_log(story: Story) -> None:
    assert "mlflow.log" in story.nobody_ls and "-rw-r--r--" in story.nobody_ls, story.nobody_ls
    lines = story.nobody_tail.splitlines()
    assert len(lines) == 20 and all(line.startswith('{"timestamp":') for line in lines), story.nobody_tail
    code, output = story.nobody_check
    assert code == 0 and "1/1 services writing complete logs" in output, output


def test_the_log_directory_and_file_modes_let_host_users_read(story: Story) -> None:
    log = story.stack.log_file("mlflow")
    assert log.stat().st_mode & 0o777 == 0o644
    assert Path(log.parent).stat().st_mode & 0o005 == 0o005
