"""Write a benchmark's results into its own section of docs/benchmarks.md (between its markers)."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    """One line naming the machine and the moment."""
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def _portable(argv: list[str]) -> list[str]:
    """The command line with each ``--compare LABEL=PYTHON`` interpreter relative to the repo, so the published
    command runs from any checkout (``before-8=../before-8/.venv/bin/python``), not only on the machine that ran it."""
    out = []
    for previous, arg in zip(["", *argv], argv, strict=False):
        prefix = "--compare=" if arg.startswith("--compare=") else "" if previous == "--compare" else None
        label, sep, python = arg.removeprefix(prefix or "").partition("=")
        if prefix is not None and sep and os.path.isabs(python):
            arg = f"{prefix}{label}={os.path.relpath(python, DOC.parent.parent)}"
        out.append(arg)
    return out


def publish(section: str, body: str) -> None:
    """Replace the text between ``<!-- bench:SECTION -->`` and ``<!-- /bench:SECTION -->`` with ``body``."""
    argv = _portable([os.path.relpath(sys.argv[0], DOC.parent.parent), *sys.argv[1:]])
    command = "python " + " ".join(shlex.quote(a) for a in argv)
    block = f"<!-- bench:{section} -->\nCommand: `{command}` ({machine()})\n\n{body.strip()}\n<!-- /bench:{section} -->"
    text = DOC.read_text()
    pattern = re.compile(rf"<!-- bench:{section} -->.*?<!-- /bench:{section} -->", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def installs(values: list[str]) -> list[tuple[str, str]]:
    """``--compare LABEL=PYTHON`` values: other installs of the package (say, older revisions in their own
    checkouts and venvs) whose contenders run in the same rounds as this one's, against the same baselines."""
    out = []
    for value in values:
        label, eq, python = value.partition("=")
        if not (eq and label and Path(python).exists()):
            raise SystemExit(f"--compare {value!r}: use LABEL=PATH_TO_PYTHON (an interpreter that exists)")
        out.append((label, python))
    return out


def revision(python: str) -> str:
    """The commit of the checkout an interpreter's venv lives in (``<checkout>/.venv/bin/python``)."""
    import subprocess

    checkout = Path(python).absolute().parent.parent.parent
    done = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return done.stdout.strip()[:80] if done.returncode == 0 else "(not a git checkout)"


def source_dir(python: str) -> Path:
    """The ``src`` of the checkout an interpreter's venv lives in."""
    return Path(python).absolute().parent.parent.parent / "src"


def comparison(labels: list[str], rows: dict[str, dict[str, float]], what: str) -> str:
    """A Markdown table of one ratio per contender (``rows[contender][label]``) for every install, this one last
    (label ``now``), with ``now / other`` columns."""
    others = [label for label in labels if label != "now"]
    head = ["contender", *(f"{what}: {label}" for label in labels), *(f"now / {label}" for label in others)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for contender, values in rows.items():
        cells = [f"{values[label]:.3f}" for label in labels]
        cells += [f"{values['now'] / values[label]:.3f}" for label in others]
        lines.append(f"| {contender} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compared_installs(pairs: list[tuple[str, str]]) -> str:
    """The paragraph naming every install of a comparison."""
    import sys

    named = [("now", sys.executable), *pairs]
    return ("Installs in this run (`--compare`), each contender of each install in every round: " +
            "; ".join(f"`{label}` = {revision(python)}" for label, python in named) + ".")
