"""The process-wide destination of records: the log file (JSON or text) and the console.

Both the structlog chain and the stdlib handler call ``current().emit`` with a schema dict. Keeping one mutable
:class:`Output` (replaced by ``configure_logging``) lets loggers cached before a reconfiguration follow it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._console import Console
from ._records import format_timestamp, render_json, unrenderable_record
from ._sink import Loss, SafeWriter

__all__ = ["Output", "current", "install", "current_service", "current_pid"]


@dataclass
class Output:
    """Where records go: ``writer`` (may be None when the file could not be opened) and ``console``."""

    service: str
    writer: SafeWriter | None = None
    console: Console | None = None
    render: Callable[[Mapping[str, Any]], bytes] = render_json
    internal_errors: int = field(default=0)

    def emit(self, record: Mapping[str, Any]) -> None:
        """Render once, write to the file and the console; never raise.

        A record that cannot be rendered is replaced by one that says so (:func:`records.unrenderable_record`).
        """
        try:
            try:
                data = self.render(record)
            except Exception as exc:  # noqa: BLE001 - a value no renderer can take must not lose the call
                record = unrenderable_record(record, exc)
                data = self.render(record)
            if self.writer is not None:
                self.writer.write(data)
            if self.console is not None:
                self.console.write(record)
        except Exception as exc:  # noqa: BLE001 - logging never takes the service down
            self.internal_errors += 1
            if self.internal_errors == 1:
                try:
                    sys.stderr.write(f"mlops_logging: could not write a record ({exc!r}); further errors counted\n")
                except (OSError, ValueError):
                    pass

    def loss_report(self, loss: Loss) -> bytes:
        """The WARNING record that states what a failed stretch of writes lost."""
        return self.notice(f"log file write failed: {loss.message()}", loss.as_fields())

    def notice(self, message: str, fields: Mapping[str, Any]) -> bytes:
        """A WARNING record of the package itself (logger ``mlops_logging``): losses, a file it could not rotate."""
        return self.render(
            {
                "timestamp": format_timestamp(),
                "level": "WARNING",
                "message": message,
                "service": self.service,
                "logger": "mlops_logging",
                "pid": _pid,
                **fields,
            }
        )


_current: Output = Output(service=os.environ.get("MLOPS_SERVICE", "unconfigured"))
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def current() -> Output:
    """The output records go to now."""
    return _current


def current_service() -> str:
    """The configured service name."""
    return _current.service


def current_pid() -> int:
    """This process's pid, kept right across ``fork`` without a syscall per record."""
    return _pid


def install(new: Output) -> Output:
    """Make ``new`` the destination of all records; return the previous one."""
    global _current
    old, _current = _current, new
    return old
