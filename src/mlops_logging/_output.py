"""The process-wide destination of records: the log file (JSON or text) and the console.

Both the structlog chain and the stdlib handler call ``current.emit`` with a record. Keeping one mutable
:class:`Output` (replaced by ``configure_logging``) lets loggers cached before a reconfiguration follow it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._console import Console
from ._records import THIS_PROCESS, build_record, unrenderable_record
from ._render import render_json
from ._sink import Sink

__all__ = ["Output", "current", "install"]


@dataclass
class Output:
    """Where records go: ``writer`` (the log file's sink; None when the file could not be opened) and ``console``."""

    service: str
    writer: Sink | None = None
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
                self.writer.submit(data)
            if self.console is not None:
                self.console.write(record)
        except Exception as exc:  # noqa: BLE001 - logging never takes the service down
            self.internal_errors += 1
            if self.internal_errors == 1:
                try:
                    sys.stderr.write(f"mlops_logging: could not write a record ({exc!r}); further errors counted\n")
                except (OSError, ValueError):
                    pass

    def notice(self, message: str, fields: Mapping[str, Any]) -> bytes:
        """A WARNING record of the package itself (logger ``mlops_logging``): losses, a file it could not rotate."""
        record = build_record("WARNING", message, self.service, "mlops_logging", THIS_PROCESS, dict(fields))
        return self.render(record)


#: The output records go to now. Read it as ``_output.current`` (an attribute of this module, rebound by
#: :func:`install`; a name imported from here would keep the output of import time).
current: Output = Output(service=os.environ.get("MLOPS_SERVICE", "unconfigured"))


def install(new: Output) -> Output:
    """Make ``new`` the destination of all records; return the previous one."""
    global current
    old, current = current, new
    return old
