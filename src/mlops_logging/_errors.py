"""The one exception type the package raises, and the one way it describes an ``OSError`` in a message."""

from __future__ import annotations

import os

__all__ = ["LogSetupError", "describe_os_error"]


class LogSetupError(ValueError):
    """Logging could not be set up as asked (bad setting, unusable directory, refused file).

    The message is one line that names what is wrong (the value and where it came from, or the path) and how to fix
    it. A ``ValueError``, as a bad argument is.
    """


# Shown (in tracebacks too) under its public name, as httpx does for its exceptions.
LogSetupError.__module__ = "mlops_logging"


def describe_os_error(exc: OSError) -> str:
    """``[Errno 28] No space left on device``: the text every message of the package gives for an ``OSError``
    (the error's own text when it has no errno)."""
    if exc.errno:
        return f"[Errno {exc.errno}] {exc.strerror or os.strerror(exc.errno)}"
    return str(exc) or type(exc).__name__
