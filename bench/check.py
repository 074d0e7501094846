"""logcheck on a 10 MB log vs a 10 GB one, side by side in one run: the audit samples the end, so both cost the same.

The 10 GB file is sparse (``truncate``) and ends with the same 10 MB of real records as the small one, so the only
difference is the size. Rounds interleave the two; medians of the in-process audit (``audit()``) and of the whole
command (``logcheck --json``, a new process each time, Python's start-up included). Targets: 10 GB / 10 MB time
ratio <= 1.5, the 10 GB command under 1 s.
Usage: python bench/check.py [--rounds 15] [--big-gib 10] [--publish]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_logging._records import format_timestamp
from mlops_logging._render import render_json
from mlops_logging.check import CheckSettings, audit

SMALL = 10 * 1024 * 1024


def records(n_bytes: int) -> bytes:
    """About ``n_bytes`` of real records, as the gateway writes them (one access record a request)."""
    now = time.time()
    out, size, i = [], 0, 0
    while size < n_bytes:
        line = render_json({"timestamp": format_timestamp(now - (n_bytes - size) / 1e6), "level": "INFO",
                            "message": "GET /v1/models 200", "service": "fastapi", "logger": "mlops_logging.access",
                            "pid": 4242, "request_id": f"{i:032x}", "method": "GET", "path": "/v1/models",
                            "status_code": 200, "duration_ms": 1.234, "bytes_sent": 321})
        out.append(line)
        size += len(line)
        i += 1
    return b"".join(out)


def make_tree(root: Path, big: int) -> tuple[Path, Path]:
    """Two log roots with one fastapi.log each: 10 MB of records, and a sparse ``big``-byte file ending with them."""
    tail = records(SMALL)
    small_root, big_root = root / "small", root / "big"
    for base in (small_root, big_root):
        (base / "fastapi").mkdir(parents=True)
    (small_root / "fastapi" / "fastapi.log").write_bytes(tail)
    with (big_root / "fastapi" / "fastapi.log").open("wb") as handle:
        handle.truncate(big - len(tail))  # a hole: no disk used, reads as NUL bytes
        handle.seek(big - len(tail))
        handle.write(tail)
    return small_root, big_root


def time_audit(root: Path) -> float:
    settings = CheckSettings(root=root, services=("fastapi",), transcript_dir=None)
    started = time.perf_counter()
    report = audit(settings)
    elapsed = time.perf_counter() - started
    assert report.ok, report.verdict()
    return elapsed


def time_command(root: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mlops_logging.check", "--root", str(root), "--services", "fastapi",
                             "--json", "--no-transcript"], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and json.loads(result.stdout)["ok"], result.stdout + result.stderr
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--big-gib", type=float, default=10.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a file system with sparse files)")
    parser.add_argument("--publish", action="store_true", help="write the results into docs/benchmarks.md")
    args = parser.parse_args()
    big = int(args.big_gib * 1024**3)
    with tempfile.TemporaryDirectory(prefix="bench-check-", dir=args.dir) as tmp:
        small_root, big_root = make_tree(Path(tmp), big)
        big_file = big_root / "fastapi" / "fastapi.log"
        on_disk = os.stat(big_file).st_blocks * 512
        results: dict[str, dict[str, list[float]]] = {"audit()": {"small": [], "big": []},
                                                      "logcheck --json": {"small": [], "big": []}}
        for i in range(args.rounds):
            order = (("small", small_root), ("big", big_root)) if i % 2 == 0 else (("big", big_root),
                                                                                   ("small", small_root))
            for name, root in order:
                results["audit()"][name].append(time_audit(root))
                results["logcheck --json"][name].append(time_command(root))
    rows = []
    ok = True
    for what, times in results.items():
        small, large = statistics.median(times["small"]), statistics.median(times["big"])
        ratio = large / small
        ok &= ratio <= 1.5
        if what == "logcheck --json":
            ok &= large < 1.0
        rows.append(f"| {what} | {small * 1000:.1f} ms | {large * 1000:.1f} ms | {ratio:.2f}x |")
    size_gib = big / 1024**3
    body = "\n".join([
        f"10 MB log vs {size_gib:.0f} GiB sparse log ({on_disk / 1e6:.0f} MB on disk) ending with the same 10 MB; "
        f"medians of {args.rounds} interleaved rounds.",
        "",
        "| measured | 10 MB | 10 GiB | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Targets: ratio <= 1.5, the 10 GiB command under 1 s: {'met' if ok else 'NOT met'}.",
    ])
    print(body)
    if args.publish:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import publish

        publish("check", body)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
