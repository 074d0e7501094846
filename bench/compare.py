"""Run one benchmark under several installs of the package (other revisions) and compare their ratios.

    python bench/compare.py --python before=/path/to/old/.venv/bin/python --python now=.venv/bin/python wrap

Each install runs this checkout's ``bench/<name>.py --no-publish`` (so the workload is the same) and reports the
ratios that benchmark computes against its own baseline, measured in the same run; this script only puts them side
by side. Installs run one after the other, in the order given; the last one is compared with each earlier one.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _table(body: str) -> dict[str, list[str]]:
    """The rows of the Markdown table in ``body``: first cell -> the other cells."""
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1 and not set(cells[1]) <= set("-: "):
            rows[cells[0]] = cells[1:]
    return rows


def _number(cell: str) -> float:
    match = re.search(r"-?[0-9][0-9,]*\.?[0-9]*", cell)
    if match is None:
        raise ValueError(f"no number in {cell!r}")
    return float(match.group().replace(",", ""))


def inprocess(body: str) -> dict[str, float]:
    rows = _table(body)
    out = {}
    for label, cells in rows.items():
        if label.startswith("ours"):
            out[f"{label}: vs (a)"] = _number(cells[1])
            out[f"{label}: vs (c)"] = _number(cells[2])
    return out


def wrap(body: str) -> dict[str, float]:
    out = {f"{label}: vs tee": _number(cells[3]) for label, cells in _table(body).items()
           if label.startswith("logwrap")}
    match = re.search(r"p99 ([0-9.]+) ms", body)
    if match:
        out["latency p99 ms (absolute)"] = float(match.group(1))
    return out


def web(body: str) -> dict[str, float]:
    out = {f"{label}: vs (1)": _number(cells[2]) for label, cells in _table(body).items() if label[:4] != "(1) "}
    for name in ("(4) / (1)", "(4) / (3)"):
        match = re.search(re.escape(name) + r" = \*\*([0-9.]+)x\*\*", body)
        if match:
            out[f"median of per-round ratios {name}"] = float(match.group(1))
    return out


EXTRACT: dict[str, Callable[[str], dict[str, float]]] = {"inprocess": inprocess, "wrap": wrap, "web": web}


def revision(python: str) -> str:
    """``git describe`` of the checkout an interpreter's venv belongs to (``<repo>/.venv/bin/python``)."""
    repo = Path(python).absolute().parent.parent.parent
    done = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return done.stdout.strip()[:72] if done.returncode == 0 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, metavar="LABEL=PATH",
                        help="an interpreter with the package installed; give two or more, oldest first")
    parser.add_argument("--publish", action="store_true", help="write the comparison into docs/benchmarks.md")
    parser.add_argument("bench", choices=sorted(EXTRACT))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark (after --)")
    opts = parser.parse_args()
    installs = [tuple(p.split("=", 1)) for p in opts.python]
    extra = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    results: dict[str, dict[str, float]] = {}
    for label, python in installs:
        print(f"== {label}: {python} ({revision(python)})", file=sys.stderr, flush=True)
        done = subprocess.run([python, str(HERE / f"{opts.bench}.py"), "--no-publish", *extra], stdout=subprocess.PIPE,
                              text=True, check=True)
        results[label] = EXTRACT[opts.bench](done.stdout)
    labels = [label for label, _ in installs]
    last = labels[-1]
    head = ["metric", *labels, *(f"{last} / {label}" for label in labels[:-1])]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for metric in results[last]:
        values = [results[label].get(metric) for label in labels]
        cells = [f"{v:g}" if v is not None else "n/a" for v in values]
        now = values[-1]
        cells += [f"{now / v:.3f}" if v and now is not None else "n/a" for v in values[:-1]]
        rows.append(f"| {metric} | " + " | ".join(cells) + " |")
    body = ("Installs compared (each ran this checkout's benchmark, one after the other):\n\n"
            + "\n".join(f"- `{label}`: {revision(python)}" for label, python in installs)
            + "\n\n" + "\n".join(rows))
    print(body)
    if opts.publish:
        sys.path.insert(0, str(HERE))
        from _report import publish

        publish(f"compare-{opts.bench}", body)


if __name__ == "__main__":
    main()
