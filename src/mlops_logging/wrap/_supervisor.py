"""logwrap's supervisor: one event loop over the child's outputs, a signal descriptor and our own stdout/stderr,
with timers, and the explicit states it goes through (tini's and dumb-init's design).

``STARTING`` (log files, signals, terminal; the start record is on disk) -> ``RUNNING`` (the child was started) ->
``DRAINING`` (the child exited: its outputs are read to their end, orphans and the group's leftovers waited for, at
most ``--drain-timeout``) -> ``EXITED`` (last records, exit status). A command that cannot be started goes from
``STARTING`` to ``EXITED``. Every change goes through :meth:`Supervisor._enter`, and decisions test the state.
"""

from __future__ import annotations

import errno
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._errors import LogSetupError, describe_os_error
from .._files import LogFile, ensure_log_dir
from .._records import render_wrapper_record
from .._redaction import redact_argv
from .._settings import LogSettings
from .._sink import WRITE_SLICE, FileSink
from .._framer import StreamFramer, speedups_enabled
from ._options import Options
from ._passthrough import PASSTHROUGH_BUFFER, Passthrough
from ._process import (
    JOB_CONTROL_SIGNALS,
    KILL_AFTER_TRIGGERS,
    PIPE_SIZE,
    SignalInbox,
    become_subreaper,
    make_pipe,
    process_group_members,
    say,
    signal_name,
    spawn,
)
from ._tty import Terminal, open_terminal

__all__ = ["EXIT_SETUP", "TRANSITIONS", "State", "Supervisor"]

EXIT_SETUP = 125  #: --strict and the log file cannot be set up (like env/timeout/docker run: "the wrapper failed")
READ_CHUNK = 256 * 1024  #: one os.read from a child pipe
GROUP_POLL_INTERVAL = 0.05  #: how often the process group of an exited child is checked for leftovers


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


@dataclass
class _Stream:
    """One of the child's outputs (a pipe, or its pseudo-terminal) and what becomes of its bytes."""

    index: int
    name: str
    fd: int
    framer: Any  # _framer.StreamFramer, or None without a log file
    sink: FileSink | None
    passthrough: Passthrough
    open: bool = True
    tty: bool = False  # the child's pseudo-terminal: EIO on read is its end (every slave descriptor closed)
    held: bool = False  # not read while its passthrough is full: the framer's idle clock is stopped

    def idle_deadline(self) -> float | None:
        """When the framer's held bytes are due as records (an unterminated line, an open traceback), or None. While
        logwrap itself is not reading (backpressure) the child is blocked, not idle: a line cut by our own pause
        must not become two records."""
        if not self.open or self.framer is None or self.held:
            return None
        deadline: float | None = self.framer.next_deadline()
        return deadline


class Supervisor:
    """Runs the child and the event loop; ``run()`` returns the exit status."""

    def __init__(self, opts: Options, settings: LogSettings) -> None:
        self.opts = opts
        self.settings = settings
        self.state = State.STARTING
        self.transitions: list[tuple[State, str]] = []  # (state entered, why), in order
        self.child: subprocess.Popen[bytes] | None = None
        self.child_pid = 0
        self.child_status: int | None = None  # raw wait status of the direct child
        self.orphans_reaped = 0
        self._children_left = True  # until waitpid says otherwise
        self.sinks: dict[str, FileSink] = {}  # stream -> sink (both streams share one unless --split-streams)
        self.streams: list[_Stream] = []
        self.signals = SignalInbox()
        self._pid = os.getpid()
        self._sel: selectors.BaseSelector | None = None  # made in run(), after fds 0-2 are known to be taken
        self._watched: dict[tuple[str, int], int] = {}  # selector key data -> fd registered for it
        self._terminal: Terminal | None = None
        self._kill_at: float | None = None
        self._drain_deadline: float | None = None
        self._drain_ended = False
        self._stop_now = False  # a TERM/INT/QUIT while draining: exit without waiting for passthrough
        self._group_kill_at: float | None = None  # --signal-group --kill-after: KILL for the leftovers of the group
        self._group_check_at: float | None = None  # next look at whether the group's leftovers are gone
        self._group_left = False
        self._forwarded: list[int] = []
        self._kill_trigger = 0  # the TERM/INT that started the --kill-after clock
        self._render: Callable[..., bytes] | None = None
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

    # -- records ----------------------------------------------------------------------------------------------------

    def note(self, level: str, message: str, *, stream: str | None = None, **fields: Any) -> None:
        """Queue one logwrap record: in the file of ``stream``, or in every file when no stream is named."""
        if self._render is None or not self.sinks:
            return
        if stream is not None:
            self.sinks[stream].submit(self._render(level, message, stream=stream, **fields))
            return
        data = self._render(level, message, **fields)
        for sink in self._unique_sinks():
            sink.submit(data)

    def _unique_sinks(self) -> list[FileSink]:
        seen: list[FileSink] = []
        for sink in self.sinks.values():
            if sink not in seen:
                seen.append(sink)
        return seen

    def _flush_now(self) -> None:
        """Write what is queued at once (the start records: on disk before the child runs, whatever it does)."""
        now = time.monotonic()
        for sink in self._unique_sinks():
            sink.flush(now)

    # -- setup --------------------------------------------------------------------------------------------------------

    def _guard_std_fds(self) -> None:
        """Make sure fds 0-2 are open (on /dev/null when closed), so no pipe we create lands on them."""
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
                self._closed_std.add(fd)

    def _open_files(self) -> str | None:
        """Create the directory and open the log file(s). Returns the one-line error, or None."""
        s = self.settings
        try:
            ensure_log_dir(s.log_dir, file_mode=s.file_mode)
            names = ("stdout", "stderr") if self.opts.split_streams else (None,)
            opened: dict[str | None, LogFile] = {}
            try:
                for stream in names:
                    path = s.log_dir / (f"{s.service}.{stream}.log" if stream else f"{s.service}.log")
                    # check_interval=0: look at the path before every batch, so a deleted or renamed file is
                    # replaced at once and nothing goes to an unlinked inode (one lstat per batch).
                    opened[stream] = LogFile(path, max_bytes=s.max_bytes, backups=s.backups, check_interval=0.0,
                                             exclusive=True, mode=s.file_mode)
            except LogSetupError:
                for logfile in opened.values():
                    logfile.close()
                raise
        except LogSetupError as exc:
            return str(exc)
        service, fmt = s.service, s.fmt

        def render(level: str, message: str, **fields: Any) -> bytes:
            return render_wrapper_record(service=service, level=level, message=message, fmt=fmt, **fields)

        def notice(message: str, fields: dict[str, Any]) -> bytes:
            return render("WARNING", message, **fields)

        self._render = render
        # With size rotation, write at most 1/16 of --max-bytes at a time, so a file overshoots it by little.
        slice_bytes = min(WRITE_SLICE, max(4096, s.max_bytes // 16)) if s.max_bytes else WRITE_SLICE
        sinks = {k: FileSink(v, notice=notice, buffer_bytes=self.opts.buffer_bytes, slice_bytes=slice_bytes)
                 for k, v in opened.items()}
        if self.opts.split_streams:
            self.sinks = {"stdout": sinks["stdout"], "stderr": sinks["stderr"]}
        else:
            self.sinks = {"stdout": sinks[None], "stderr": sinks[None]}
        return None

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
        self.child = child
        self.child_pid = child.pid
        s = self.settings
        for name, fd, target in outputs:
            sink = self.sinks.get(name)
            framer = None
            if sink is not None:
                framer = StreamFramer(service=s.service, stream=name, fmt=s.fmt,
                                      max_line_bytes=self.opts.max_line_bytes, pid=self.child_pid)
            enabled = self.opts.passthrough and target not in self._closed_std
            passthrough = Passthrough(name, target, bound=PASSTHROUGH_BUFFER, enabled=enabled, note=self.note,
                                      stuck_after=self.opts.passthrough_timeout)
            self.streams.append(_Stream(len(self.streams), name, fd, framer, sink, passthrough, tty=term is not None))
        return None

    # -- run ----------------------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Set up, start the child, loop until it exited and its pipes are drained; return its exit status."""
        self._guard_std_fds()
        self._sel = selectors.DefaultSelector()
        error = self._open_files()
        if error is not None:
            if self.settings.strict:
                say(f"{error} (--strict: not starting {self.opts.command[0]!r})")
                return EXIT_SETUP
            say(f"{error}; running {self.opts.command[0]!r} without log files, output passed through only "
                 "(use --strict / MLOPS_LOG_STRICT=1 to refuse instead)")
        try:
            notes = [self.signals.open(), self._setup_reaping(), self._open_terminal()]
            self._startup_record(*notes)
            self._flush_now()  # the start record is on disk before the child runs
            status = self._spawn()
            if status is not None:
                self._enter(State.EXITED, "the command could not be started")
                self._finish_files()
                return status
            self._enter(State.RUNNING, f"the child is running (pid {self.child_pid})")
            self.note("INFO", f"the child is running (pid {self.child_pid})", child_pid=self.child_pid)
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

    def _setup_reaping(self) -> str | None:
        if os.getpid() == 1:
            return "running as PID 1: reaping orphaned processes"
        if self.opts.subreaper:
            problem = become_subreaper()
            if problem:
                say(f"--subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed: {problem}; orphans will not be reaped here")
                return f"--subreaper failed: {problem}"
            return "subreaper: reaping orphaned processes"
        return None

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
        if self.sinks:
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

    def _loop(self) -> None:
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
                    elif kind == "stdin":
                        self._read_stdin(now)
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
        try:
            self.note("CRITICAL", f"logwrap internal error ({type(exc).__name__}: {exc}): log files are off for the "
                      "rest of the run")
            for sink in self._unique_sinks():
                sink.flush(time.monotonic(), force=True)
                sink.close()
        except Exception:  # noqa: BLE001, S110 - best effort: the files are being given up on
            pass
        self.sinks = {}
        for stream in self.streams:
            stream.framer = None
            stream.sink = None

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
        deadlines = [d for d in (self._kill_at, self._drain_deadline, self._group_kill_at, self._group_check_at)
                     if d is not None]
        for stream in self.streams:
            deadline = stream.idle_deadline()
            if deadline is not None:
                deadlines.append(deadline)
            deadline = stream.passthrough.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        for sink in self._unique_sinks():
            deadline = sink.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _read(self, stream: _Stream, now: float) -> bool:
        """One read of the child's output: passed through, framed. Returns False at its end."""
        try:
            data = os.read(stream.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            if not (stream.tty and exc.errno == errno.EIO):  # EIO: every descriptor of the terminal is closed
                self.note("WARNING", f"reading the child's {stream.name} failed ({describe_os_error(exc)}): treated "
                          "as its end", stream=stream.name)
            data = b""
        if not data:
            self._close_stream(stream, now)
            return False
        stream.passthrough.push(data, now)
        if stream.framer is not None and stream.sink is not None:
            stream.sink.submit(stream.framer.feed(data, now))
        return True

    def _read_stdin(self, now: float) -> None:
        """Our stdin (a terminal) to the child's terminal; at its end, the terminal's EOF character."""
        term = self._terminal
        assert term is not None
        try:
            data = os.read(term.stdin, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: we run in the background of a shell (TTIN is blocked): wait for the CONT of `fg`
            term.stdin_paused = True
            return
        if data:
            term.keys.push(data, now)
            return
        term.keys.push(term.eof, now)  # our terminal hung up
        self._watch(("stdin", -1), term.stdin, selectors.EVENT_READ, False)
        if term.stdin > 2:
            os.close(term.stdin)
        term.stdin = -1

    def _close_stream(self, stream: _Stream, now: float) -> None:
        if not stream.open:
            return
        stream.open = False
        self._watch(("read", stream.index), stream.fd, selectors.EVENT_READ, False)
        os.close(stream.fd)
        if stream.framer is not None and stream.sink is not None:
            stream.sink.submit(stream.framer.close(now))

    def _signals(self, now: float) -> None:
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
        if self.state is not State.RUNNING:
            # The child is gone and we are draining: a TERM/INT/QUIT asks us to stop now.
            if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) and self._drain_deadline is not None:
                self._drain_deadline = min(self._drain_deadline, now)
                self._stop_now = True
            return
        sent = sig
        if sig in JOB_CONTROL_SIGNALS and self.opts.signal_group:
            # The child's session is not ours, so its process group is orphaned and the kernel would discard these:
            # stop it for real (dumb-init's rule); the CONT that resumes us resumes it.
            sent = signal.SIGSTOP
        try:
            if self.opts.signal_group:
                os.killpg(self.child_pid, sent)
            else:
                os.kill(self.child_pid, sent)
        except ProcessLookupError:
            return
        except OSError as exc:
            self.note("WARNING", f"could not forward {signal_name(sig)} to the child: {describe_os_error(exc)}",
                      signal=signal_name(sig))
            return
        if sig != signal.SIGWINCH:
            target = "process group" if self.opts.signal_group else "pid"
            how = f" as {signal_name(sent)}" if sent != sig else ""
            fields: dict[str, Any] = {"signal": signal_name(sig)}
            if sender:
                fields["sender_pid"] = sender
            self.note("INFO", f"forwarded {signal_name(sig)}{how} to the child ({target} {self.child_pid})",
                      **fields)
        self._forwarded.append(sig)
        if sig in KILL_AFTER_TRIGGERS and self.opts.kill_after is not None and self._kill_at is None:
            self._kill_at = now + self.opts.kill_after
            self._kill_trigger = sig
        if sig in JOB_CONTROL_SIGNALS:
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
            if pid == self.child_pid and self.state is State.RUNNING:
                now = time.monotonic()
                self.child_status = status
                if self.child is not None:
                    self.child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
                self._kill_at = None
                self._enter(State.DRAINING, "the child exited")
                self._drain_deadline = now + self.opts.drain_timeout
                if self.opts.signal_group:
                    self._signal_leftovers(signal.SIGTERM, now)
            else:
                self.orphans_reaped += 1

    def _signal_leftovers(self, sig: int, now: float) -> None:
        """``--signal-group``, the child exited: what it left in its process group gets TERM (dumb-init's rule),
        and KILL ``--kill-after`` seconds later if any of it is still alive. Each step is a record."""
        left = process_group_members(self.child_pid)
        if left:
            try:
                os.killpg(self.child_pid, sig)
            except ProcessLookupError:
                left = []
            except OSError as exc:
                self.note("WARNING", f"could not send {signal_name(sig)} to what the child left in its process group: "
                          f"{describe_os_error(exc)}", left_in_group=left)
                left = []
        self._group_left = bool(left)
        self._group_check_at = now + GROUP_POLL_INTERVAL if left else None
        if not left:
            return
        count = f"{len(left)} process{'es' if len(left) > 1 else ''}"
        if sig == signal.SIGTERM:
            self.note("INFO", f"the child exited: sent SIGTERM to the {count} it left in its process group "
                      "(--signal-group)", left_in_group=left, signal="SIGTERM")
            if self.opts.kill_after is not None:
                self._group_kill_at = now + self.opts.kill_after
                assert self._drain_deadline is not None
                self._drain_deadline = max(self._drain_deadline, self._group_kill_at + self.opts.drain_timeout)
        else:
            self.note("WARNING", f"{count} the child left in its process group still alive "
                      f"{self.opts.kill_after:g}s after SIGTERM (--kill-after): sent SIGKILL", left_in_group=left,
                      signal="SIGKILL")

    def _tick(self, now: float) -> None:
        """Timers: idle flushes, stuck readers, kill-after, the group's leftovers, drain end; then write what the
        file sinks hold."""
        for stream in self.streams:
            if stream.held != stream.passthrough.full:
                stream.held = not stream.held
                if not stream.held and stream.framer is not None:
                    stream.framer.restart_idle_clock(now)  # read again: idle time counts from now
            deadline = stream.idle_deadline()
            if deadline is not None and deadline <= now and stream.sink is not None:
                stream.sink.submit(stream.framer.flush_idle(now))
            stream.passthrough.check(now)
        if self._kill_at is not None and now >= self._kill_at and self.state is State.RUNNING:
            self._kill_at = None
            try:
                if self.opts.signal_group:
                    os.killpg(self.child_pid, signal.SIGKILL)
                else:
                    os.kill(self.child_pid, signal.SIGKILL)
                self.note("WARNING", f"the child was still alive {self.opts.kill_after:g}s after "
                          f"{signal_name(self._kill_trigger)} (--kill-after): sent SIGKILL", signal="SIGKILL")
            except ProcessLookupError:
                pass
        if self._group_kill_at is not None and now >= self._group_kill_at:
            self._group_kill_at = None
            self._signal_leftovers(signal.SIGKILL, now)
        elif self._group_check_at is not None and now >= self._group_check_at:
            self._group_left = bool(process_group_members(self.child_pid))
            self._group_check_at = now + GROUP_POLL_INTERVAL if self._group_left else None
        if self.state is State.DRAINING:
            self._drain(now)
        for sink in self._unique_sinks():
            sink.flush(now)

    def _drain(self, now: float) -> None:
        """After the child exited: done when its outputs are closed, passthrough has delivered (or its reader is
        stuck) and, as a reaper, adopted orphans and (``--signal-group``) the group's leftovers are gone. At the
        drain deadline the outputs are read one last time and closed, and what was still open or running is said."""
        if self._drain_deadline is not None and now >= self._drain_deadline and not self._drain_ended:
            self._end_drain(now)
        outputs_done = not any(s.open for s in self.streams)
        passthrough_done = self._stop_now or not any(s.passthrough.wants_write and not s.passthrough.stuck
                                                     for s in self.streams)
        # As a reaper, adopted orphans (vLLM's engine, a resource tracker) are waited for too, so they are reaped
        # here instead of ending up as zombies of whoever adopts them after we exit.
        waiting = (self._children_left or self._group_left) and not self._drain_ended
        if outputs_done and passthrough_done and not waiting:
            self._enter(State.EXITED, "drained" if not self._drain_ended else "the drain time ran out")

    def _end_drain(self, now: float) -> None:
        self._drain_ended = True
        held = [stream.name for stream in self.streams if stream.open and not self._read_rest(stream, now)]
        for stream in self.streams:
            self._close_stream(stream, now)
        timeout = f"{self.opts.drain_timeout:g}s (--drain-timeout)"
        if held:
            self.note("WARNING", f"the child exited but its {' and '.join(held)} {'is' if len(held) == 1 else 'are'} "
                      f"still held open by another process (a background or grandchild process?): stopped reading "
                      f"after {timeout}", held_open=held)
        elif self._group_left:
            self.note("WARNING", f"processes the child left in its process group are still running after {timeout}: "
                      "exiting without them", left_in_group=process_group_members(self.child_pid))
        elif self._children_left:
            self.note("WARNING", f"the child exited but orphaned processes it left are still running after {timeout}: "
                      "exiting without them", orphans_left=True)

    def _read_rest(self, stream: _Stream, now: float) -> bool:
        """Read what the child's output still holds (at most a pipe's worth and a read; passthrough queues it
        beyond its bound). True when its end was reached, False when it is still held open."""
        budget = PIPE_SIZE + READ_CHUNK
        while budget > 0:
            try:
                data = os.read(stream.fd, READ_CHUNK)
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError:
                return True
            if not data:
                return True
            budget -= len(data)
            stream.passthrough.push(data, now, force=True)
            if stream.framer is not None and stream.sink is not None:
                stream.sink.submit(stream.framer.feed(data, now))
        return False

    def _finish(self) -> int:
        """The child exited and the pipes are drained (or the wait ran out): last records, exit status."""
        now = time.monotonic()
        for stream in self.streams:
            self._close_stream(stream, now)
            stream.passthrough.abandon()
        status = self.child_status if self.child_status is not None else 0
        code = os.waitstatus_to_exitcode(status)
        fields: dict[str, Any] = {"child_pid": self.child_pid}
        if code < 0:
            sig = -code
            exit_status = 128 + sig
            level = "INFO" if sig in self._forwarded or (sig == signal.SIGKILL and self._forwarded) else "ERROR"
            message = f"the child (pid {self.child_pid}) was killed by {signal_name(sig)}: exit status {exit_status}"
            fields.update(signal=signal_name(sig), exit_code=exit_status)
        else:
            exit_status = code
            level = "INFO" if code == 0 else "ERROR"
            message = f"the child (pid {self.child_pid}) exited with code {code}"
            fields["exit_code"] = code
        if self.orphans_reaped:
            fields["orphans_reaped"] = self.orphans_reaped
        framers = [stream.framer for stream in self.streams if stream.framer is not None]
        if framers:  # which framer path ran (the C one is meant to, unless MLOPS_LOG_SPEEDUPS=0 or not built)
            fields["framer_chunks"] = {path: sum(f.paths[path] for f in framers) for path in framers[0].paths}
        self.note(level, message, **fields)
        self._finish_files()
        return exit_status

    def _finish_files(self) -> None:
        """One last write of everything queued; what still cannot be written is reported on stderr."""
        now = time.monotonic()
        for sink in self._unique_sinks():
            if not sink.flush(now, force=True):
                dropped = sink.loss.records
                say(f"could not write {sink.path} ({sink.error}) at exit: {sink.pending_bytes} bytes of records "
                     f"lost{f', after {dropped} lines dropped earlier' if dropped else ''}")
            sink.close()

