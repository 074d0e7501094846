"""The drain: what logwrap waits for after the child exited, until when, and how the wait ends, in named states.

After the child exited its outputs are read to their end, passthrough delivers what it holds and, as a reaper,
orphans and (``--signal-group``) the group's leftovers are waited for, at most ``--drain-timeout`` (longer while the
group's leftovers get their KILL). The deadline, or a TERM/INT/QUIT, cuts the wait short: the outputs are read one
last time and closed, and only passthrough is still waited for (after a stop, not even that).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["GROUP_POLL_INTERVAL", "Drain", "DrainState"]

GROUP_POLL_INTERVAL = 0.05  #: how often the process group of an exited child is checked for leftovers


class DrainState(Enum):
    """Where the drain is: waiting within its deadline, asked to stop, or cut short (by the deadline, or a stop).
    ``WAITING`` -> ``TIMED_OUT`` or ``STOP_ASKED`` -> ``STOPPED``; ``TIMED_OUT`` -> ``STOPPED`` on a stop."""

    WAITING = "waiting"
    STOP_ASKED = "stop asked"  # a TERM/INT/QUIT while waiting: cut at this turn of the loop, after its events
    TIMED_OUT = "timed out"  # cut by the deadline: the outputs are closed; passthrough still delivers
    STOPPED = "stopped"  # cut by a TERM/INT/QUIT: passthrough is not waited for either


class Drain:
    """The deadlines and the state of one drain; the supervisor acts on them (reads, closes, signals, says)."""

    def __init__(self, now: float, timeout: float) -> None:
        self.timeout = timeout
        self.state = DrainState.WAITING
        self.deadline = now + timeout
        self.group_left = False  # --signal-group: the child left live processes in its process group
        self.group_check_at: float | None = None  # next look at whether they are gone
        self.group_kill_at: float | None = None  # --kill-after: when they get KILL

    def ask_stop(self) -> None:
        """A TERM/INT/QUIT while draining: stop now, without waiting for passthrough."""
        if self.state is DrainState.WAITING:
            self.state = DrainState.STOP_ASKED
        elif self.state is DrainState.TIMED_OUT:
            self.state = DrainState.STOPPED

    def due(self, now: float) -> bool:
        """Whether the wait is to be cut now: its deadline passed, or a stop was asked."""
        return self.state is DrainState.STOP_ASKED or (self.state is DrainState.WAITING and now >= self.deadline)

    def cut(self) -> None:
        """The wait was cut short (the supervisor read the outputs one last time and closed them)."""
        assert self.state in (DrainState.WAITING, DrainState.STOP_ASKED), self.state
        self.state = DrainState.STOPPED if self.state is DrainState.STOP_ASKED else DrainState.TIMED_OUT

    @property
    def cut_short(self) -> bool:
        """True once the wait was cut short (by the deadline, or a stop)."""
        return self.state in (DrainState.TIMED_OUT, DrainState.STOPPED)

    @property
    def waits_for_passthrough(self) -> bool:
        """Whether passthrough is still given time to deliver what it holds (not after a stop)."""
        return self.state not in (DrainState.STOP_ASKED, DrainState.STOPPED)

    def waits_for_processes(self, children_left: bool) -> bool:
        """Whether orphans (``children_left``) or the group's leftovers are still waited for (not once cut short)."""
        return (children_left or self.group_left) and not self.cut_short

    def kill_group_later(self, now: float, kill_after: float) -> None:
        """``--kill-after``: the group's leftovers get KILL ``kill_after`` seconds from ``now``; the drain waits
        ``timeout`` more after that for them to go."""
        self.group_kill_at = now + kill_after
        self.deadline = max(self.deadline, self.group_kill_at + self.timeout)

    def group_seen(self, left: bool, now: float) -> None:
        """A look at the group: ``left`` live processes are still in it (then look again soon), or none."""
        self.group_left = left
        self.group_check_at = now + GROUP_POLL_INTERVAL if left else None

    def group_kill_due(self, now: float) -> bool:
        """Whether the group's leftovers get their KILL now (at most once)."""
        if self.group_kill_at is None or now < self.group_kill_at:
            return False
        self.group_kill_at = None
        return True

    def group_check_due(self, now: float) -> bool:
        """Whether it is time to look at the group again."""
        return self.group_check_at is not None and now >= self.group_check_at

    def next_deadline(self) -> float | None:
        """The next time the drain has something to do: its deadline while waiting, the group's next look or KILL."""
        times = [t for t in (self.group_kill_at, self.group_check_at) if t is not None]
        if self.state is DrainState.WAITING:
            times.append(self.deadline)
        return min(times) if times else None
