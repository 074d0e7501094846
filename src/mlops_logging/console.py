"""The human-readable stdout line: ``<time> <LEVEL> <logger>: <message> key=value``.

Writes straight to the stdout descriptor (one ``write()`` per line, so concurrent writers never interleave inside a
line). A broken stdout (``EPIPE``, closed) turns the console off with one note on stderr; the file keeps everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from .records import render_text

__all__ = ["Console"]

_HIDDEN = ("service", "pid")  # on every record; noise on a terminal


class Console:
    """Renders records as one text line each on a stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = True
        try:
            self._fd: int | None = self.stream.fileno()
            self.stream.flush()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # a StringIO, pytest's capture...: use the stream API

    def write(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as a text line; disable the console on the first failure instead of raising."""
        if not self.enabled:
            return
        line = render_text({k: v for k, v in record.items() if k not in _HIDDEN})
        try:
            if self._fd is not None:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
            else:
                self.stream.write(line.decode("utf-8"))
                self.stream.flush()
        except BlockingIOError:
            pass  # a full non-blocking pipe: drop this console line, never block the service; the file has it
        except (OSError, ValueError) as exc:
            self.enabled = False
            try:
                sys.stderr.write(f"mlops_logging: stdout failed ({exc}); console output off, the log file continues\n")
            except (OSError, ValueError):
                pass
