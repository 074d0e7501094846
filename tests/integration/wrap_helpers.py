"""Helpers for the logwrap integration tests: run logwrap as a real process, poll files with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from support.records import read_records

WRAP = [sys.executable, "-m", "mlops_logging.wrap"]
PY = sys.executable


def wrap_cmd(log_dir: Path, *args: str, command: Sequence[str]) -> list[str]:
    """``python -m mlops_logging.wrap --log-dir DIR ARGS -- COMMAND``."""
    return [*WRAP, "--log-dir", str(log_dir), *args, "--", *command]


def run_wrap(
    log_dir: Path, *args: str, command: Sequence[str], timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run logwrap to completion, capturing its stdout and stderr (passthrough) unless told otherwise."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(wrap_cmd(log_dir, *args, command=command), timeout=timeout, check=False, **kw)


def start_wrap(log_dir: Path, *args: str, command: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
    """Start logwrap in the background."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(wrap_cmd(log_dir, *args, command=command), **kw)


def script(tmp_path: Path, name: str, source: str) -> list[str]:
    """Write a small Python program and return the command that runs it."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return [PY, str(path)]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` every 10 ms until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def file_has(path: Path, needle: bytes) -> bool:
    """True when ``path`` exists and contains ``needle``."""
    try:
        return needle in path.read_bytes()
    except FileNotFoundError:
        return False


def child_records(path: Path) -> list[dict[str, Any]]:
    """The records of ``path`` (schema-checked) that came from the child, not from logwrap itself."""
    return [r for r in read_records(path) if r.get("logger") != "logwrap"]


def wrapper_records(path: Path) -> list[dict[str, Any]]:
    """The records logwrap wrote about itself (startup, exit, losses...)."""
    return [r for r in read_records(path) if r.get("logger") == "logwrap"]


def reassemble(records: Sequence[dict[str, Any]]) -> list[str]:
    """Join each record marked partial with the records that continue it: the original lines."""
    lines: list[str] = []
    current: list[str] = []
    for record in records:
        current.append(record["message"])
        if not record.get("partial"):
            lines.append("".join(current))
            current = []
    if current:
        lines.append("".join(current))
    return lines


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer exists at all (not even as a zombie)."""
    return not os.path.exists(f"/proc/{pid}")
