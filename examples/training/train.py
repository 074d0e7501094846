"""A small real training job tracked in MLflow: fits y = 3x - 2 by stochastic gradient descent.

    python examples/training/train.py [--epochs 20] [--lr 0.05] [--out model.json] [--fail-at-epoch N]

Tracking: the MLflow server of ``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` when it answers, else a local store
(``--local-store``, default ``./mlruns``: ``sqlite:///mlruns/mlflow.db``, MLflow 3's local default; its file store
refuses new runs), saying so in a WARNING record. Logs: ``logs/training/training.log`` through
``configure_logging``, with the run's ``run_id`` and ``experiment_id`` bound on every record (stdlib ones, mlflow's
own, too). Each epoch is a record and an MLflow metric step (``loss``, ``weight``, ``bias``). At the end the run's
own records (the lines of training.log with its ``run_id``) are attached to the run as ``logs/training.log``. A
failure (``--fail-at-epoch N``, a diverging loss, any exception) is one ERROR record with its traceback and the run
ends FAILED (exit 1); SIGTERM ends it KILLED after the current epoch (exit 143).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from mlops_logging import configure_logging, get_logger

EXPERIMENT = "mlops-logging-training"


class Terminated(Exception):
    """SIGTERM arrived: the run ends KILLED."""


def make_data(n: int, rng: random.Random) -> list[tuple[float, float]]:
    """Noisy samples of y = 3x - 2."""
    return [(x, 3 * x - 2 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(n))]


def train(epochs: int, lr: float, seed: int, fail_at: int | None, mlflow: Any,
          stop: threading.Event) -> tuple[float, float]:
    """SGD on mean squared error; one record and one MLflow metric step per epoch. Returns (weight, bias).

    ``stop`` (set by SIGTERM) is checked between epochs: raising from the signal handler itself could land inside
    MLflow's store code, which would turn it into an MLflow error."""
    log = get_logger("training.sgd")
    rng = random.Random(seed)
    data = make_data(512, rng)
    w, b = 0.0, 0.0
    for epoch in range(1, epochs + 1):
        if stop.is_set():
            raise Terminated(f"stopped by SIGTERM before epoch {epoch}")
        if epoch == fail_at:
            raise RuntimeError(f"simulated failure at epoch {epoch} (--fail-at-epoch)")
        rng.shuffle(data)
        for x, y in data:
            err = (w * x + b) - y
            w -= lr * err * x
            b -= lr * err
        loss = sum(e * e for e in ((w * x + b) - y for x, y in data)) / len(data)  # inf/nan, never OverflowError
        log.info("epoch finished", epoch=epoch, loss=round(loss, 6), weight=round(w, 4), bias=round(b, 4))
        if not loss <= 1e3:  # also inf and nan
            log.error("loss diverged", epoch=epoch, loss=str(loss) if loss != loss or loss == float("inf") else loss,
                      lr=lr)
            raise RuntimeError(f"training diverged at epoch {epoch} (loss {loss:.3g}): lower --lr")
        mlflow.log_metrics({"loss": loss, "weight": w, "bias": b}, step=epoch)
    return w, b


def server_answers(uri: str) -> str | None:
    """None when the MLflow server at ``uri`` answers /health, else why not."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3) as resp:  # noqa: S310 - the user's URI
            return None if resp.status == 200 else f"/health answered {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def choose_store(uri: str | None, local: Path) -> tuple[str, str | None]:
    """The tracking URI to use, and why the server was not used (None when it was, or none was set)."""
    if uri and uri.startswith(("http://", "https://")):
        why = server_answers(uri)
        if why is None:
            return uri, None
        fallback = f"MLflow server {uri} is not reachable ({why})"
    elif uri:
        return uri, None  # sqlite:///..., databricks, ...: used as given
    else:
        fallback = None
    local.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{local.resolve() / 'mlflow.db'}", fallback


@contextmanager
def quiet_mlflow_setup() -> Iterator[None]:
    """mlflow's INFO lines while it opens a store (``Creating initial MLflow database tables...``) come before the
    run exists, so they could not carry its id: they are left out; its warnings and errors are kept."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_lines(path: Path, start: tuple[int, int], run_id: str) -> str:
    """The run's records: lines of ``path`` written since ``start`` (inode, offset) that carry ``run_id``."""
    inode, offset = start
    chunks = []
    try:
        st = path.stat()
        if st.st_ino != inode or st.st_size < offset:  # rotated meanwhile: the old file first, then the new one
            rotated = path.with_name(path.name + ".1")
            if rotated.exists() and rotated.stat().st_ino == inode:
                chunks.append(rotated.read_bytes()[offset:])
            offset = 0
        with path.open("rb") as handle:
            handle.seek(offset)
            chunks.append(handle.read())
    except OSError as exc:
        return json.dumps({"error": f"could not read {path}: {exc}"}) + "\n"
    marker = f'"run_id":"{run_id}"'.encode()
    return b"".join(line + b"\n" for chunk in chunks for line in chunk.split(b"\n") if marker in line).decode(
        "utf-8", "replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("model.json"))
    parser.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--local-store", type=Path, default=Path("mlruns"))
    parser.add_argument("--fail-at-epoch", type=int, help="raise at the start of this epoch (to see a failed run)")
    args = parser.parse_args()
    try:
        import mlflow
    except ImportError:
        print("train.py: MLflow is not installed: pip install 'mlops-logging[mlflow]'", file=sys.stderr)
        return 2

    path = configure_logging("training")
    start = (path.stat().st_ino, path.stat().st_size) if path.exists() else (0, 0)
    uri, fallback = choose_store(args.tracking_uri, args.local_store)
    with quiet_mlflow_setup():
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.get_experiment_by_name(args.experiment)
        if experiment is None:
            location = None if uri.startswith("http") else (args.local_store.resolve() / "artifacts").as_uri()
            experiment_id = mlflow.create_experiment(args.experiment, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        run = mlflow.start_run(experiment_id=experiment_id)
    run_id = run.info.run_id
    # On every record of this run from here on, stdlib and mlflow's own records too.
    structlog.contextvars.bind_contextvars(run_id=run_id, experiment_id=experiment_id)
    log = get_logger("training")
    if fallback:
        log.warning(f"{fallback}: tracking in the local store instead", tracking_uri=uri)
    log.info("run started", epochs=args.epochs, lr=args.lr, seed=args.seed, tracking_uri=uri,
             experiment=args.experiment, log_file=str(path))
    mlflow.log_params({"epochs": args.epochs, "lr": args.lr, "seed": args.seed})

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    status, code = "FINISHED", 0
    try:
        w, b = train(args.epochs, args.lr, args.seed, args.fail_at_epoch, mlflow, stop)
        args.out.write_text(json.dumps({"weight": w, "bias": b, "run_id": run_id}))
        mlflow.log_artifact(str(args.out), artifact_path="model")
        logging.getLogger("training.io").info("model saved to %s", args.out)
        log.info("run finished", weight=round(w, 4), bias=round(b, 4), status=status)
    except Terminated as exc:
        status, code = "KILLED", 143
        log.warning("run killed", reason=str(exc), status=status)
    except Exception:  # noqa: BLE001 - any failure ends the run FAILED, with its traceback in the log
        status, code = "FAILED", 1
        log.exception("run failed", status=status)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            mlflow.log_text(run_lines(path, start, run_id), "logs/training.log")
        except Exception:  # noqa: BLE001 - the run must still be ended
            log.exception("could not attach the log file to the run")
        mlflow.end_run(status=status)
        log.info("run ended", status=status, artifact="logs/training.log")
        structlog.contextvars.unbind_contextvars("run_id", "experiment_id")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
