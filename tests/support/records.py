"""Reading what was written to disk: the package's own test helpers (:mod:`mlops_logging.testing`), plus raw lines."""

from __future__ import annotations

from pathlib import Path

from mlops_logging.testing import assert_valid, read_records

__all__ = ["assert_valid", "read_lines", "read_records"]


def read_lines(path: Path) -> list[bytes]:
    """The file's lines as bytes, split on b"\\n" only (a JSON record never contains a raw newline)."""
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} does not end with a newline: {data[-80:]!r}"
    return data.split(b"\n")[:-1]
