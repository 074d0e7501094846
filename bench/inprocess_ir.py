"""Instructions a record costs in-process, counted with valgrind: deterministic, so two revisions (and the baselines
of ``bench/inprocess.py``) can be compared on a noisy machine where lines/s cannot tell 2% apart.

    python bench/inprocess_ir.py [--records 2000] [--python OTHER_PYTHON ...] [--case NAME ...] [--annotate DIR]

Runs each case of ``bench/inprocess.py`` (the same code: the baselines (a) and (c), ours through a structlog and a
stdlib logger, file only and file + stdout) N and 3N times under ``valgrind --tool=callgrind``; the difference of the
totals divided by 2N is the count per record (imports and set-up cancel out). The file + stdout cases write stdout
to ``/dev/null``. Uses only the public API, so any revision's install can run it. ``--annotate DIR``: keep the 3N
run's callgrind output of each case in ``DIR`` (for ``callgrind_annotate --inclusive=yes``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inprocess import CASES, COMMON, LABELS  # noqa: E402  (a sibling module)

TAIL = "\nrun()\n"


def instructions(python: str, case: str, records: int, out: str = "/dev/null") -> int:
    """Total instructions (callgrind's ``Collected``) of one run of ``case`` writing ``records`` records."""
    code = textwrap.dedent(COMMON) + textwrap.dedent(CASES[case]) + TAIL
    # A fixed hash seed: with a random one, dict and set layouts (and so the count) vary by a few thousand per run.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "wb") as devnull:
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", code,
                               str(records), tmp], stdout=devnull, stderr=subprocess.PIPE, text=True, check=True,
                              env=env)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def per_record(python: str, case: str, records: int, annotate: str | None) -> float:
    out = os.path.join(annotate, f"{case}.{Path(python).parent.parent.parent.name}.cg") if annotate else "/dev/null"
    return (instructions(python, case, 3 * records, out) - instructions(python, case, records)) / (2 * records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--python", action="append", default=[], help="another install's interpreter to count too")
    parser.add_argument("--case", action="append", default=[], choices=list(CASES), help="only these cases")
    parser.add_argument("--annotate", metavar="DIR", help="keep the callgrind output of the 3N runs here")
    args = parser.parse_args()
    if args.annotate:
        os.makedirs(args.annotate, exist_ok=True)
    cases = args.case or list(CASES)
    pythons = [sys.executable, *args.python]
    print("| case | " + " | ".join(f"`{p}`" for p in pythons) + " |\n|---|" + "---:|" * len(pythons))
    for case in cases:
        counts = [per_record(p, case, args.records, args.annotate) for p in pythons]
        print(f"| {LABELS[case]} | " + " | ".join(f"{c:,.0f}" for c in counts) + " |", flush=True)


if __name__ == "__main__":
    main()
