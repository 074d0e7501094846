"""A small real training job: fits y = 3x - 2 by stochastic gradient descent and logs every epoch.

Writes logs/training/training.log through configure_logging; the run id is bound once and appears on every record.
Usage: python examples/training/train.py [--epochs 20] [--out model.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import uuid
from pathlib import Path

import structlog

from mlops_logging import configure_logging, get_logger


def make_data(n: int, rng: random.Random) -> list[tuple[float, float]]:
    """Noisy samples of y = 3x - 2."""
    return [(x, 3 * x - 2 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(n))]


def train(epochs: int, lr: float, seed: int) -> tuple[float, float]:
    """SGD on mean squared error; returns (weight, bias)."""
    log = get_logger("training.sgd")
    rng = random.Random(seed)
    data = make_data(512, rng)
    w, b = 0.0, 0.0
    for epoch in range(1, epochs + 1):
        rng.shuffle(data)
        for x, y in data:
            err = (w * x + b) - y
            w -= lr * err * x
            b -= lr * err
        loss = sum(((w * x + b) - y) ** 2 for x, y in data) / len(data)
        log.info("epoch finished", epoch=epoch, loss=round(loss, 6), weight=round(w, 4), bias=round(b, 4))
        if loss > 1e3:
            log.error("loss diverged", epoch=epoch, loss=loss)
            raise RuntimeError(f"training diverged at epoch {epoch}")
    return w, b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("model.json"))
    args = parser.parse_args()

    path = configure_logging("training")
    run_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(run_id=run_id)  # on every record of this run, stdlib ones too
    log = get_logger("training")
    log.info("run started", epochs=args.epochs, lr=args.lr, seed=args.seed, log_file=str(path))
    try:
        w, b = train(args.epochs, args.lr, args.seed)
    except RuntimeError:
        log.exception("run failed")
        return 1
    args.out.write_text(json.dumps({"weight": w, "bias": b, "run_id": run_id}))
    logging.getLogger("training.io").info("model saved to %s", args.out)
    log.info("run finished", weight=round(w, 4), bias=round(b, 4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
