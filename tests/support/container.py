"""An entrypoint run the way ``docker run -v HOST_DIR:/logs IMAGE ARGS`` runs it, without a Docker engine.

The command is PID 1 of a new PID namespace (with its own /proc) and a new mount namespace in which ``HOST_DIR`` is
bind-mounted at ``/logs``: ``unshare --fork --pid --mount-proc --mount``, then ``mount --bind``, then ``exec``. The
mounts are private to the namespace (unshare's default propagation), so the host sees only ``HOST_DIR`` being
written. A bind mount needs a mount point: ``/logs`` is created on the host when it is missing (an empty directory,
left in place; nothing is ever written to it outside a namespace). Needs root (CAP_SYS_ADMIN).

When PID 1 of a PID namespace exits, the kernel kills every process left in it, so "nothing left behind" is checked
on what PID 1 did before it exited (its records) and on the namespace being empty afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_logging.testing import read_records

MOUNT_POINT = Path("/logs")
TAG = "CONTAINER_TEST_TAG"  #: environment variable that marks the processes of one host run
#: PID 1 of the namespace: bind the host directory ($0) at /logs, then become the entrypoint (exec keeps PID 1).
_INIT = 'mount --bind "$0" /logs && exec "$@"'


def can_contain() -> bool:
    """Namespaces and bind mounts can be made here (root); otherwise the second run is on the host too."""
    return os.geteuid() == 0


def not_contained_reason() -> str:
    """Why a container-like check is skipped."""
    return (f"a container-like run (unshare --pid --mount, mount --bind at /logs) needs root; "
            f"running as uid {os.geteuid()}")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


class _Server:
    """What the tests do with a started entrypoint, contained or not."""

    proc: subprocess.Popen[bytes]
    console: Path
    pid1: int

    def output(self) -> str:
        """What it printed (passthrough: what `docker logs` would show)."""
        return self.console.read_text(errors="replace")

    def running(self) -> bool:
        """Its first process (PID 1 of the container) is still alive."""
        return self.proc.poll() is None

    def members(self) -> list[int]:
        """Host PIDs of its processes still running (empty once everything exited)."""
        raise NotImplementedError

    def kill(self) -> None:
        """Clean-up: SIGKILL everything it started."""
        raise NotImplementedError

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        """``docker stop``: ``sig`` to PID 1, wait; SIGKILL everything after ``timeout`` (and fail). Its exit status."""
        if self.running():
            os.kill(self.pid1, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"PID {self.pid1} ignored {signal.Signals(sig).name} for {timeout}s:\n"
                                     f"{self.output()[-3000:]}") from None
        return self.exit_status()

    def exit_status(self) -> int:
        """As a shell reports it: the code, or 128+N after signal N (unshare re-raises PID 1's signal on itself)."""
        code = self.proc.wait()
        return 128 - code if code < 0 else code


class Container(_Server):
    """``argv`` as PID 1 of new PID and mount namespaces with ``log_dir`` at /logs; output captured to ``console``."""

    def __init__(self, argv: Sequence[str], log_dir: Path, console: Path, env: Mapping[str, str]) -> None:
        MOUNT_POINT.mkdir(exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)  # as Docker creates a missing bind source
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

    def members(self) -> list[int]:
        """Host PIDs of every process in the container's PID namespace (as ``readlink /proc/PID/ns/pid`` says)."""
        members = []
        for pid in _pids():
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") == self.ns:
                    members.append(pid)
            except OSError:  # gone, or a kernel thread
                continue
        return members

    def kill(self) -> None:
        """SIGKILL PID 1: the kernel kills the rest of the namespace."""
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


class HostProcess(_Server):
    """The same entrypoint run on the host (as the demo runs it): ``MLOPS_LOG_DIR=log_dir``, in its own session.

    Its processes are told apart by a tag in their environment (inherited by every descendant, also by those that
    start sessions of their own or outlive it), so "nothing left behind" can be checked after it exited.
    """

    def __init__(self, argv: Sequence[str], log_dir: Path, console: Path, env: Mapping[str, str]) -> None:
        self.console = console
        tag = uuid.uuid4().hex
        self.tag = f"{TAG}={tag}".encode()
        with console.open("ab") as out:
            self.proc = subprocess.Popen(list(argv), env={**env, "MLOPS_LOG_DIR": str(log_dir), TAG: tag},
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.pid1 = self.proc.pid

    def members(self) -> list[int]:
        """Host PIDs of the running processes that carry its tag."""
        members = []
        for pid in _pids():
            try:
                if self.tag in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    members.append(pid)
            except OSError:
                continue
        return members

    def kill(self) -> None:
        """SIGKILL every process it started."""
        for pid in [self.proc.pid, *self.members()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def start(argv: Sequence[str], log_dir: Path, console: Path, env: Mapping[str, str], *, contained: bool) -> _Server:
    """``argv`` as a container's PID 1 with ``log_dir`` at /logs (``contained``), else on the host logging there."""
    return (Container if contained else HostProcess)(argv, log_dir, console, env)


@dataclass
class Run:
    """One start of a server: how, its records, what it printed, its exit status, its processes around the stop."""

    contained: bool
    exit_status: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""
    processes_at_stop: list[int] = field(default_factory=list)
    processes_after: list[int] = field(default_factory=list)

    def messages(self) -> list[str]:
        return [r["message"] for r in self.records]

    def logwrap(self, key: str) -> dict[str, Any]:
        """logwrap's one record of this run that has ``key`` (``command``: the start, ``exit_code``: the end)."""
        [record] = [r for r in self.records if r.get("logger") == "logwrap" and key in r]
        return record


@dataclass
class Restarted:
    """A server started twice on one log directory: the first run on the host, the second contained when root."""

    log: Path
    first: Run
    second: Run
    first_bytes: bytes  #: the log file after the first run


def start_twice(argvs: tuple[Sequence[str], Sequence[str]], log_dir: Path, base: Path, env: Mapping[str, str],
                service: str, *, ready: Callable[[_Server], None], during_second: Callable[[], None]) -> Restarted:
    """Run ``argvs[0]`` on the host (``log_dir`` may not exist yet), then ``argvs[1]`` container-like when root.

    Each run: ``ready(server)`` (wait until it answers), for the second ``during_second()``, then TERM to PID 1 and
    its exit status. Every process is killed in ``finally``, also when a step fails. The records are split per run
    at logwrap's start records.
    """
    runs = (Run(contained=False), Run(contained=can_contain()))
    first_bytes = b""
    log = log_dir / f"{service}.log"
    for number, (argv, run) in enumerate(zip(argvs, runs, strict=True), 1):
        server = start(argv, log_dir, base / f"run{number}.console", env, contained=run.contained)
        try:
            ready(server)
            if number == 2:
                during_second()
            run.processes_at_stop = server.members()
            run.exit_status = server.stop(signal.SIGTERM)
            run.processes_after = server.members()
        finally:
            server.kill()
            run.output = server.output()
        if number == 1:
            first_bytes = log.read_bytes()
    records = read_records(log)
    starts = [i for i, r in enumerate(records) if r.get("logger") == "logwrap" and "command" in r]
    assert len(starts) == 2, starts
    runs[0].records, runs[1].records = records[:starts[1]], records[starts[1]:]
    return Restarted(log, runs[0], runs[1], first_bytes)


PID1_REAPER = "running as PID 1: reaping orphaned processes"


def assert_pid1_left_nothing(run: Run, at_least: int) -> None:
    """logwrap ran as the container's PID 1, reaped, and the namespace was empty after the stop."""
    begin = run.logwrap("command")
    assert begin["pid"] == 1 and begin["reaper"] == PID1_REAPER, begin
    assert len(run.processes_at_stop) >= at_least, run.processes_at_stop
    assert not [r for r in run.records if r.get("logger") == "logwrap" and r["level"] != "INFO"]  # gave up on none
    assert run.processes_after == []


def assert_appended_without_loss(restarted: Restarted) -> None:
    """The second run appended to the first run's file, which is unchanged; both runs started and ended once."""
    data = restarted.log.read_bytes()
    assert data.startswith(restarted.first_bytes) and len(data) > len(restarted.first_bytes)
    assert restarted.first_bytes.count(b"\n") == len(restarted.first.records)
    for run in (restarted.first, restarted.second):
        run.logwrap("command"), run.logwrap("exit_code")  # exactly one start and one end record each
