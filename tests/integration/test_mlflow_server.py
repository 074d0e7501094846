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
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from vllm_server import free_port, wait_for_http

from support.container import start
from support.records import read_records

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.sys.executable).parent
ENTRYPOINT = REPO / "entrypoints" / "mlflow.sh"
MARKER = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]")
PY_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")
ACCESS = re.compile(r'INFO: +\S+ - "(\w+) (\S+) HTTP/[\d.]+" (\d{3})')
PID1_REAPER = "running as PID 1: reaping orphaned processes"


@dataclass
class Run:
    """One start of the server: its records, what it printed, its exit status, the processes around the stop."""

    contained: bool
    exit_status: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""
    processes_at_stop: list[int] = field(default_factory=list)
    processes_after: list[int] = field(default_factory=list)


@dataclass
class Runs:
    log: Path
    port: int
    first: Run
    second: Run
    first_bytes: bytes = b""
    requests: list[tuple[str, str]] = field(default_factory=list)  #: (method, path) the client sent in run 2
    host_checks: dict[str, int] = field(default_factory=dict)  #: Host header -> status


@contextmanager
def recording_requests(port: int) -> Iterator[list[tuple[str, str]]]:
    """Every HTTP request this process sends to ``port`` (http.client's putrequest: one call per request sent)."""
    sent: list[tuple[str, str]] = []
    original = http.client.HTTPConnection.putrequest

    def putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        if self.port == port:
            sent.append((method, url))
        original(self, method, url, *args, **kwargs)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        http.client.HTTPConnection.putrequest = original  # type: ignore[method-assign]


def _client_traffic(port: int, workdir: Path) -> None:
    """What a training job does with the real client: experiment, run, param, metric, artifact; and one 404."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
    experiment = client.create_experiment("containers")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "lr", "0.05")
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    artifact = workdir / "model.txt"
    artifact.write_text("w=3.0 b=-2.0\n")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)
    assert client.get_experiment_by_name("no-such-experiment") is None  # answered 404


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
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed: `make setup` installs the mlflow extra (pip install -e '.[dev]')")
    base = tmp_path_factory.mktemp("mlflow")
    log_dir = base / "logs" / "mlflow"  # does not exist yet
    store = base / "store"
    store.mkdir()
    port = free_port()
    argv = [str(ENTRYPOINT), "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
            "--artifacts-destination", str(store / "artifacts"), "--workers", "2", "--port", str(port)]
    result = Runs(log_dir / "mlflow.log", port, Run(contained=False), Run(contained=os.geteuid() == 0))
    for number, run in ((1, result.first), (2, result.second)):
        server = start(argv, log_dir, base / f"run{number}.console", _env(), contained=run.contained)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", 120, proc=server.proc, log_path=server.console)
            if number == 2:
                with recording_requests(port) as sent:
                    _client_traffic(port, base)
                    result.host_checks = {host: _host_check(port, host) for host in ("mlflow:5000", "evil.example")}
                result.requests = sent
            run.processes_at_stop = server.members()
            run.exit_status = server.stop(signal.SIGTERM)
            run.processes_after = server.members()
        finally:
            server.kill()
            run.output = server.output()
        if number == 1:
            result.first_bytes = result.log.read_bytes()
    records = read_records(result.log)
    starts = [i for i, r in enumerate(records) if r.get("logger") == "logwrap" and "command" in r]
    assert len(starts) == 2, starts
    result.first.records, result.second.records = records[:starts[1]], records[starts[1]:]
    return result


def messages(run: Run) -> list[str]:
    return [r["message"] for r in run.records]


def test_first_start_creates_the_missing_log_dir_and_the_database(runs: Runs) -> None:
    assert runs.log.is_file() and runs.log.parent.stat().st_mode & 0o777 == 0o750
    text = "\n".join(messages(runs.first))
    assert "Creating initial MLflow database tables" in text
    assert "Creating initial MLflow database tables" not in "\n".join(messages(runs.second))  # the store persisted


@pytest.mark.parametrize("which", ["first", "second"])
def test_startup_lines_of_both_workers_and_the_security_settings(runs: Runs, which: str) -> None:
    text = messages(getattr(runs, which))
    assert any(f"Uvicorn running on http://0.0.0.0:{runs.port}" in m for m in text), text  # MLFLOW_HOST=0.0.0.0
    assert any("Started parent process" in m for m in text)
    assert sum("Application startup complete." in m for m in text) == 2  # --workers 2
    assert any(m.startswith("[MLflow] Security middleware enabled. Allowed hosts: mlflow, mlflow:*, localhost")
               for m in text), text


def test_one_access_record_per_request_the_mlflow_client_made(runs: Runs) -> None:
    kinds = {path.split("?")[0].rsplit("/", 1)[-1] for _method, path in runs.requests}
    assert {"create", "log-parameter", "log-metric", "update", "get-by-name"} <= kinds, runs.requests
    assert any(method == "PUT" and "/mlflow-artifacts/artifacts/" in path for method, path in runs.requests)
    access = [m.groups() for r in runs.second.records if (m := ACCESS.search(r["message"]))]
    client_access = Counter((method, path) for method, path, _status in access if path != "/health")
    assert client_access == Counter(runs.requests)
    assert all(r["level"] == "INFO" and r["stream"] == "stdout" and r["service"] == "mlflow"
               for r in runs.second.records if ACCESS.search(r["message"]))


def test_a_404_is_recorded_with_its_status(runs: Runs) -> None:
    [miss] = [r for r in runs.second.records if "get-by-name?experiment_name=no-such-experiment" in r["message"]]
    assert ACCESS.search(miss["message"]).group(3) == "404" and miss["message"].endswith("404 Not Found")
    assert miss["level"] == "INFO"  # uvicorn's access marker says INFO, whatever the status


def test_other_containers_are_answered_by_name_and_unknown_hosts_refused(runs: Runs) -> None:
    assert runs.host_checks == {"mlflow:5000": 200, "evil.example": 403}
    [refused] = [r for r in runs.second.records if "Rejected request with invalid Host header: evil.example" in
                 r["message"]]
    assert refused["level"] == "WARNING"


@pytest.mark.parametrize("which", ["first", "second"])
def test_every_mlflow_record_has_the_level_its_marker_names(runs: Runs, which: str) -> None:
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
def test_term_shuts_mlflow_down_and_gives_its_exit_status(runs: Runs, which: str) -> None:
    run = getattr(runs, which)
    assert run.exit_status == 0, run.output[-3000:]
    text = messages(run)
    assert any("forwarded SIGTERM to the child" in m for m in text)
    for line in ("Received SIGTERM, exiting.", "Stopping parent process"):
        assert any(line in m for m in text), line
    assert sum("Application shutdown complete." in m for m in text) == 2
    [end] = [r for r in run.records if r.get("logger") == "logwrap" and "exit_code" in r]
    assert end["exit_code"] == 0 and end["level"] == "INFO"
    assert not [r for r in run.records if r.get("logger") == "logwrap" and r["level"] != "INFO"], run.records
    assert run.processes_after == []  # nothing left running


def test_as_pid1_of_a_container_it_reaps_and_leaves_no_process(runs: Runs) -> None:
    if not runs.second.contained:
        pytest.skip(f"the container-like run (unshare --pid --mount) needs root; running as uid {os.geteuid()}")
    [begin] = [r for r in runs.second.records if r.get("logger") == "logwrap" and "command" in r]
    assert begin["pid"] == 1 and begin["reaper"] == PID1_REAPER
    assert begin["command"].startswith(f"{BIN / 'mlflow'} server ")
    assert len(runs.second.processes_at_stop) >= 5  # logwrap, mlflow's CLI, uvicorn's parent, 2 workers
    assert runs.second.processes_after == []  # the namespace is gone: PID 1 exited and nothing was left in it


def test_restart_on_the_same_log_dir_appends_and_loses_no_line(runs: Runs) -> None:
    data = runs.log.read_bytes()
    assert data.startswith(runs.first_bytes) and len(data) > len(runs.first_bytes)
    assert runs.first_bytes.count(b"\n") == len(runs.first.records)
    # every line MLflow printed in either run is in the file (the console got the same lines by passthrough)
    for run in (runs.first, runs.second):
        wrapped = [r["message"] for r in run.records if r.get("logger") != "logwrap"]
        printed = [line for line in run.output.splitlines() if not line.startswith("logwrap:")]
        assert wrapped == printed
