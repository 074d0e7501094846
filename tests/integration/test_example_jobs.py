"""The training job (tracked in MLflow, read back with MLflow's client) and the local batch-inference job, run for
real as processes; their log files validated against record.schema.json."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastapi_support import free_port
from mlops_logging.testing import read_records
from support.procs import wait_for
from vllm_server import stop_process, wait_for_http

mlflow = pytest.importorskip("mlflow", reason="the training job needs MLflow: pip install -e '.[mlflow]'")
from mlflow.tracking import MlflowClient  # noqa: E402

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "examples" / "training" / "train.py"
BATCH = REPO / "examples" / "inference" / "batch.py"


def train(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TRAIN), "--out", str(tmp_path / "model.json"), "--local-store",
                           str(tmp_path / "mlruns"), *args], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env={**os.environ, **(env or {})})


def local_client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def run_records(log_root: Path) -> list[dict]:
    records = read_records(log_root / "training" / "training.log")
    assert records, "training.log is empty"
    return records


def assert_run_tracked(client: MlflowClient, records: list[dict], status: str, epochs: int) -> str:
    """Every record carries the run's ids; MLflow has the run with that status, its metrics and its log."""
    run_ids = {r.get("run_id") for r in records}
    assert len(run_ids) == 1 and None not in run_ids, [r for r in records if "run_id" not in r]
    [run_id] = run_ids
    assert {r.get("experiment_id") for r in records} == {client.get_run(run_id).info.experiment_id}
    run = client.get_run(run_id)
    assert run.info.status == status
    losses = client.get_metric_history(run_id, "loss")
    assert [m.step for m in losses] == list(range(1, epochs + 1))
    epoch_records = [r for r in records if r["message"] == "epoch finished"]
    assert [r["loss"] for r in epoch_records][:epochs] == [round(m.value, 6) for m in losses]
    artifacts = [a.path for a in client.list_artifacts(run_id, "logs")]
    assert artifacts == ["logs/training.log"]
    attached = Path(client.download_artifacts(run_id, "logs/training.log")).read_text().splitlines()
    assert attached and all(f'"run_id":"{run_id}"' in line for line in attached)
    return run_id


def test_a_training_run_is_tracked_in_a_local_store_with_its_ids_on_every_record(tmp_path: Path,
                                                                                 log_root: Path) -> None:
    result = train(tmp_path, "--epochs", "4")
    assert result.returncode == 0, result.stderr
    records = run_records(log_root)
    run_id = assert_run_tracked(local_client(tmp_path), records, "FINISHED", 4)
    assert [r["message"] for r in records if r["logger"] == "training"] == ["run started", "run finished",
                                                                            "run ended"]
    client = local_client(tmp_path)
    assert client.get_run(run_id).data.params == {"epochs": "4", "lr": "0.05", "seed": "7"}
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.json"]
    attached = Path(client.download_artifacts(run_id, "logs/training.log")).read_text()
    assert '"message":"run finished"' in attached and '"message":"run started"' in attached


def test_a_failed_run_logs_its_traceback_and_is_marked_failed(tmp_path: Path, log_root: Path) -> None:
    result = train(tmp_path, "--epochs", "5", "--fail-at-epoch", "3")
    assert result.returncode == 1
    records = run_records(log_root)
    assert_run_tracked(local_client(tmp_path), records, "FAILED", 2)
    [failed] = [r for r in records if r["message"] == "run failed"]
    assert failed["level"] == "ERROR" and failed["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: simulated failure at epoch 3 (--fail-at-epoch)" in failed["exception"]


def test_a_diverging_run_is_an_error_and_a_failed_run(tmp_path: Path, log_root: Path) -> None:
    result = train(tmp_path, "--epochs", "30", "--lr", "5")
    assert result.returncode == 1
    records = run_records(log_root)
    [diverged] = [r for r in records if r["message"] == "loss diverged"]
    assert diverged["level"] == "ERROR"
    run_id = records[0]["run_id"]
    assert local_client(tmp_path).get_run(run_id).info.status == "FAILED"
    assert "training diverged at epoch" in next(r for r in records if r["message"] == "run failed")["exception"]


def test_sigterm_ends_the_run_killed(tmp_path: Path, log_root: Path) -> None:
    with (tmp_path / "train.out").open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(TRAIN), "--epochs", "100000", "--out", str(tmp_path / "m.json"),
                                 "--local-store", str(tmp_path / "mlruns")], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)
    log = log_root / "training" / "training.log"
    try:
        wait_for(lambda: log.exists() and b"epoch finished" in log.read_bytes(), timeout=120, what="an epoch")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = run_records(log_root)
    assert local_client(tmp_path).get_run(records[0]["run_id"]).info.status == "KILLED"
    assert any(r["message"] == "run killed" and r["level"] == "WARNING" for r in records)


def test_an_unreachable_tracking_server_falls_back_to_the_local_store_and_says_so(tmp_path: Path,
                                                                                 log_root: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = train(tmp_path, "--epochs", "2", env={"MLFLOW_TRACKING_URI": url})
    assert result.returncode == 0, result.stderr
    records = run_records(log_root)
    [warning] = [r for r in records if r["level"] == "WARNING"]
    assert warning["message"].startswith(f"MLflow server {url} is not reachable")
    assert_run_tracked(local_client(tmp_path), records, "FINISHED", 2)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` (sqlite backend, proxied artifacts) on a free port."""
    port = free_port()
    out = (tmp_path / "mlflow-server.out").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                             str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", 120, proc=proc, log_path=tmp_path / "mlflow-server.out")
        yield url
    finally:
        stop_process(proc, timeout=30)
        out.close()


@pytest.mark.mlflow
def test_a_training_run_is_tracked_in_the_live_mlflow_server(tmp_path: Path, log_root: Path,
                                                             mlflow_server: str) -> None:
    result = train(tmp_path, "--epochs", "3", env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert result.returncode == 0, result.stderr
    records = run_records(log_root)
    assert not [r for r in records if r["level"] == "WARNING"]  # no fallback
    assert records[0]["tracking_uri"] == mlflow_server
    assert_run_tracked(MlflowClient(tracking_uri=mlflow_server), records, "FINISHED", 3)
    assert not (tmp_path / "mlruns").exists()


def test_the_local_inference_job_writes_items_batches_and_a_summary(tmp_path: Path, log_root: Path) -> None:
    (tmp_path / "model.json").write_text('{"weight": 3.0, "bias": -2.0}')
    result = subprocess.run([sys.executable, str(BATCH), "--model", str(tmp_path / "model.json"), "--n", "30",
                             "--batch-size", "8"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_records(log_root / "inference" / "inference.log")
    job_id = records[0]["job_id"]
    assert all(r["job_id"] == job_id and r["service"] == "inference" for r in records)
    scored = [r for r in records if r["message"] == "item scored"]
    rejected = [r for r in records if r["message"] == "input rejected"]
    assert len(scored) == 28 and [r["item"] for r in rejected] == [0, 25]
    assert all(r["level"] == "WARNING" for r in rejected)
    assert {r["request_id"] for r in scored + rejected} == {f"{job_id}-{i}" for i in range(30)}
    batches = [r for r in records if r["message"] == "batch finished"]
    assert [(b["items"], b["rejected"]) for b in batches] == [(8, 1), (8, 0), (8, 0), (6, 1)]
    [summary] = [r for r in records if r["message"] == "job finished"]
    assert (summary["items"], summary["failures"], summary["rejected"], summary["batches"]) == (30, 0, 2, 4)
    assert "request_id" not in summary
