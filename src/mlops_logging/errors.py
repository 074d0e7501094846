"""The one exception type the package raises: a setup problem, with a message naming the problem and the fix."""

from __future__ import annotations

__all__ = ["LogSetupError"]


class LogSetupError(ValueError):
    """Logging could not be set up as asked (bad setting, unusable directory, refused file).

    The message is one line that names what is wrong (the value and where it came from, or the path) and how to fix
    it. A ``ValueError``, as a bad argument is.
    """
