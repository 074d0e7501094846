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


def publish(section: str, body: str) -> None:
    """Replace the text between ``<!-- bench:SECTION -->`` and ``<!-- /bench:SECTION -->`` with ``body``."""
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], DOC.parent.parent), *sys.argv[1:]])
    block = f"<!-- bench:{section} -->\nCommand: `{command}` ({machine()})\n\n{body.strip()}\n<!-- /bench:{section} -->"
    text = DOC.read_text()
    pattern = re.compile(rf"<!-- bench:{section} -->.*?<!-- /bench:{section} -->", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
