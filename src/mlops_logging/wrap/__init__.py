"""logwrap: the container entrypoint shim that runs a server, passes its output through and tees it into log files.

``logwrap [options] [--] CMD [ARGS...]`` (or ``python -m mlops_logging.wrap ...``). Modelled on tini, dumb-init and
s6-log: one event loop (``selectors`` over the child's two pipes or its pseudo-terminal, a signalfd, and, when they
have bytes waiting, our own stdout/stderr) with timers for idle flushes, write retries, stuck readers,
``--kill-after`` and the drain deadline; explicit states STARTING -> RUNNING -> DRAINING -> EXITED; every syscall
error handled on purpose.

Signals (tini's and dumb-init's rules): every signal a process can catch is forwarded, but CHLD (logwrap reaps); the
fault signals (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT) when sent with kill(), while a real fault of logwrap's own still
kills it; TSTP/TTIN/TTOU are forwarded, then logwrap stops itself until a CONT, which is forwarded too. The child
starts with the signal mask and dispositions logwrap was started with (an ignored signal stays ignored and is not
forwarded).

Failure policy: the child is never blocked by the log file (records are buffered up to ``--buffer-bytes`` and retried
every second, the oldest dropped and counted past the bound, the loss reported in a WARNING record once writing works)
and only slowed down by a slow passthrough reader (while 1 MiB waits for it, the child's pipe is not read); a reader
that takes nothing for ``--passthrough-timeout`` seconds is stuck: passthrough bytes are dropped and counted until it
reads again, the log file keeps every line. A failing passthrough is turned off. Records are written whole: a write
cut short by a full disk is trimmed back to the last complete record, so the file never holds a torn line.

The implementation is private: ``_cli`` (parsing, :func:`main`), ``_options`` (the parsed options), ``_command`` (the
service name), ``_supervisor`` (the loop and its states), ``_child`` (signals to the child, its exit), ``_drain`` (the
wait after it exited), ``_outputs`` (reading its outputs), ``_logfiles`` (the log files, logwrap's own records),
``_passthrough``, ``_process`` (signals, spawning, reaping), ``_tty``.
It needs the core's files, sink and records, never structlog.
"""

from __future__ import annotations

import gc as _gc

# The imports below make tens of thousands of objects and no garbage: the cyclic GC's passes over them during start-up
# were ~4% of `logwrap -- /bin/true` (docs/bench-notes/startup.md). main() freezes them once set up.
_collecting = _gc.isenabled()
_gc.disable()
from ._cli import main  # noqa: E402

if _collecting:
    _gc.enable()

__all__ = ["main"]
