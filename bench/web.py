"""Requests/s and p99 latency of a trivial FastAPI endpoint under uvicorn (1 worker), four ways of logging it.

    python bench/web.py [--rounds 15] [--seconds 3] [--connections 32] [--no-publish]

(1) no logging at all, (2) uvicorn's default access log to a file, (3) asgi-correlation-id + a stdlib JSON access log
(python-json-logger, uvicorn.access to a file, the usual recipe), (4) ``mlops_logging.fastapi`` (``instrument(app)``
+ ``--log-config`` ``uvicorn_log_config.json``, the defaults: INFO access records to the file only) and (4b) the same
with ``access_console=True`` (every access record also as a readable line on stdout, which goes to /dev/null).
Every server runs at once; rounds are interleaved and the order rotates each round (1, 2, 3, 4, 4b, then 2, 3, 4, 4b,
1, ...) so drift on a shared machine hits all of them alike and none always runs first; the ratios are computed per
round and their median reported. Targets: (4) >= 0.95x (1) (#19; was 0.9x), (4) >= 1.2x (3).

Load comes from ``wrk`` in a separate process (Debian: ``apt-get install -y wrk``), pinned to another core than the
server when ``taskset`` exists. Without wrk the script falls back to a small asyncio keep-alive load generator
(``python bench/web.py --load ...``), says so in the report, and its figures are then only comparable to each other.
This module is also the app: ``uvicorn --factory web:make_app`` with ``BENCH_VARIANT`` set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import compared_installs, comparison, installs, publish, source_dir  # noqa: E402  (a sibling module)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VARIANTS = {
    "none": "(1) no logging",
    "uvicorn": "(2) uvicorn access log -> file",
    "correlation": "(3) asgi-correlation-id + JSON access log",
    "mlops": "(4) mlops_logging.fastapi",
    "mlops-console": "(4b) mlops_logging.fastapi, access_console=True",
}


# --- the app -------------------------------------------------------------------------------------------------------

def make_app() -> Any:
    """The benchmarked app for ``BENCH_VARIANT`` (uvicorn ``--factory``)."""
    from fastapi import FastAPI

    variant = os.environ["BENCH_VARIANT"]
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    if variant == "correlation":
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
    elif variant in ("mlops", "mlops-console"):
        from mlops_logging.fastapi import instrument

        instrument(app, service="bench", access_console=variant == "mlops-console")
    return app


def log_config(variant: str, log_dir: Path) -> dict[str, Any] | None:
    """The dictConfig uvicorn gets for ``variant`` (None: uvicorn's default, access log off)."""
    if variant == "none":
        return None
    if variant in ("mlops", "mlops-console"):
        from mlops_logging.uvicorn_conf import log_config as mlops_config

        return mlops_config(service="bench", log_dir=str(log_dir))
    file_handler = {"class": "logging.FileHandler", "filename": str(log_dir / f"{variant}.log")}
    if variant == "uvicorn":
        formatters = {
            "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
                        "use_colors": False},
            "access": {"()": "uvicorn.logging.AccessFormatter", "use_colors": False,
                       "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'},
        }
        filters: dict[str, Any] = {}
    else:  # asgi-correlation-id's documented recipe, with python-json-logger for the JSON lines
        formatters = {
            "default": {"()": "pythonjsonlogger.json.JsonFormatter",
                        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s"},
            "access": {"()": "pythonjsonlogger.json.JsonFormatter",
                       "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s %(client_addr)s "
                              "%(request_line)s %(status_code)s"},
        }
        filters = {"correlation_id": {"()": "asgi_correlation_id.CorrelationIdFilter", "uuid_length": 32}}
    use_filters = ["correlation_id"] if filters else []
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": filters,
        "formatters": formatters,
        "handlers": {
            "default": {**file_handler, "formatter": "default", "filters": use_filters},
            "access": {**file_handler, "formatter": "access", "filters": use_filters},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


# --- running servers -----------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(cpu: int) -> list[str]:
    """``taskset -c cpu`` when there is more than one core and taskset exists, else nothing."""
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def start_server(variant: str, work: Path, python: str = sys.executable,
                 label: str = "") -> tuple[subprocess.Popen, int]:
    """Start ``variant``'s server (``python``: another install's interpreter, whose checkout's ``src`` it imports;
    its files go to ``work/<variant><label>``)."""
    port = free_port()
    name = variant + label
    config = log_config(variant, work / name)
    (work / name).mkdir(parents=True, exist_ok=True)
    argv = [*pin(0), python, "-m", "uvicorn", "--factory", "web:make_app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if config is None:
        argv += ["--no-access-log", "--log-level", "warning"]
    else:
        path = work / f"{name}.json"
        path.write_text(json.dumps(config))
        argv += ["--log-config", str(path)]
    src = REPO / "src" if python == sys.executable else source_dir(python)
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONPATH": str(src)}
    env.pop("MLOPS_LOG_DIR", None)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=(work / f"{name}.stderr").open("wb"),
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name}: server did not start:\n{(work / f'{name}.stderr').read_text()[-2000:]}")
        time.sleep(0.1)


# --- load ----------------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(port: int, seconds: float, connections: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from one wrk run."""
    out = subprocess.run([*pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return rps, float(value) * _UNITS[unit]


async def _load(port: int, seconds: float, connections: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), latencies


def run_python_load(port: int, seconds: float, connections: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from the fallback load generator, run in its own process."""
    out = subprocess.run([*pin(1), sys.executable, __file__, "--load", str(port), str(seconds), str(connections)],
                         capture_output=True, text=True, check=True).stdout
    rps, p99 = out.split()
    return float(rps), float(p99)


def load_main(port: int, seconds: float, connections: int) -> None:
    count, latencies = asyncio.run(_load(port, seconds, connections))
    latencies.sort()
    print(count / seconds, latencies[int(len(latencies) * 0.99)])


# --- the run -------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-publish", action="store_true", help="print only, do not update docs/benchmarks.md")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=PYTHON",
                        help="also run (4) and (4b) under another install, in the same rounds")
    args = parser.parse_args()

    others = installs(args.compare)
    extra = {f"{v} [{label}]": (v, python, f" [{label}]")
             for label, python in others for v in ("mlops", "mlops-console")}

    wrk = shutil.which("wrk")
    load = run_wrk if wrk else run_python_load
    if not wrk:
        print("wrk not found (Debian: apt-get install -y wrk); using the slower asyncio load generator",
              file=sys.stderr)
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in [*VARIANTS, *extra]}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        work = Path(tmp)
        servers = {v: start_server(v, work) for v in VARIANTS}
        servers.update({name: start_server(v, work, python, label) for name, (v, python, label) in extra.items()})
        try:
            for _, port in servers.values():  # warm-up
                load(port, 1.0, args.connections)
            order = list(servers)
            for round_no in range(args.rounds):
                # Rotate the order every round, so that no variant always runs first (or right after another).
                shift = round_no % len(order)
                for variant in order[shift:] + order[:shift]:
                    port = servers[variant][1]
                    results[variant].append(load(port, args.seconds, args.connections))
                    print(f"round {round_no + 1} {variant:12} {results[variant][-1][0]:9.0f} req/s "
                          f"p99 {results[variant][-1][1]:.2f} ms", file=sys.stderr)
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _ in servers.values():
                proc.wait(timeout=30)
        lines = {v: sum(f.read_bytes().count(b"\n") for f in (work / v).rglob("*.log")) for v in VARIANTS}
    per_round = {name: [m / n for (m, _), (n, _) in zip(results[name], results["none"], strict=True)]
                 for name in results}

    rps = {v: statistics.median(r for r, _ in results[v]) for v in VARIANTS}
    p99 = {v: statistics.median(p for _, p in results[v]) for v in VARIANTS}
    base = rps["none"]
    rows = ["| variant | req/s (median of rounds) | p99 latency ms | vs (1) | log lines written |",
            "|---|---:|---:|---:|---:|"]
    for v, label in VARIANTS.items():
        rows.append(f"| {label} | {rps[v]:.0f} | {p99[v]:.2f} | {rps[v] / base:.2f}x | {lines[v]} |")
    # Paired per round (the variants of one round ran back to back), then the median: robust to machine drift.
    ratio_none = statistics.median(m / n for (m, _), (n, _) in zip(results["mlops"], results["none"], strict=True))
    ratio_corr = statistics.median(m / c for (m, _), (c, _) in zip(results["mlops"], results["correlation"],
                                                                    strict=True))
    verdict = (f"Median of per-round ratios: (4) / (1) = **{ratio_none:.2f}x** "
               f"(target >= 0.95: {'met' if ratio_none >= 0.95 else 'NOT met'}); "
               f"(4) / (3) = **{ratio_corr:.2f}x** (target >= 1.20: {'met' if ratio_corr >= 1.2 else 'NOT met'}).")
    import fastapi
    import uvicorn

    http = "httptools" if _has("httptools") else "h11"
    loop = "uvloop" if _has("uvloop") else "asyncio"
    body = "\n".join([
        f"Trivial `GET /` (FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, 1 worker, {http} + {loop}), "
        f"load from {'`wrk -t1 -c' + str(args.connections) + '`' if wrk else 'the asyncio fallback load generator'}"
        f" in a separate process{' (server and load pinned to different cores)' if pin(0) else ''}; "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s per variant, the order rotating each round.",
        "",
        *rows,
        "",
        verdict,
        "",
        "Per round (req/s): " + "; ".join(f"{v}: " + ", ".join(f"{r:.0f}" for r, _ in results[v]) for v in VARIANTS)
        + ".",
    ])
    if others:
        labels = [label for label, _ in others] + ["now"]
        table = {VARIANTS[v]: {**{label: statistics.median(per_round[f"{v} [{label}]"]) for label, _ in others},
                               "now": statistics.median(per_round[v])} for v in ("mlops", "mlops-console")}
        table["(4) / (3)"] = {**{label: statistics.median(
            m / c for (m, _), (c, _) in zip(results[f"mlops [{label}]"], results["correlation"], strict=True))
            for label, _ in others}, "now": ratio_corr}
        body += ("\n\nEvery install, median of per-round ratios against (1) (last row: against (3)):\n\n"
                 + comparison(labels, table, "vs (1)") + "\n\n" + compared_installs(others))
    print(body)
    if not args.no_publish:
        publish("web", body)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        load_main(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
