"""logwrap's start-up: ``logwrap -- /bin/true`` from exec to exit, against a bare interpreter in the same rounds.

Contenders (each a fresh process, run by hyperfine ``-N``: no shell in between):

- baseline ``python -I -S -c pass`` (the venv's interpreter, no site, no user paths);
- ``python -c pass`` and ``python -c 'import orjson'`` for reference: what any console script pays before it runs a
  line of ours (site and the venv's ``.pth`` files), then with the one core dependency logwrap cannot start without;
- ``logwrap -- /bin/true`` (the venv's console script, as a user and a container ENTRYPOINT run it), in json and in
  text format, and ``python -m mlops_logging.wrap -- /bin/true``; the log file goes to a fresh temporary directory
  (``MLOPS_LOG_ROOT``).

Rounds are interleaved: each round is one hyperfine run of every contender (``--runs`` runs each, after warm-ups),
the order rotating; a contender's figure is its median over the round, and the ratio to the baseline is the median of
the per-round ratios. Byte-code caches are written before the first round (``PYTHONDONTWRITEBYTECODE`` is dropped
from the contenders' environment): an installed package has them, a start that compiles sources measures the compiler.

``--instructions`` also counts each contender's instructions with callgrind (valgrind): deterministic, so a change
can be judged on a machine that is busy. The import breakdown is ``python -X importtime`` of a real run of the
console script (``--importtime-runs`` runs, the median of each module's times).

Usage: ``python bench/startup.py [--rounds R] [--runs N] [--instructions] [--compare LABEL=PYTHON] [--publish]``.
``--compare`` runs another install's ``logwrap`` (the one next to its python) and ``python -m mlops_logging.wrap``
in the same rounds, against the same baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import compared_installs, comparison, installs, publish  # noqa: E402

HYPERFINE = shutil.which("hyperfine") or "/usr/bin/hyperfine"
TARGET = 3.0  #: logwrap -- /bin/true within 3x of python -I -S -c pass


def contenders(python: str, label: str) -> list[tuple[str, list[str]]]:
    """(name, argv) of the logwrap contenders of the install whose interpreter is ``python``."""
    logwrap = str(Path(python).parent / "logwrap")
    suffix = "" if label == "now" else f" [{label}]"
    rows = [(f"logwrap -- /bin/true{suffix}", [logwrap, "--", "/bin/true"]),
            (f"python -m mlops_logging.wrap -- /bin/true{suffix}",
             [python, "-m", "mlops_logging.wrap", "--", "/bin/true"])]
    if label == "now":
        rows.insert(1, ("logwrap --format text -- /bin/true", [logwrap, "--format", "text", "--", "/bin/true"]))
    return rows


def environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["MLOPS_LOG_ROOT"] = str(root)
    return env


def hyperfine_round(commands: list[tuple[str, list[str]]], runs: int, warmup: int, env: dict[str, str],
                    work: Path) -> dict[str, tuple[float, float]]:
    """One hyperfine run of every command: name -> (median s, min s)."""
    out = work / "round.json"
    argv = [HYPERFINE, "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs), "--export-json", str(out)]
    for name, cmd in commands:
        argv += ["-n", name, subprocess.list2cmdline(cmd)]
    subprocess.run(argv, check=True, env=env, cwd=work, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return {r["command"]: (r["median"], r["min"]) for r in results}


def instructions(cmd: list[str], env: dict[str, str], work: Path) -> int | None:
    """Instructions the process executes (callgrind's Ir; its children are not followed), None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    done = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd], env=env, cwd=work,
                          capture_output=True, text=True)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def importtime(python: str, runs: int, env: dict[str, str], work: Path) -> tuple[list[tuple[str, int, float, float]],
                                                                                  float]:
    """``-X importtime`` of a real run of the console script: [(module, depth, self µs, cumulative µs)] in import
    order (medians over ``runs``) and the median total (the sum of every top-level import's cumulative time)."""
    logwrap = str(Path(python).parent / "logwrap")
    samples: dict[tuple[str, int], list[tuple[int, int]]] = {}
    order: list[tuple[str, int]] = []
    totals = []
    for _ in range(runs):
        done = subprocess.run([python, "-X", "importtime", logwrap, "--", "/bin/true"], env=env, cwd=work,
                              capture_output=True, text=True)
        total = 0
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cumulative, name = line.removeprefix("import time:").split("|")
            depth = (len(name) - len(name.lstrip())) // 2
            key = (name.strip(), depth)
            if key not in samples:
                samples[key] = []
                order.append(key)
            samples[key].append((int(own), int(cumulative)))
            if depth == 0:
                total += int(cumulative)
        totals.append(total)
    rows = [(name, depth, statistics.median(s for s, _ in samples[(name, depth)]),
             statistics.median(c for _, c in samples[(name, depth)])) for name, depth in order]
    return rows, statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved hyperfine rounds (order rotating)")
    parser.add_argument("--runs", type=int, default=20, help="runs of each contender per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--importtime-runs", type=int, default=11)
    parser.add_argument("--top", type=int, default=25, help="modules shown in the import breakdown")
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    parser.add_argument("--publish", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=PYTHON",
                        help="also run another install's logwrap (next to its python) in the same rounds")
    args = parser.parse_args()
    others = installs(args.compare)
    python = sys.executable
    baseline = ("python -I -S -c pass (baseline)", [python, "-I", "-S", "-c", "pass"])
    references = [("python -c pass (site)", [python, "-c", "pass"]),
                  ("python -c 'import orjson'", [python, "-c", "import orjson"])]
    ours = contenders(python, "now")
    compared = [row for label, other in others for row in contenders(other, label)]
    commands = [baseline, *references, *ours, *compared]

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        env = environment(work / "logs")
        for _, cmd in commands:  # byte-code caches written (and every command proven to run) before timing
            subprocess.run(cmd, env=env, cwd=work, check=True, stdout=subprocess.DEVNULL)
        rounds: list[dict[str, tuple[float, float]]] = []
        for r in range(args.rounds):
            shift = r % len(commands)
            rotated = commands[shift:] + commands[:shift]
            rounds.append(hyperfine_round(rotated, args.runs, args.warmup, env, work))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        counts = {name: instructions(cmd, env, work) for name, cmd in commands} if args.instructions else {}
        breakdown, import_total = importtime(python, args.importtime_runs, env, work)

    base = baseline[0]
    ratio = {name: statistics.median(rnd[name][0] / rnd[base][0] for rnd in rounds) for name, _ in commands}
    median_ms = {name: statistics.median(rnd[name][0] for rnd in rounds) * 1e3 for name, _ in commands}
    best_ms = {name: min(rnd[name][1] for rnd in rounds) * 1e3 for name, _ in commands}
    head = "| contender | median ms | min ms | vs baseline (median of rounds) |"
    rows = [head + (" instructions (M) | vs baseline |" if counts else ""),
            "|---|---:|---:|---:|" + ("---:|---:|" if counts else "")]
    for name, _ in commands:
        verdict = ""
        if name == ours[0][0]:
            verdict = f" (target ≤ {TARGET:.0f}×: {'met' if ratio[name] <= TARGET else '**missed**'})"
        cells = f"| {name} | {median_ms[name]:.1f} | {best_ms[name]:.1f} | {ratio[name]:.2f}×{verdict} |"
        if counts:
            n, b = counts.get(name), counts.get(base)
            cells += f" {n / 1e6:.1f} | {n / b:.2f}× |" if n and b else " - | - |"
        rows.append(cells)

    shown = sorted(breakdown, key=lambda row: -row[3])[: args.top]
    imports = ["| module (depth) | self µs | cumulative µs |", "|---|---:|---:|"]
    imports += [f"| {'· ' * depth}{name} | {own:,.0f} | {cumulative:,.0f} |" for name, depth, own, cumulative in shown]

    body = "\n".join([
        f"Start to exit of a process, hyperfine -N, {args.rounds} interleaved rounds of {args.runs} runs each "
        f"(+{args.warmup} warm-ups), byte-code caches present; log files in a fresh directory. Ratio: median over the "
        "rounds of (contender's median / baseline's median) in that round."
        + (" Instructions: callgrind, the process alone (not /bin/true)." if counts else ""),
        "",
        *rows,
        "",
        f"Where the time goes: `python -X importtime` of `logwrap -- /bin/true` (median of {args.importtime_runs} "
        f"runs; all imports together {import_total / 1e3:.1f} ms), the {args.top} largest by cumulative time:",
        "",
        *imports,
    ])
    if others:
        labels = [label for label, _ in others] + ["now"]
        table = {name: {**{label: ratio[f"{name} [{label}]"] for label, _ in others}, "now": ratio[name]}
                 for name, _ in ours if f"{name} [{labels[0]}]" in ratio}
        body += ("\n\nEvery install (ratio to the baseline; lower is better):\n\n"
                 + comparison(labels, table, "vs baseline"))
        body += "\n\n" + compared_installs(others)
    print(body)
    if args.publish:
        publish("startup", body)


if __name__ == "__main__":
    main()
