"""logwrap's supervisor: one event loop over the child's outputs, a signal descriptor and our own stdout/stderr,
with timers, and the explicit states it goes through (tini's and dumb-init's design).

``STARTING`` (log files, signals, terminal; the start record is on disk) -> ``RUNNING`` (the child was started) ->
``DRAINING`` (the child exited: its outputs are read to their end, orphans and the group's leftovers waited for, at
most ``--drain-timeout``) -> ``EXITED`` (last records, exit status). A command that cannot be started goes from
``STARTING`` to ``EXITED``. Every change goes through :meth:`Supervisor._enter`, and decisions test the state.
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import time
from collections.abc import Mapping
from enum import Enum

from .._framer import StreamFramer, speedups_enabled
from .._redaction import redact_argv
from .._settings import LogSettings
from ._child import Child
from ._drain import Drain
from ._logfiles import LogFiles
from ._options import Options
from ._outputs import ChildOutput
from ._passthrough import PASSTHROUGH_BUFFER, Passthrough
from ._process import (
    JOB_CONTROL_SIGNALS,
    SignalInbox,
    guard_std_fds,
    make_pipe,
    process_group_members,
    say,
    spawn,
    start_reaping,
)
from ._tty import Terminal, open_terminal

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["EXIT_SETUP", "TRANSITIONS", "State", "Supervisor"]

EXIT_SETUP = 125  #: --strict and the log file cannot be set up (like env/timeout/docker run: "the wrapper failed")


class State(Enum):
    """The supervisor's life: set up, run the child, drain its pipes after it exited, done."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    EXITED = "exited"


#: The transitions :meth:`Supervisor._enter` allows.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.STARTING: frozenset({State.RUNNING, State.EXITED}),
    State.RUNNING: frozenset({State.DRAINING}),
    State.DRAINING: frozenset({State.EXITED}),
    State.EXITED: frozenset(),
}


class Supervisor:
    """Runs the child and the event loop; ``run()`` returns the exit status."""

    def __init__(self, opts: Options, settings: LogSettings) -> None:
        self.opts = opts
        self.settings = settings
        self.state = State.STARTING
        self.transitions: list[tuple[State, str]] = []  # (state entered, why), in order
        self.files = LogFiles()  # none until opened (and none when they cannot be)
        self.streams: list[ChildOutput] = []
        self.signals = SignalInbox()
        self.child = Child(signal_group=opts.signal_group, kill_after=opts.kill_after, note=self.note)
        self.orphans_reaped = 0
        self.drain: Drain | None = None  # from the child's exit on
        self._pid = os.getpid()
        self._sel: selectors.BaseSelector | None = None  # made in run(), after fds 0-2 are known to be taken
        self._watched: dict[tuple[str, int], int] = {}  # selector key data -> fd registered for it
        self._terminal: Terminal | None = None
        self._children_left = True  # until waitpid says otherwise
        self._closed_std: set[int] = set()
        self._degraded = False

    def _enter(self, state: State, why: str) -> None:
        """The one way the state changes: only along :data:`TRANSITIONS` (anything else is a bug, raised)."""
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"logwrap: no transition from {self.state.value} to {state.value} ({why})")
        self.state = state
        self.transitions.append((state, why))

    @property
    def selector(self) -> selectors.BaseSelector:
        """The event loop's selector (exists once ``run`` started)."""
        assert self._sel is not None
        return self._sel

    def note(self, level: str, message: str, *, stream: str | None = None, **fields: Any) -> None:
        """Queue one logwrap record: in the file of ``stream``, or in every file when no stream is named."""
        self.files.note(level, message, stream=stream, **fields)

    def _flush_now(self) -> None:
        """Write what is queued at once (the start records: on disk before the child runs, whatever it does)."""
        self.files.flush(time.monotonic())

    # -- setup ---------------------------------------------------------------------------------------------------------

    def _open_terminal(self) -> str | None:
        """Our stdin and stdout on a terminal (``docker run -it``): give the child a pseudo-terminal of its own.
        Returns a note when that fails (the child gets pipes)."""
        if not self.opts.tty or self._closed_std or not (os.isatty(0) and os.isatty(1)):
            return None
        term = open_terminal(self.note)
        if isinstance(term, str):
            return term
        self._terminal = term
        return None

    def _raw_mode(self, on: bool) -> None:
        if self._terminal is not None:
            self._terminal.raw_mode(on)

    def _spawn(self) -> int | None:
        """Start the child on two fresh pipes, or on its pseudo-terminal. Returns an exit status when it cannot be
        started, else None.

        It starts with the signal mask and dispositions logwrap was started with (see :class:`SignalInbox`;
        ``restore_signals`` gives PIPE and XFSZ their default action), in a session of its own with ``--signal-group``
        or a terminal (then its controlling terminal), and with stdin and only the standard descriptors, as before.
        Not ``posix_spawn``: glibc's leaves its internal signals 32 and 33 ignored in the child.
        """
        command = self.opts.command
        term = self._terminal
        stdio: tuple[int | None, int, int]
        if term is not None:
            stdio = (term.slave, term.slave, term.slave)
            outputs = [("stdout", term.master, 1)]
            ours = [term.slave]
        else:
            out_r, out_w = make_pipe()
            err_r, err_w = make_pipe()
            stdio = (None, out_w, err_w)  # stdin inherited: `docker run -i` keeps working
            outputs = [("stdout", out_r, 1), ("stderr", err_r, 2)]
            ours = [out_w, err_w]
        try:
            child = spawn(command, stdio, mask=self.signals.child_mask,
                          new_session=self.opts.signal_group or term is not None, controlling_tty=term is not None)
        finally:
            for fd in ours:
                os.close(fd)
            if term is not None:
                term.slave = -1
        if isinstance(child, tuple):
            if term is None:
                for _name, fd, _target in outputs:
                    os.close(fd)
            status, message = child
            say(message)
            self.note("ERROR", f"logwrap could not start the command: {message}", exit_code=status,
                      command=shlex.join(redact_argv(command)))
            return status
        self.child.started(child)
        for name, fd, target in outputs:
            self.streams.append(self._output(name, fd, target))
        return None

    def _output(self, name: str, fd: int, target: int) -> ChildOutput:
        """The child's output ``name`` on ``fd``: passed through to our descriptor ``target``, framed into the log
        file of ``name`` when there is one."""
        s = self.settings
        sink = self.files.sinks.get(name)
        framer = None
        if sink is not None:
            framer = StreamFramer(service=s.service, stream=name, fmt=s.fmt, max_line_bytes=self.opts.max_line_bytes,
                                  pid=self.child.pid)
        enabled = self.opts.passthrough and target not in self._closed_std
        passthrough = Passthrough(name, target, bound=PASSTHROUGH_BUFFER, enabled=enabled, note=self.note,
                                  stuck_after=self.opts.passthrough_timeout)
        return ChildOutput(len(self.streams), name, fd, framer, sink, passthrough, self.note,
                           tty=self._terminal is not None)

    # -- run -----------------------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Set up, start the child, loop until it exited and its pipes are drained; return its exit status."""
        self._closed_std = guard_std_fds()
        self._sel = selectors.DefaultSelector()
        files = LogFiles.open(self.settings, split_streams=self.opts.split_streams,
                              buffer_bytes=self.opts.buffer_bytes)
        if isinstance(files, str):
            if self.settings.strict:
                say(f"{files} (--strict: not starting {self.opts.command[0]!r})")
                return EXIT_SETUP
            say(f"{files}; running {self.opts.command[0]!r} without log files, output passed through only "
                "(use --strict / MLOPS_LOG_STRICT=1 to refuse instead)")
        else:
            self.files = files
        try:
            notes = [self.signals.open(), start_reaping(self.opts.subreaper), self._open_terminal()]
            self._startup_record(*notes)
            self._flush_now()  # the start record is on disk before the child runs
            status = self._spawn()
            if status is not None:
                self._enter(State.EXITED, "the command could not be started")
                self.files.finish(time.monotonic())
                return status
            self._enter(State.RUNNING, f"the child is running (pid {self.child.pid})")
            self.note("INFO", f"the child is running (pid {self.child.pid})", child_pid=self.child.pid)
            self._flush_now()
            self._raw_mode(True)
            self._loop()
            return self._finish()
        finally:
            self._raw_mode(False)
            self.signals.close()
            for stream in self.streams:
                stream.passthrough.close()
            if self._terminal is not None:  # the master is a stream's once the command started
                self._terminal.close(master=not self.streams)
            if self._sel is not None:
                self._sel.close()

    def _startup_record(self, signals_note: str | None, reaper_note: str | None, tty_note: str | None) -> None:
        s = self.settings
        command = shlex.join(redact_argv(self.opts.command))
        fields: dict[str, Any] = {
            "command": command,
            "pid": self._pid,
            "passthrough": self.opts.passthrough,
            "format": s.fmt,
            "tty": self._terminal is not None,
        }
        if self.files.sinks:
            fields["speedups"] = speedups_enabled()  # the framer's C extension (a slow logwrap says why here)
        if reaper_note:
            fields["reaper"] = reaper_note
        self.note("INFO", f"logwrap started (pid {self._pid}): running {command}", **fields)
        for problem in (signals_note, tty_note):
            if problem:
                self.note("WARNING", f"logwrap: {problem}")
        for fd in sorted(self._closed_std - {0}):
            name = "stdout" if fd == 1 else "stderr"
            self.note("WARNING", f"logwrap's {name} is closed: no passthrough of the child's {name}", stream=name)

    # -- the loop ------------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        """The event loop: wait for the next event or timer, handle each event, then the timers; until EXITED."""
        self.selector.register(self.signals.fileno(), selectors.EVENT_READ, ("signal", -1))
        self._reap()  # the child may already be gone: its SIGCHLD is queued too, but be sure
        while self.state is not State.EXITED:
            self._update_interest()
            now = time.monotonic()
            timeout = self._timeout(now)
            try:
                events = self.selector.select(timeout)
            except InterruptedError:
                events = []
            now = time.monotonic()
            try:
                for key, _mask in events:
                    kind, index = key.data
                    if kind == "read":
                        self._read(self.streams[index], now)
                    elif kind == "signal":
                        self._signals(now)
                    elif kind == "write":
                        self.streams[index].passthrough.on_writable(now)
                    elif kind == "stdin" and self._terminal is not None:
                        self._read_stdin(self._terminal, now)
                    elif kind == "keys" and self._terminal is not None:
                        self._terminal.keys.on_writable(now)
                self._tick(now)
            except Exception as exc:  # noqa: BLE001 - a bug in logging must not take the service down
                if self._degraded:
                    raise
                self._degrade(exc)

    def _degrade(self, exc: Exception) -> None:
        """An unexpected error in the record path: say so, then go on with passthrough, signals and reaping only."""
        self._degraded = True
        say(f"internal error ({type(exc).__name__}: {exc}); log files are off for the rest of the run, "
            "output is still passed through and the child keeps running")
        self.files.give_up(f"logwrap internal error ({type(exc).__name__}: {exc}): log files are off for the rest "
                           "of the run", time.monotonic())
        for stream in self.streams:
            stream.stop_framing()

    def _watch(self, key: tuple[str, int], fd: int, events: int, want: bool) -> None:
        """Keep ``fd`` registered in the selector under ``key`` exactly while ``want``."""
        registered = self._watched.get(key)
        if want and registered is None and fd >= 0:
            try:
                self.selector.register(fd, events, key)
            except (ValueError, KeyError, OSError):
                return  # cannot be watched (never the case for pipes, ttys, sockets): retried next turn
            self._watched[key] = fd
        elif not want and registered is not None:
            try:
                self.selector.unregister(registered)
            except (ValueError, KeyError, OSError):
                pass
            del self._watched[key]

    def _update_interest(self) -> None:
        """Watch what can make progress: a child's output unless its passthrough is full (backpressure), our
        stdout/stderr while passthrough bytes wait for them, on a terminal our stdin and the child's terminal."""
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        for stream in self.streams:
            pt = stream.passthrough
            self._watch(("read", stream.index), stream.fd, read, stream.open and not pt.full)
            self._watch(("write", stream.index), pt.fd, write, pt.wants_write and pt.enabled)
        term = self._terminal
        if term is not None:
            self._watch(("stdin", -1), term.stdin, read,
                        term.stdin >= 0 and not term.stdin_paused and not term.keys.full and term.keys.enabled)
            self._watch(("keys", -1), term.keys.fd, write, term.keys.wants_write and term.keys.enabled)

    def _timeout(self, now: float) -> float | None:
        """How long the loop may wait: until the next timer of the kill clock, the drain, the outputs or the files."""
        deadlines = [self.child.kill_at, self.drain.next_deadline() if self.drain is not None else None,
                     self.files.next_deadline()]
        for stream in self.streams:
            deadlines += (stream.idle_deadline(), stream.passthrough.next_deadline())
        due = [deadline for deadline in deadlines if deadline is not None]
        return max(0.0, min(due) - now) if due else None

    def _read(self, stream: ChildOutput, now: float) -> None:
        """One read of the child's output (passed through, framed); at its end it is closed."""
        if stream.read(now) == 0:
            self._close_stream(stream, now)

    def _read_stdin(self, term: Terminal, now: float) -> None:
        """Our stdin (a terminal) to the child's terminal; at its end we stop watching it."""
        if not term.read_stdin(now):
            self._watch(("stdin", -1), term.stdin, selectors.EVENT_READ, False)
            term.close_stdin()

    def _close_stream(self, stream: ChildOutput, now: float) -> None:
        """Stop watching the child's output, then close it."""
        self._watch(("read", stream.index), stream.fd, selectors.EVENT_READ, False)
        stream.close(now)

    # -- signals and reaping -------------------------------------------------------------------------------------------

    def _signals(self, now: float) -> None:
        """The signals the signal descriptor holds: CHLD reaps, the others are the child's (ours aside)."""
        for sig, sender in self.signals.read():
            if sig == signal.SIGCHLD:
                self._reap()
            elif sender == self._pid:
                continue  # raised by our own write (SIGPIPE for a closed reader, SIGXFSZ past RLIMIT_FSIZE)
            elif sig == signal.SIGWINCH and self._terminal is not None:
                self._terminal.copy_window_size()  # the kernel signals the child's foreground job itself
            else:
                if sig == signal.SIGCONT and self._terminal is not None:
                    self._terminal.stdin_paused = False
                self._forward(sig, sender, now)

    def _forward(self, sig: int, sender: int, now: float) -> None:
        """A signal for the child: forwarded while it runs (then, for TSTP/TTIN/TTOU, we stop too); while draining, a
        TERM/INT/QUIT asks us to stop now."""
        if self.state is not State.RUNNING:
            if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) and self.drain is not None:
                self.drain.ask_stop()
            return
        if self.child.forward(sig, sender, now) and sig in JOB_CONTROL_SIGNALS:
            self._stop_self()

    def _stop_self(self) -> None:
        """dumb-init's job-control rule: after forwarding TSTP/TTIN/TTOU, stop ourselves too, until a CONT (which is
        forwarded like any signal). Our terminal leaves raw mode meanwhile."""
        self._flush_now()
        self._raw_mode(False)
        os.kill(self._pid, signal.SIGSTOP)
        self._raw_mode(True)

    def _reap(self) -> None:
        """``waitpid(-1, WNOHANG)`` until nothing is left: the direct child's status is kept, orphans are reaped."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children_left = False  # neither the child nor any adopted orphan is alive
                return
            except InterruptedError:
                continue
            if pid == 0:
                self._children_left = True
                return
            if pid == self.child.pid and self.state is State.RUNNING:
                self._child_exited(status, time.monotonic())
            else:
                self.orphans_reaped += 1

    def _child_exited(self, status: int, now: float) -> None:
        """The direct child is gone: keep its status and start the drain (``--signal-group``: its group's leftovers
        get TERM)."""
        self.child.exited(status)
        self._enter(State.DRAINING, "the child exited")
        self.drain = Drain(now, self.opts.drain_timeout)
        if self.opts.signal_group:
            self._signal_leftovers(signal.SIGTERM, now)

    def _signal_leftovers(self, sig: int, now: float) -> None:
        """``--signal-group``, the child exited: what it left in its process group gets TERM, and KILL
        ``--kill-after`` seconds later if any of it is still alive; the drain looks after them meanwhile."""
        drain = self.drain
        assert drain is not None
        left = self.child.signal_leftovers(sig)
        drain.group_seen(bool(left), now)
        if left and sig == signal.SIGTERM and self.opts.kill_after is not None:
            drain.kill_group_later(now, self.opts.kill_after)

    # -- timers and the drain ------------------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        """Timers: the outputs' idle records and stuck readers, kill-after, the drain; then write what the file sinks
        hold."""
        for stream in self.streams:
            stream.tick(now)
        if self.state is State.RUNNING:
            self.child.kill_if_due(now)
        if self.state is State.DRAINING:
            self._drain_step(now)
        self.files.flush(now)

    def _drain_step(self, now: float) -> None:
        """After the child exited: done when its outputs are closed, passthrough has delivered (or its reader is
        stuck) and, as a reaper, adopted orphans and (``--signal-group``) the group's leftovers are gone. At the
        drain deadline, or on a TERM/INT/QUIT, the outputs are read one last time and closed (:meth:`_cut_drain`)."""
        drain = self.drain
        assert drain is not None
        if drain.group_kill_at is not None and now >= drain.group_kill_at:
            drain.group_kill_at = None
            self._signal_leftovers(signal.SIGKILL, now)
        elif drain.group_check_at is not None and now >= drain.group_check_at:
            drain.group_seen(bool(process_group_members(self.child.pid)), now)
        if drain.due(now):
            self._cut_drain(drain, now)
        outputs_done = not any(s.open for s in self.streams)
        passthrough_done = not drain.waits_for_passthrough or not any(
            s.passthrough.wants_write and not s.passthrough.stuck for s in self.streams)
        # As a reaper, adopted orphans (vLLM's engine, a resource tracker) are waited for too, so they are reaped
        # here instead of ending up as zombies of whoever adopts them after we exit.
        if outputs_done and passthrough_done and not drain.waits_for_processes(self._children_left):
            self._enter(State.EXITED, "the drain time ran out" if drain.cut_short else "drained")

    def _cut_drain(self, drain: Drain, now: float) -> None:
        """The drain is cut short: what the outputs still hold is read, they are closed, and what was still open or
        running is said."""
        drain.cut()
        held = [stream.name for stream in self.streams if stream.open and not stream.read_rest(now)]
        for stream in self.streams:
            self._close_stream(stream, now)
        timeout = f"{self.opts.drain_timeout:g}s (--drain-timeout)"
        if held:
            self.note("WARNING", f"the child exited but its {' and '.join(held)} {'is' if len(held) == 1 else 'are'} "
                      f"still held open by another process (a background or grandchild process?): stopped reading "
                      f"after {timeout}", held_open=held)
        elif drain.group_left:
            self.note("WARNING", f"processes the child left in its process group are still running after {timeout}: "
                      "exiting without them", left_in_group=process_group_members(self.child.pid))
        elif self._children_left:
            self.note("WARNING", f"the child exited but orphaned processes it left are still running after {timeout}: "
                      "exiting without them", orphans_left=True)

    # -- the end -------------------------------------------------------------------------------------------------------

    def _finish(self) -> int:
        """The child exited and the pipes are drained (or the wait ran out): last records, exit status."""
        now = time.monotonic()
        for stream in self.streams:
            self._close_stream(stream, now)
            stream.passthrough.abandon()
        exit_status, level, message, fields = self.child.end()
        if self.orphans_reaped:
            fields["orphans_reaped"] = self.orphans_reaped
        framers = [stream.framer for stream in self.streams if stream.framer is not None]
        if framers:  # which framer path ran (the C one is meant to, unless MLOPS_LOG_SPEEDUPS=0 or not built)
            fields["framer_chunks"] = {path: sum(f.paths[path] for f in framers) for path in framers[0].paths}
        self.note(level, message, **fields)
        self.files.finish(time.monotonic())
        return exit_status
