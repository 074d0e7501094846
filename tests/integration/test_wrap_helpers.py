"""The test helpers themselves: a failing test leaves nothing running, and a dead logwrap fails a wait at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from wrap_helpers import file_has, pid_alive, start_wrap, wait_for


@pytest.mark.parametrize("group", [False, True], ids=["same-group", "signal-group"])
def test_a_failed_assertion_inside_start_wrap_stops_logwrap_and_everything_it_started(tmp_path: Path,
                                                                                       group: bool) -> None:
    logs = tmp_path / "logs"
    pids = tmp_path / "pids"
    command = ["sh", "-c", f"sleep 60 & echo $! $$ > {pids}.tmp; mv {pids}.tmp {pids}; sleep 60"]
    args = ["--signal-group"] if group else []
    started: list[int] = []
    with pytest.raises(AssertionError, match="deliberate"):
        with start_wrap(logs, "--service", "left", *args, command=command) as proc:
            wait_for(pids.exists, what="the child's pids", proc=proc)
            started = [proc.pid, *map(int, pids.read_text().split())]
            assert all(pid_alive(pid) for pid in started)
            raise AssertionError("deliberate")
    assert len(started) == 3
    wait_for(lambda: not any(pid_alive(pid) for pid in started), timeout=10, what="every process to be gone")


def test_waiting_on_a_logwrap_that_died_fails_at_once_and_says_how_it_died(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with start_wrap(logs, "--service", "dead", command=["sh", "-c", "echo up; sleep 60"]) as proc:
        wait_for(lambda: file_has(logs / "dead.log", b'"up"'), what="the child's first line", proc=proc)
        os.kill(proc.pid, signal.SIGKILL)
        # Without the fail-fast check this would wait the whole 300 s and then say "timed out".
        with pytest.raises(AssertionError, match="logwrap died of SIGKILL while waiting for a record"):
            wait_for(lambda: False, timeout=300, what="a record", proc=proc)
