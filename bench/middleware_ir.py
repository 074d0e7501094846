"""Instructions a request the FastAPI middleware costs, counted with valgrind: deterministic, so two revisions can be
compared on a noisy machine where req/s cannot tell 1% apart.

    python bench/middleware_ir.py [--python OTHER_PYTHON ...] [--traceparent]

Runs the same trivial app's ASGI entry point in-process (no server) N and 3N times, plain and with ``instrument()``,
under ``valgrind --tool=callgrind``; the difference of the totals divided by 2N is the count per request (imports and
set-up cancel out). Uses only the public API, so any revision's install can run it. ``--traceparent``: every request
comes with a W3C ``traceparent`` header (the middleware joins that trace instead of starting one).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import textwrap

LOOP = textwrap.dedent("""\
    import asyncio, sys, tempfile
    from fastapi import FastAPI
    import mlops_logging.fastapi as mf
    SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"user-agent", b"bench")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}
    if sys.argv[3] == "traceparent":
        SCOPE["headers"].append((b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    app = FastAPI()
    @app.get("/")
    async def root():
        return {"ok": True}
    if sys.argv[1] == "instrumented":
        mf.instrument(app, log_dir=tempfile.mkdtemp(), stdout=False)
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        return None
    async def loop(n):
        for _ in range(n):
            await app(dict(SCOPE), receive, send)
    asyncio.run(loop(int(sys.argv[2])))
""")


def instructions(python: str, mode: str, requests: int, headers: str) -> int:
    """Total instructions (callgrind's ``Collected``) of one run of the loop."""
    # A fixed hash seed: with a random one, dict and set layouts (and so the count) vary by a few thousand per run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", LOOP, mode,
                           str(requests), headers], capture_output=True, text=True, check=True, env=env)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def per_request(python: str, mode: str, requests: int, headers: str) -> float:
    return ((instructions(python, mode, 3 * requests, headers) - instructions(python, mode, requests, headers))
            / (2 * requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--python", action="append", default=[], help="another install's interpreter to count too")
    parser.add_argument("--traceparent", action="store_true", help="every request carries a traceparent header")
    args = parser.parse_args()
    headers = "traceparent" if args.traceparent else "plain"
    print(f"requests {'with' if args.traceparent else 'without'} a traceparent header\n")
    print("| install | plain app | instrumented | the middleware's share |\n|---|---:|---:|---:|")
    for python in [sys.executable, *args.python]:
        plain = per_request(python, "plain", args.requests, headers)
        instrumented = per_request(python, "instrumented", args.requests, headers)
        print(f"| `{python}` | {plain:,.0f} | {instrumented:,.0f} | {instrumented - plain:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
