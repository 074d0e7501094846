"""A real ``mlflow server`` (sqlite backend, 2 workers) through its container entrypoint, started twice on one log dir.

The first start is on the host, as the demo runs it, into a log directory that does not exist yet. The second is
container-like (as root): PID 1 of new PID and mount namespaces with that directory bind-mounted at /logs and no
MLOPS_LOG_DIR (the entrypoint's default /logs), exactly what ``docker run -v logs/mlflow:/logs IMAGE`` does; the real
MLflow client then creates an experiment and logs a run with a param, a metric and an artifact, asks for an
experiment that does not exist (404), and TERM goes to PID 1 as ``docker stop`` sends it. All assertions read the
host's log file. Needs the mlflow extra (``make setup`` installs it).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.container import (
    Restarted,
    assert_appended_without_loss,
    assert_pid1_left_nothing,
    not_contained_reason,
    start_twice,
)
from support.mlflow_traffic import ACCESS, client_traffic, recording_requests
from vllm_server import free_port, wait_for_http

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTRYPOINT = REPO / "entrypoints" / "mlflow.sh"
MARKER = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]")
PY_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")


@dataclass
class Traffic:
    """What the test did to the second run: the requests the client sent, the Host header checks."""

    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  #: (method, path) the client sent
    host_checks: dict[str, int] = field(default_factory=dict)  #: Host header -> status


def _host_check(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/api/2.0/mlflow/experiments/search", body='{"max_results": 1}',
                     headers={"Host": host, "Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    return {**env, "LOGWRAP": str(BIN / "logwrap"), "MLOPS_MLFLOW": str(BIN / "mlflow"),
            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed: `make setup` installs the mlflow extra (pip install -e '.[dev]')")
    return Traffic(free_port())


@pytest.fixture(scope="module")
def runs(traffic: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Restarted:
    base = tmp_path_factory.mktemp("mlflow")
    log_dir = base / "logs" / "mlflow"  # does not exist yet
    store = base / "store"
    store.mkdir()
    argv = [str(ENTRYPOINT), "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
            "--artifacts-destination", str(store / "artifacts"), "--workers", "2", "--port", str(traffic.port)]

    def traffic_during_second() -> None:
        with recording_requests(traffic.port) as sent:
            client_traffic(traffic.port, base)
            traffic.host_checks = {host: _host_check(traffic.port, host) for host in ("mlflow:5000", "evil.example")}
        traffic.requests = sent

    return start_twice((argv, argv), log_dir, base, _env(), "mlflow", during_second=traffic_during_second,
                       ready=lambda s: wait_for_http(f"http://127.0.0.1:{traffic.port}/health", 120, proc=s.proc,
                                                     log_path=s.console))


def test_first_start_creates_the_missing_log_dir_and_the_database(runs: Restarted) -> None:
    assert runs.log.is_file() and runs.log.parent.stat().st_mode & 0o777 == 0o750
    text = "\n".join(runs.first.messages())
    assert "Creating initial MLflow database tables" in text
    assert "Creating initial MLflow database tables" not in "\n".join(runs.second.messages())  # the store persisted


@pytest.mark.parametrize("which", ["first", "second"])
def test_startup_lines_of_both_workers_and_the_security_settings(runs: Restarted, traffic: Traffic, which: str) -> None:
    text = getattr(runs, which).messages()
    listening = f"Uvicorn running on http://0.0.0.0:{traffic.port}"  # MLFLOW_HOST=0.0.0.0, the default
    assert any(listening in m for m in text), text
    assert any("Started parent process" in m for m in text)
    assert sum("Application startup complete." in m for m in text) == 2  # --workers 2
    assert any(m.startswith("[MLflow] Security middleware enabled. Allowed hosts: mlflow, mlflow:*, localhost")
               for m in text), text


def test_one_access_record_per_request_the_mlflow_client_made(runs: Restarted, traffic: Traffic) -> None:
    kinds = {path.split("?")[0].rsplit("/", 1)[-1] for _method, path in traffic.requests}
    assert {"create", "log-parameter", "log-metric", "update", "get-by-name"} <= kinds, traffic.requests
    assert any(method == "PUT" and "/mlflow-artifacts/artifacts/" in path for method, path in traffic.requests)
    access = [m.groups() for r in runs.second.records if (m := ACCESS.search(r["message"]))]
    client_access = Counter((method, path) for method, path, _status in access if path != "/health")
    assert client_access == Counter(traffic.requests)
    assert all(r["level"] == "INFO" and r["stream"] == "stdout" and r["service"] == "mlflow"
               for r in runs.second.records if ACCESS.search(r["message"]))


def test_a_404_is_recorded_with_its_status(runs: Restarted) -> None:
    [miss] = [r for r in runs.second.records if "get-by-name?experiment_name=no-such-experiment" in r["message"]]
    assert ACCESS.search(miss["message"]).group(3) == "404" and miss["message"].endswith("404 Not Found")
    assert miss["level"] == "INFO"  # uvicorn's access marker says INFO, whatever the status


def test_other_containers_are_answered_by_name_and_unknown_hosts_refused(runs: Restarted, traffic: Traffic) -> None:
    assert traffic.host_checks == {"mlflow:5000": 200, "evil.example": 403}
    [refused] = [r for r in runs.second.records if "Rejected request with invalid Host header: evil.example" in
                 r["message"]]
    assert refused["level"] == "WARNING"


@pytest.mark.parametrize("which", ["first", "second"])
def test_every_mlflow_record_has_the_level_its_marker_names(runs: Restarted, which: str) -> None:
    records = getattr(runs, which).records
    assert len(records) > 20
    for record in records:
        assert record["timestamp"].endswith("Z") and record["message"] is not None and record["service"] == "mlflow"
        if marker := MARKER.match(record["message"]):
            assert record["level"] == marker.group(1), record
        elif PY_WARNING.match(record["message"]):
            assert record["level"] == "WARNING", record
    assert sum(bool(MARKER.match(r["message"])) for r in records) > 15


@pytest.mark.parametrize("which", ["first", "second"])
def test_term_shuts_mlflow_down_and_gives_its_exit_status(runs: Restarted, which: str) -> None:
    run = getattr(runs, which)
    assert run.exit_status == 0, run.output[-3000:]
    text = run.messages()
    assert any("forwarded SIGTERM to the child" in m for m in text)
    for line in ("Received SIGTERM, exiting.", "Stopping parent process"):
        assert any(line in m for m in text), line
    assert sum("Application shutdown complete." in m for m in text) == 2
    end = run.logwrap("exit_code")
    assert end["exit_code"] == 0 and end["level"] == "INFO"
    assert not [r for r in run.records if r.get("logger") == "logwrap" and r["level"] != "INFO"], run.records
    assert run.processes_after == []  # nothing left running


def test_as_pid1_of_a_container_it_reaps_and_leaves_no_process(runs: Restarted) -> None:
    if not runs.second.contained:
        pytest.skip(not_contained_reason())
    assert runs.second.logwrap("command")["command"].startswith(f"{BIN / 'mlflow'} server ")
    # logwrap, mlflow's CLI, uvicorn's parent, 2 workers (and MLflow's job runner); the namespace is gone after
    assert_pid1_left_nothing(runs.second, at_least=5)


def test_restart_on_the_same_log_dir_appends_and_loses_no_line(runs: Restarted) -> None:
    assert_appended_without_loss(runs)
    # every line MLflow printed in either run is in the file (the console got the same lines by passthrough)
    for run in (runs.first, runs.second):
        wrapped = [r["message"] for r in run.records if r.get("logger") != "logwrap"]
        printed = [line for line in run.output.splitlines() if not line.startswith("logwrap:")]
        assert wrapped == printed
