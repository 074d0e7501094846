"""A process that logs while it exits always exits: daemon threads logging in a loop while the interpreter finalizes,
and a ``__del__`` that logs during the final teardown, on both paths (structlog, stdlib through configure_logging),
with and without the console. Each scenario runs 20 times as a real process, each run under a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_logging.testing import read_records

RUNS = 20
TIMEOUT = 30  # seconds for one run: far above what a run takes (a fraction of a second); a hang never ends

# A library module that holds a resource whose __del__ logs: it is torn down during finalization, after the daemon
# threads were frozen, possibly in the middle of a write (holding the log file's or the console's lock).
RESOURCE = """
class Resource:
    def __init__(self, log):
        self.log = log
    def __del__(self):
        self.log.warning("resource released in __del__")
"""

# argv: log dir, "console" or "file", "structlog" or "stdlib"
JOB = """
import logging, sys, threading
from mlops_logging import configure_logging, get_logger
configure_logging("job", log_dir=sys.argv[1], stdout=sys.argv[2] == "console")
import resource_holder
stdlib = sys.argv[3] == "stdlib"
log = logging.getLogger("job.loop") if stdlib else get_logger("job.loop")
resource_holder.held = resource_holder.Resource(logging.getLogger("job.res") if stdlib else get_logger("job.res"))
busy = threading.Barrier(3)

def loop():
    for i in range(10**9):
        if stdlib:
            log.info("tick %d %s", i, "x" * 300)
        else:
            log.info("tick", i=i, pad="x" * 300)
        if i == 100:
            busy.wait()

for _ in range(2):
    threading.Thread(target=loop, daemon=True).start()
busy.wait()  # both threads are logging: the interpreter exits under them
"""


@pytest.mark.parametrize("console", ["console", "file"])
@pytest.mark.parametrize("path", ["structlog", "stdlib"])
def test_a_process_that_logs_from_daemon_threads_and_a_del_at_exit_always_exits(tmp_path: Path, path: str,
                                                                                 console: str) -> None:
    (tmp_path / "resource_holder.py").write_text(RESOURCE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for run in range(RUNS):
        log_dir = tmp_path / f"run{run}"
        try:
            proc = subprocess.run([sys.executable, "-c", JOB, str(log_dir), console, path], env=env,
                                  capture_output=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:  # subprocess.run kills the child
            pytest.fail(f"run {run + 1} of {RUNS} hung at exit ({path}, {console}): no exit after {TIMEOUT} s")
        assert proc.returncode == 0, (run, proc.stderr.decode(errors="replace")[-2000:])
        assert proc.stderr == b"", (run, proc.stderr.decode(errors="replace")[-2000:])
        records = read_records(log_dir / "job.log")
        assert [r["message"] for r in records if r["logger"] == "job.res"] == ["resource released in __del__"]
        assert len(records) > 200
