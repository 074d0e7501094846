"""Interactive use (``docker run -it IMAGE bash`` with logwrap as the entrypoint): when logwrap's stdin and stdout are
a terminal, the child gets a pseudo-terminal of its own (prompt, job control, window size), its output is passed
through and logged as ``stdout``, and logwrap's terminal is put back as it was. The terminal here is a real one made
with ``os.openpty()``, as dumb-init's tests make theirs.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.container import can_contain, not_contained_reason
from wrap_helpers import child_records, script, supervised, wrap_cmd, wrapper_records

#: As a child of the test and as PID 1 of a new PID namespace (a container's entrypoint under `docker run -it`).
CONTAINED = pytest.mark.parametrize("contained", [False, True], ids=["child-of-the-test", "pid-1"])
PID_NAMESPACE = ["unshare", "--fork", "--pid", "--mount-proc"]


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The user's side of a real terminal: what logwrap prints, read as it comes; keystrokes written."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen = b""

    def _read_some(self, deadline: float) -> None:
        if select.select([self.master], [], [], max(0.0, min(0.1, deadline - time.monotonic())))[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave descriptor is closed
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed; it shows {self.seen!r}")
            self.seen += chunk

    def expect(self, needle: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen on the terminal within {timeout}s; it shows {self.seen!r}")
            self._read_some(deadline)
        return self.seen

    def at_prompt(self, prompt: bytes, timeout: float = 20.0) -> None:
        """Wait until the shell shows its prompt again (typed ahead, a command would be echoed before it)."""
        deadline = time.monotonic() + timeout
        while not self.seen.endswith(prompt):
            if time.monotonic() > deadline:
                raise AssertionError(f"no prompt {prompt!r} within {timeout}s; the terminal shows {self.seen!r}")
            self._read_some(deadline)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)


def quiet(fd: int) -> None:
    """No echo and no output processing on the terminal (dumb-init's ``ttyflags``): it shows the child's bytes only."""
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def take_the_terminal() -> None:
    """In the child, after ``setsid``: the terminal on stdin becomes its controlling terminal (as ``docker run -it``
    gives the container's first process one), so the kernel sends it SIGWINCH when the window is resized."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@contextmanager
def on_a_terminal(logs: Path, *args: str, command: list[str], stdout_too: bool = True, hung_up: bool = False,
                  rows: int = 33, cols: int = 97, echo: bool = True, controlling: bool = False,
                  contained: bool = False) -> Iterator[tuple[subprocess.Popen[bytes], Terminal, int]]:
    """logwrap ARGS -- COMMAND with a new terminal as stdin, stdout (and stderr); ``controlling``: in a session of its
    own with that terminal as its controlling terminal; ``contained``: as PID 1 of a new PID namespace. On leaving,
    the terminal must be as logwrap found it (out of raw mode)."""
    if contained and not can_contain():
        pytest.skip(not_contained_reason())
    master, slave = os.openpty()
    set_size(slave, rows, cols)
    if not echo:
        quiet(slave)
    before = termios.tcgetattr(slave)
    out = slave if stdout_too else subprocess.PIPE
    argv = [*(PID_NAMESPACE if contained else []), *wrap_cmd(logs, *args, command=command)]
    session = {"start_new_session": True, "process_group": None, "preexec_fn": take_the_terminal} if controlling else {}
    try:
        with supervised(argv, stdin=slave, stdout=out, stderr=slave, **session) as proc:
            yield proc, Terminal(master), slave
            assert proc.wait(timeout=30) is not None
        if not hung_up:
            assert termios.tcgetattr(slave) == before, "logwrap must put its terminal back as it found it"
    finally:
        os.close(slave)
        os.close(master)


def test_an_interactive_shell_gets_a_terminal_with_prompt_job_control_and_window_size(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with on_a_terminal(logs, "--service", "shell", command=["sh", "-i"]) as (proc, term, _slave):
        prompt = b"# " if os.geteuid() == 0 else b"$ "
        term.at_prompt(prompt)  # dash prints its prompt only on a terminal
        term.type(b"echo hi-$((6*7)) flags=$-\n")
        term.expect(b"hi-42 flags=")
        term.at_prompt(prompt)
        term.type(b"stty size\n")
        term.expect(b"33 97\r\n")
        term.at_prompt(prompt)
        set_size(term.master, 40, 120)  # the user resizes the window: logwrap gets SIGWINCH, the child the new size
        os.kill(proc.pid, 28)  # SIGWINCH, as the kernel sends it to the foreground job of a real terminal
        time.sleep(0.2)
        term.type(b"stty size\n")
        term.expect(b"40 120\r\n")
        term.at_prompt(prompt)
        term.type(b"exit 3\n")
        assert proc.wait(timeout=30) == 3  # the exit status passes through
    flags = term.seen.split(b"hi-42 flags=")[1].split(b"\r\n")[0]
    assert b"i" in flags and b"m" in flags, flags  # interactive, with job control (a controlling terminal)
    assert b"job control turned off" not in term.seen
    messages = [r["message"] for r in child_records(logs / "shell.log")]
    assert "hi-42 flags=" + flags.decode() in messages and "33 97" in messages and "40 120" in messages
    assert {r["stream"] for r in child_records(logs / "shell.log")} == {"stdout"}
    started = wrapper_records(logs / "shell.log")[0]
    assert started["tty"] is True
    assert wrapper_records(logs / "shell.log")[-1]["exit_code"] == 3


def test_keystrokes_reach_the_child_raw_and_ctrl_d_is_its_end_of_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with on_a_terminal(logs, "--service", "cat", command=["cat"]) as (proc, term, _slave):
        term.type(b"typed line\n")
        term.expect(b"typed line\r\ntyped line\r\n")  # the child's terminal echoes, cat repeats
        term.type(b"\x04")  # Ctrl-D: our terminal is raw, so it goes to the child's, which makes it EOF
        assert proc.wait(timeout=30) == 0
    assert [r["message"] for r in child_records(logs / "cat.log")] == ["typed line", "typed line"]


def test_the_end_of_our_stdin_is_passed_on_as_the_childs_end_of_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with on_a_terminal(logs, "--service", "hup", command=["cat"], hung_up=True) as (proc, term, _slave):
        term.type(b"last words\n")
        term.expect(b"last words\r\nlast words\r\n")
        os.close(term.master)  # the terminal goes away: our stdin reads end of file
        term.master = os.open(os.devnull, os.O_RDONLY)  # (closed again by on_a_terminal)
        assert proc.wait(timeout=30) == 0  # cat got its EOF and exited
    assert "last words" in [r["message"] for r in child_records(logs / "hup.log")]


def test_only_stdin_on_a_terminal_keeps_pipes_and_the_inherited_stdin(tmp_path: Path) -> None:
    """``logwrap -- CMD | tee`` from a shell: the child's output is a pipe as without a terminal."""
    logs = tmp_path / "logs"
    check = ["sh", "-c", "test -t 0 && echo stdin-is-a-tty; test -t 1 || echo stdout-is-not"]
    with on_a_terminal(logs, "--service", "half", command=check, stdout_too=False) as (proc, _term, _slave):
        out, _ = proc.communicate(timeout=30)
    assert out == b"stdin-is-a-tty\nstdout-is-not\n"
    assert wrapper_records(logs / "half.log")[0]["tty"] is False


def test_no_tty_keeps_pipes_even_on_a_terminal(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    check = ["sh", "-c", "test -t 1 || echo stdout-is-a-pipe"]
    with on_a_terminal(logs, "--service", "notty", "--no-tty", command=check) as (proc, term, _slave):
        term.expect(b"stdout-is-a-pipe\r\n")  # (our terminal, not raw: its own output processing adds the CR)
        assert proc.wait(timeout=30) == 0
    assert wrapper_records(logs / "notty.log")[0]["tty"] is False


#: What is typed, and what tac prints: dumb-init's test_tty, and a last line ended by ^D instead of a newline (the first
#: ^D hands "3" to tac, the second is its end of file).
TYPED_AHEAD = {"lines": (b"1\n2\n3\n\x04\x04", b"3\n2\n1\n", ["3", "2", "1"]),
               "last-line-ended-by-ctrl-d": (b"1\n2\n3\x04\x04", b"32\n1\n", ["32", "1"])}


@CONTAINED
@pytest.mark.parametrize("typed", sorted(TYPED_AHEAD))
def test_lines_typed_before_logwrap_reads_and_ctrl_d_reach_tac_which_prints_them_reversed(
        tmp_path: Path, typed: str, contained: bool) -> None:
    """dumb-init's test_tty: ``1 2 3`` and ^D ^D are typed at once, while our terminal is still cooked (logwrap is
    starting), so the kernel holds them as lines and two ends of file; tac gets the lines and its end of file, prints
    them reversed and exits 0, and our terminal is put back out of raw mode."""
    keys, shown, logged = TYPED_AHEAD[typed]
    logs = tmp_path / "logs"
    with on_a_terminal(logs, "--service", "tac", command=["tac"], echo=False, controlling=True,
                       contained=contained) as (proc, term, _slave):
        term.type(keys)
        term.expect(shown)
        assert proc.wait(timeout=30) == 0
    assert term.seen == shown  # (no echo and no output processing: only tac's bytes)
    assert [r["message"] for r in child_records(logs / "tac.log")] == logged
    records = wrapper_records(logs / "tac.log")
    assert records[0]["tty"] is True and records[0]["pid"] == (1 if contained else proc.pid)
    assert records[-1]["exit_code"] == 0


INTERRUPTIBLE = """\
    import signal, sys
    def interrupted(signum, frame):
        print("the child got SIGINT", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGINT, interrupted)
    print("ready", flush=True)
    while True:
        signal.pause()
"""


@CONTAINED
def test_ctrl_c_reaches_the_child_through_its_own_terminal(tmp_path: Path, contained: bool) -> None:
    """^C typed on our (raw) terminal is a byte for the child's terminal, whose line discipline sends SIGINT to the
    child's foreground job: not a signal logwrap receives or forwards."""
    logs = tmp_path / "logs"
    child = script(tmp_path, "intr.py", INTERRUPTIBLE)
    with on_a_terminal(logs, "--service", "intr", command=child, controlling=True,
                       contained=contained) as (proc, term, _slave):
        term.expect(b"ready\r\n")
        term.type(b"\x03")
        term.expect(b"the child got SIGINT\r\n")
        assert proc.wait(timeout=30) == 0
    # The child's terminal echoed the ^C (ECHOCTL) before the child's line.
    assert [r["message"] for r in child_records(logs / "intr.log")] == ["ready", "^Cthe child got SIGINT"]
    records = wrapper_records(logs / "intr.log")
    assert not [r for r in records if "SIGINT" in r["message"]]  # logwrap got no SIGINT
    assert records[-1]["exit_code"] == 0


SIZES = """\
    import signal, subprocess
    def size():
        return subprocess.run(["stty", "size"], capture_output=True, text=True, check=True).stdout.strip()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})
    print("size at start", size(), flush=True)
    signal.sigwait({signal.SIGWINCH})
    print("size after SIGWINCH", size(), flush=True)
"""


@CONTAINED
def test_resizing_our_terminal_resizes_the_childs_which_gets_sigwinch(tmp_path: Path, contained: bool) -> None:
    """The user resizes the window: TIOCSWINSZ on our terminal, and the kernel sends SIGWINCH to its foreground job
    (logwrap); logwrap gives the child's terminal that size, and the kernel signals the child."""
    logs = tmp_path / "logs"
    child = script(tmp_path, "sizes.py", SIZES)
    with on_a_terminal(logs, "--service", "sizes", command=child, controlling=True, contained=contained,
                       rows=33, cols=97) as (proc, term, _slave):
        term.expect(b"size at start 33 97\r\n")
        set_size(term.master, 40, 120)  # no kill() here: the kernel sends the SIGWINCH
        term.expect(b"size after SIGWINCH 40 120\r\n")
        assert proc.wait(timeout=30) == 0
    messages = [r["message"] for r in child_records(logs / "sizes.log")]
    assert messages == ["size at start 33 97", "size after SIGWINCH 40 120"]
