"""The child logwrap runs, as the target of its signals: forwarded to it (or to its process group with
``--signal-group``), KILL ``--kill-after`` seconds after the first TERM/INT, what it left in its group signalled after
it exited, and how it ended (the exit status and its record)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from .._errors import describe_os_error
from ._process import JOB_CONTROL_SIGNALS, KILL_AFTER_TRIGGERS, process_group_members, signal_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Child"]


class Child:
    """The child process (its pid is 0 until :meth:`started`); every signal logwrap sends it goes through here."""

    def __init__(self, *, signal_group: bool, kill_after: float | None, note: Callable[..., None]) -> None:
        self.signal_group = signal_group
        self.kill_after = kill_after
        self.note = note  # logwrap's own record
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.status: int | None = None  # its raw wait status, once it exited
        self.forwarded: list[int] = []  # the signals forwarded to it, in order
        self.kill_at: float | None = None  # --kill-after: when it gets KILL
        self._kill_trigger = 0  # the TERM/INT that started that clock

    def started(self, popen: subprocess.Popen[bytes]) -> None:
        """The child runs."""
        self.popen = popen
        self.pid = popen.pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child, or with ``--signal-group`` to its process group (raises OSError as kill does)."""
        if self.signal_group:
            os.killpg(self.pid, sig)
        else:
            os.kill(self.pid, sig)

    def forward(self, sig: int, sender: int, now: float) -> bool:
        """Forward ``sig`` (sent by ``sender``, 0 when unknown) and say so; a TERM/INT starts the ``--kill-after``
        clock. False when it was not sent (the child is gone, or the kernel refused: said)."""
        sent = sig
        if sig in JOB_CONTROL_SIGNALS and self.signal_group:
            # The child's session is not ours, so its process group is orphaned and the kernel would discard these:
            # stop it for real (dumb-init's rule); the CONT that resumes us resumes it.
            sent = signal.SIGSTOP
        try:
            self.signal(sent)
        except ProcessLookupError:
            return False
        except OSError as exc:
            self.note("WARNING", f"could not forward {signal_name(sig)} to the child: {describe_os_error(exc)}",
                      signal=signal_name(sig))
            return False
        if sig != signal.SIGWINCH:
            target = "process group" if self.signal_group else "pid"
            how = f" as {signal_name(sent)}" if sent != sig else ""
            fields: dict[str, Any] = {"signal": signal_name(sig)}
            if sender:
                fields["sender_pid"] = sender
            self.note("INFO", f"forwarded {signal_name(sig)}{how} to the child ({target} {self.pid})", **fields)
        self.forwarded.append(sig)
        if sig in KILL_AFTER_TRIGGERS and self.kill_after is not None and self.kill_at is None:
            self.kill_at = now + self.kill_after
            self._kill_trigger = sig
        return True

    def kill_if_due(self, now: float) -> None:
        """``--kill-after``: still alive that long after the first TERM/INT: KILL it (once)."""
        if self.kill_at is None or now < self.kill_at:
            return
        self.kill_at = None
        try:
            self.signal(signal.SIGKILL)
            self.note("WARNING", f"the child was still alive {self.kill_after:g}s after "
                      f"{signal_name(self._kill_trigger)} (--kill-after): sent SIGKILL", signal="SIGKILL")
        except ProcessLookupError:
            pass
        except OSError as exc:  # EPERM (it became another user's), ...: said; logwrap and its log files carry on
            self.note("WARNING", f"could not send SIGKILL to the child {self.kill_after:g}s after "
                      f"{signal_name(self._kill_trigger)} (--kill-after): {describe_os_error(exc)}", signal="SIGKILL")

    def exited(self, status: int) -> None:
        """The child was reaped with wait status ``status``: nothing more to KILL."""
        self.status = status
        if self.popen is not None:
            self.popen.returncode = os.waitstatus_to_exitcode(status)  # reaped by logwrap, not by Popen
        self.kill_at = None

    def signal_leftovers(self, sig: int) -> list[int]:
        """``--signal-group``, the child exited: ``sig`` (TERM, then KILL after ``--kill-after``) for what it left in
        its process group (dumb-init's rule), said. Returns the processes signalled (none when none was there or the
        signal could not be sent)."""
        left = process_group_members(self.pid)
        if not left:
            return left
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return []
        except OSError as exc:
            self.note("WARNING", f"could not send {signal_name(sig)} to what the child left in its process group: "
                      f"{describe_os_error(exc)}", left_in_group=left)
            return []
        count = f"{len(left)} process{'es' if len(left) > 1 else ''}"
        if sig == signal.SIGTERM:
            self.note("INFO", f"the child exited: sent SIGTERM to the {count} it left in its process group "
                      "(--signal-group)", left_in_group=left, signal="SIGTERM")
        else:
            self.note("WARNING", f"{count} the child left in its process group still alive "
                      f"{self.kill_after:g}s after SIGTERM (--kill-after): sent SIGKILL", left_in_group=left,
                      signal="SIGKILL")
        return left

    def end(self) -> tuple[int, str, str, dict[str, Any]]:
        """How it ended: logwrap's exit status (its code, or 128+N for signal N) and the level, message and fields of
        the record that says so (INFO for code 0 and for a signal that was forwarded to it)."""
        code = os.waitstatus_to_exitcode(self.status if self.status is not None else 0)
        fields: dict[str, Any] = {"child_pid": self.pid}
        if code >= 0:
            fields["exit_code"] = code
            return code, "INFO" if code == 0 else "ERROR", f"the child (pid {self.pid}) exited with code {code}", fields
        sig = -code
        forwarded = sig in self.forwarded or (sig == signal.SIGKILL and bool(self.forwarded))
        fields.update(signal=signal_name(sig), exit_code=128 + sig)
        return (128 + sig, "INFO" if forwarded else "ERROR",
                f"the child (pid {self.pid}) was killed by {signal_name(sig)}: exit status {128 + sig}", fields)
