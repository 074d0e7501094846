"""A small real batch-inference job: scores inputs with the trained model, or sends prompts to an LLM endpoint.

    python examples/inference/batch.py --model model.json [--n 50] [--batch-size 10]
    python examples/inference/batch.py --endpoint http://127.0.0.1:8080 --prompts "Hello" "Tell me" [--batch-size 2]

Writes logs/inference/inference.log through configure_logging: the job's ``job_id`` on every record; one record per
item with its ``request_id`` (in LLM mode also sent as ``X-Request-ID``, so the gateway's and vLLM's records of that
item carry it: ``logcheck --trace <id>``), one ``batch finished`` record per batch (items, failures, duration) and a
``job finished`` summary (items, failures, rejected inputs, batches, duration, items per second). Exit status 1 when
an item failed (a rejected input, a WARNING, is not a failure).
The endpoint is an OpenAI-compatible ``/v1/completions``: the gateway (examples/gateway) in front of vLLM.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from mlops_logging import configure_logging, get_logger

log = get_logger("inference")
T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def run_job(items: Sequence[T], batch_size: int, one: Callable[[int, T], bool | None], job_id: str) -> int:
    """Run ``one(index, item)`` over the batches (True: done, None: input rejected, False: failed); a record per
    batch, then the summary. Returns the number of failed items."""
    started = time.perf_counter()
    totals = {"failures": 0, "rejected": 0}
    index = count = 0
    for count, batch in enumerate(batches(items, batch_size), 1):
        batch_started = time.perf_counter()
        outcome = {"failures": 0, "rejected": 0}
        for item in batch:
            with structlog.contextvars.bound_contextvars(request_id=f"{job_id}-{index}"):
                done = one(index, item)
            if not done:
                outcome["rejected" if done is None else "failures"] += 1
            index += 1
        for key, value in outcome.items():
            totals[key] += value
        log.log(logging.WARNING if outcome["failures"] else logging.INFO, "batch finished", batch=count,
                items=len(batch), **outcome, duration_ms=round((time.perf_counter() - batch_started) * 1000, 1))
    elapsed = time.perf_counter() - started
    log.log(logging.WARNING if totals["failures"] else logging.INFO, "job finished", items=len(items), **totals,
            batches=count, duration_s=round(elapsed, 3),
            items_per_s=round(len(items) / elapsed, 1) if elapsed else None)
    return totals["failures"]


def local_scorer(model_path: Path) -> Callable[[int, float], bool | None]:
    """Predict with the saved linear model; a NaN input is rejected (a WARNING record)."""
    model = json.loads(model_path.read_text())

    def one(index: int, x: float) -> bool:
        if x != x:
            log.warning("input rejected", item=index, reason="not a number")
            return None
        y = model["weight"] * x + model["bias"]
        log.info("item scored", item=index, x=round(x, 4), y=round(y, 4))
        return True

    return one


def llm_client(client: Any, max_tokens: int, model: str) -> Callable[[int, str], bool]:
    """Send a prompt to /v1/completions with the item's request id as X-Request-ID."""
    import httpx

    def one(index: int, prompt: str) -> bool:
        rid = structlog.contextvars.get_contextvars()["request_id"]
        started = time.perf_counter()
        try:
            resp = client.post("/v1/completions", headers={"X-Request-ID": rid},
                               json={"model": model, "prompt": prompt, "max_tokens": max_tokens})
            resp.raise_for_status()
            text = resp.json()["choices"][0]["text"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            log.error("completion failed", item=index, error=str(exc) or type(exc).__name__)
            return False
        log.info("completion received", item=index, prompt_chars=len(prompt), completion_chars=len(text),
                 duration_ms=round((time.perf_counter() - started) * 1000, 1))
        return True

    return one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("model.json"))
    parser.add_argument("--n", type=int, default=50, help="local mode: items to score")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--endpoint", help="LLM mode: base URL of an OpenAI-compatible server (the gateway)")
    parser.add_argument("--prompts", nargs="*", default=["Hello", "The model says"])
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--llm-model", default="tiny", help="the model name sent in each request")
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    configure_logging("inference")
    job_id = f"batch-{uuid.uuid4().hex[:12]}"
    structlog.contextvars.bind_contextvars(job_id=job_id)
    mode = "llm" if args.endpoint else "local"
    if args.endpoint:
        import httpx

        items: list[Any] = list(args.prompts)
        log.info("job started", mode=mode, endpoint=args.endpoint, items=len(items), batch_size=args.batch_size)
        with httpx.Client(base_url=args.endpoint, timeout=120) as client:
            failures = run_job(items, args.batch_size, llm_client(client, args.max_tokens, args.llm_model), job_id)
    else:
        rng = random.Random(1)
        items = [rng.uniform(-1, 1) if i % 25 else float("nan") for i in range(args.n)]  # every 25th is bad
        log.info("job started", mode=mode, model=str(args.model), items=len(items), batch_size=args.batch_size)
        failures = run_job(items, args.batch_size, local_scorer(args.model), job_id)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
