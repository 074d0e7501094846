"""A small real batch-inference job: scores inputs with the trained model, or sends prompts to an LLM endpoint.

Writes logs/inference/inference.log through configure_logging, one record per item with its request id.
Usage: python examples/inference/batch.py --model model.json [--n 50]
       python examples/inference/batch.py --endpoint http://127.0.0.1:8080 --prompts "Hello" "Tell me"
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from pathlib import Path

import structlog

from mlops_logging import configure_logging, get_logger

log = get_logger("inference")


def score(model_path: Path, n: int) -> int:
    """Predict n inputs with the saved linear model; returns the number of failed items."""
    model = json.loads(model_path.read_text())
    rng = random.Random(1)
    failures = 0
    for i in range(n):
        x = rng.uniform(-1, 1) if i % 25 else float("nan")  # every 25th input is bad on purpose
        with structlog.contextvars.bound_contextvars(request_id=f"batch-{i}"):
            if x != x:
                failures += 1
                log.warning("input rejected", item=i, reason="not a number")
                continue
            y = model["weight"] * x + model["bias"]
            log.info("item scored", item=i, x=round(x, 4), y=round(y, 4))
    return failures


def complete(endpoint: str, prompts: list[str], max_tokens: int) -> int:
    """Send each prompt to an OpenAI-compatible /v1/completions with its own X-Request-ID."""
    import httpx

    failures = 0
    with httpx.Client(base_url=endpoint, timeout=120) as client:
        for prompt in prompts:
            rid = f"batch-{uuid.uuid4().hex[:12]}"
            with structlog.contextvars.bound_contextvars(request_id=rid):
                started = time.perf_counter()
                try:
                    resp = client.post("/v1/completions", headers={"X-Request-ID": rid},
                                       json={"model": "tiny", "prompt": prompt, "max_tokens": max_tokens})
                    resp.raise_for_status()
                except httpx.HTTPError as exc:
                    failures += 1
                    log.error("completion failed", error=str(exc))
                    continue
                text = resp.json()["choices"][0]["text"]
                log.info("completion received", prompt_chars=len(prompt), completion_chars=len(text),
                         duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("model.json"))
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--endpoint")
    parser.add_argument("--prompts", nargs="*", default=["Hello", "The model says"])
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()

    configure_logging("inference")
    log.info("batch started", mode="llm" if args.endpoint else "local", items=len(args.prompts) if args.endpoint
             else args.n)
    failures = complete(args.endpoint, args.prompts, args.max_tokens) if args.endpoint else score(args.model, args.n)
    log.info("batch finished", failures=failures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
