"""Helpers for the logwrap integration tests: run logwrap as a real process, poll files with a deadline.

Every process a test starts is stopped when the test ends, also when an assertion fails half-way: :func:`supervised`
starts it in a process group of its own and, on leaving the block, SIGKILLs it, every descendant it has (found
through ``/proc``, so a child in another session under ``--signal-group`` is reached too) and their process groups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from mlops_logging.testing import read_records

WRAP = [sys.executable, "-m", "mlops_logging.wrap"]
PY = sys.executable


def wrap_cmd(log_dir: Path, *args: str, command: Sequence[str]) -> list[str]:
    """``python -m mlops_logging.wrap --log-dir DIR ARGS -- COMMAND``."""
    return [*WRAP, "--log-dir", str(log_dir), *args, "--", *command]


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``, all its descendants and their process groups (never the test's own group); reap ``proc``."""
    found: list[psutil.Process] = []
    try:
        root = psutil.Process(proc.pid)
        found = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    groups = {proc.pid}
    for member in found:
        try:
            groups.add(os.getpgid(member.pid))
        except OSError:
            pass
    groups.discard(os.getpgrp())
    for member in found:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs(found, timeout=5)


@contextmanager
def supervised(argv: Sequence[str], **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``Popen(argv)`` in a new process group, stopped with everything it started when the block ends."""
    kw.setdefault("process_group", 0)
    with subprocess.Popen(list(argv), **kw) as proc:
        try:
            yield proc
        finally:
            stop_tree(proc)


def run(argv: Sequence[str], *, timeout: float = 60, input: bytes | None = None,
        **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion (stdout and stderr captured unless told otherwise); on timeout, fail with the
    output so far after stopping the whole process tree."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    if input is not None:
        kw["stdin"] = subprocess.PIPE
    else:
        kw.setdefault("stdin", subprocess.DEVNULL)
    with supervised(argv, **kw) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(argv)} still running after {timeout}s (killed); output so far: "
                                 f"{exc.output!r} {exc.stderr!r}") from None
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def run_wrap(
    log_dir: Path, *args: str, command: Sequence[str], timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run logwrap to completion, capturing its stdout and stderr (passthrough) unless told otherwise."""
    return run(wrap_cmd(log_dir, *args, command=command), timeout=timeout, **kw)


@contextmanager
def start_wrap(log_dir: Path, *args: str, command: Sequence[str], **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Start logwrap in the background for the block; it and everything it started are stopped at the end."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    with supervised(wrap_cmd(log_dir, *args, command=command), **kw) as proc:
        yield proc


def script(tmp_path: Path, name: str, source: str) -> list[str]:
    """Write a small Python program and return the command that runs it."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return [PY, str(path)]


def exit_description(code: int | None) -> str:
    """``exited with 3`` / ``died of SIGALRM`` for a Popen returncode."""
    if code is not None and code < 0:
        return f"died of {signal.Signals(-code).name}"
    return f"exited with {code}"


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition",
             proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``predicate`` every 10 ms until it returns something truthy; fail after ``timeout`` seconds, or at once
    when ``proc`` (the logwrap under test) exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = predicate()
            if value:
                return value
            raise AssertionError(f"logwrap {exit_description(proc.returncode)} while waiting for {what}")
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


def proc_state(pid: int) -> str | None:
    """The one-letter state in ``/proc/<pid>/stat`` (R, S, T, Z...), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    state = proc_state(pid)
    return state is not None and state != "Z"


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer exists at all (not even as a zombie)."""
    return not os.path.exists(f"/proc/{pid}")
