"""An entrypoint run the way ``docker run -v HOST_DIR:/logs IMAGE ARGS`` runs it, without a Docker engine.

The command is PID 1 of a new PID namespace (with its own /proc) and a new mount namespace in which ``HOST_DIR`` is
bind-mounted at ``/logs``: ``unshare --fork --pid --mount-proc --mount``, then ``mount --bind``, then ``exec``. The
mounts are private to the namespace (unshare's default propagation), so the host sees only ``HOST_DIR`` being
written. A bind mount needs a mount point: ``/logs`` is created on the host when it is missing (an empty directory,
left in place; nothing is ever written to it outside a namespace). Needs root (CAP_SYS_ADMIN); the caller skips
otherwise (:func:`skip_unless_root`).

When PID 1 of a PID namespace exits, the kernel kills every process left in it, so "nothing left behind" is checked
on what PID 1 did before it exited (its records) and on the namespace being empty afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

MOUNT_POINT = Path("/logs")
TAG = "CONTAINER_TEST_TAG"  #: environment variable that marks the processes of one host run
#: PID 1 of the namespace: bind the host directory ($0) at /logs, then become the entrypoint (exec keeps PID 1).
_INIT = 'mount --bind "$0" /logs && exec "$@"'


def skip_unless_root() -> None:
    """Skip the calling test, saying why, when namespaces and bind mounts cannot be made here."""
    if os.geteuid() != 0:
        pytest.skip(f"a container-like run (unshare --pid --mount, mount --bind at /logs) needs root; "
                    f"running as uid {os.geteuid()}")


def namespace_members(ns: str) -> list[int]:
    """Host PIDs of the processes whose PID namespace is ``ns`` (as ``readlink /proc/PID/ns/pid`` says)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    members.append(int(entry))
            except OSError:  # gone, or a kernel thread
                continue
    return members


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class Container:
    """``argv`` as PID 1 of new PID and mount namespaces with ``log_dir`` at /logs; output captured to ``console``."""

    def __init__(self, argv: Sequence[str], log_dir: Path, console: Path, env: Mapping[str, str]) -> None:
        MOUNT_POINT.mkdir(exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)  # as Docker creates a missing bind source
        self.log_dir = log_dir
        self.console = console
        with console.open("ab") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--fork", "--pid", "--mount-proc", "--mount", "--", "sh", "-c", _INIT, str(log_dir),
                 *argv],
                env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid1 = self._find_pid1()
        self.ns = os.readlink(f"/proc/{self.pid1}/ns/pid")

    def _find_pid1(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = _children(self.proc.pid)
            if children:
                return children[0]
            if self.proc.poll() is not None:
                raise AssertionError(f"unshare exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.01)
        self.proc.kill()
        raise AssertionError(f"unshare started no child within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """What the container printed (passthrough: what `docker logs` would show)."""
        return self.console.read_text(errors="replace")

    def members(self) -> list[int]:
        """Host PIDs of every process in the container's PID namespace (empty once it is gone)."""
        return namespace_members(self.ns)

    def running(self) -> bool:
        """PID 1 (and so the container) is still alive."""
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        """``docker stop``: ``sig`` to PID 1, wait; SIGKILL after ``timeout`` (and fail). The container's exit status."""
        if self.running():
            os.kill(self.pid1, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"PID 1 ignored {signal.Signals(sig).name} for {timeout}s:\n"
                                     f"{self.output()[-3000:]}") from None
        return self.exit_status()

    def exit_status(self) -> int:
        """As a shell reports it: the code, or 128+N after signal N (unshare re-raises PID 1's signal on itself)."""
        code = self.proc.wait()
        return 128 - code if code < 0 else code

    def kill(self) -> None:
        """Clean-up: SIGKILL PID 1, and the kernel kills the rest of the namespace."""
        if self.running():
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class HostProcess:
    """The same entrypoint run on the host (as the demo runs it): ``MLOPS_LOG_DIR=log_dir``, in its own session.

    Its processes are told apart by a tag in their environment (inherited by every descendant, also by those that
    start sessions of their own or outlive it), so "nothing left behind" can be checked after it exited.
    """

    def __init__(self, argv: Sequence[str], log_dir: Path, console: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.console = console
        self.tag = f"{TAG}={uuid.uuid4().hex}".encode()
        with console.open("ab") as out:
            self.proc = subprocess.Popen(list(argv), env={**env, "MLOPS_LOG_DIR": str(log_dir),
                                                          TAG: self.tag.split(b"=", 1)[1].decode()},
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.pid1 = self.proc.pid

    output = Container.output
    running = Container.running
    exit_status = Container.exit_status

    def members(self) -> list[int]:
        """Host PIDs of the processes it started that are still running."""
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    environ = Path(f"/proc/{entry}/environ").read_bytes()
                except OSError:
                    continue
                if self.tag in environ.split(b"\0"):
                    members.append(int(entry))
        return members

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        """``sig`` to the entrypoint's process (logwrap, after the exec), wait; the exit status."""
        if self.running():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.proc.args[0]} ignored {signal.Signals(sig).name} for {timeout}s:\n"
                                     f"{self.output()[-3000:]}") from None
        return self.exit_status()

    def kill(self) -> None:
        """Clean-up: SIGKILL every process it started."""
        for pid in [self.proc.pid, *self.members()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def start(argv: Sequence[str], log_dir: Path, console: Path, env: Mapping[str, str], *,
          contained: bool) -> Container | HostProcess:
    """``argv`` as a container's PID 1 with ``log_dir`` at /logs (``contained``), else on the host logging there."""
    return (Container if contained else HostProcess)(argv, log_dir, console, env)
