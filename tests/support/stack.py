"""A compose project run the way a user runs it, under the real container engine (``scripts/engine.py``: Docker when
a daemon answers, else Podman), from a copy of the repository's shipped files.

The copy lives in a directory every host user may enter, so ``logs/`` there is the copy's own (a developer's
``logs/`` is never touched) and a user who is not root can be shown reading it, as the PRD's check does. The compose
files, Dockerfiles and entrypoints are used unchanged: ``../logs/<service>`` in them resolves inside the copy.
Every assertion reads the files the containers wrote on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine import Engine, Project
from mlops_logging.testing import read_records

REPO = Path(__file__).resolve().parents[2]
#: What the images and compose files need (the build context is the repository root, as .dockerignore says).
SHIPPED = ("docker", "deployment", "entrypoints", "examples", "src", "pyproject.toml", "setup.py", "README.md",
           ".dockerignore")
NOBODY = 65534


def copy_repository(prefix: str) -> Path:
    """The shipped files in a new directory under /tmp that every user may enter (0755), without build leftovers."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "standins")
    for name in SHIPPED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    return root


class Stack(Project):
    """A compose project of ``files`` (names in the copy's docker/) run from the copy at ``root``."""

    def __init__(self, engine: Engine, root: Path, files: Sequence[str], name: str,
                 env: Mapping[str, str] | None = None) -> None:
        super().__init__(engine, [root / "docker" / f for f in files], name, env, transcript=root / "compose.log")
        self.root = root

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log_file(self, service: str) -> Path:
        return self.logs / service / f"{service}.log"

    def pid1(self, service: str) -> list[str]:
        """The command line of PID 1 in the service's container."""
        done = self.engine.run("exec", self.container(service), "cat", "/proc/1/cmdline")
        return done.stdout.rstrip("\0").split("\0")

    def records(self, service: str) -> list[dict[str, Any]]:
        """Every record of the service's log file on the host, each checked against the schema."""
        return read_records(self.log_file(service))

    def count(self, service: str, text: str) -> int:
        """How many of the service's records contain ``text`` (0 while there is no file)."""
        path = self.log_file(service)
        return sum(text in r["message"] for r in read_records(path)) if path.exists() else 0

    def messages(self, service: str) -> list[str]:
        return [r["message"] for r in self.records(service)]

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> float:
        """As :meth:`Project.wait_until`, failing the test with the compose transcript and the containers."""
        try:
            return super().wait_until(what, condition, timeout)
        except RuntimeError as exc:
            ps = self.engine.run("ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
                                 check=False).stdout
            tail = self.transcript.read_text()[-3000:] if self.transcript and self.transcript.exists() else ""
            raise AssertionError(f"{exc}\n--- compose (tail) ---\n{tail}\n--- containers ---\n{ps}") from None


def as_nobody(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``argv`` run as a host user who is not root (uid/gid 65534, no other groups), as the PRD's check runs."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})
