"""``logcheck --probe SERVICE=URL``: send one request with a fresh ``X-Request-ID`` and wait for its record to
reach the service's log: is a request logged now, not only in the past?
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from ._files import NotAuditable, list_service_files, open_log

__all__ = ["ProbeResult", "probe"]


@dataclass
class ProbeResult:
    """One probe: the request sent, the answer, and whether (and where, how soon) its record appeared."""

    service: str
    url: str
    request_id: str
    ok: bool
    status_code: int | None = None
    found_in: str | None = None
    after_s: float | None = None
    error: str | None = None


def _positions(directory: Path, service: str) -> dict[int, tuple[Path, int]]:
    """inode -> (path, size) of the service's uncompressed regular files."""
    out = {}
    for lp in list_service_files(directory, service).files or ():
        if lp.kind == "file" and not lp.compressed:
            try:
                st = os.stat(lp.path, follow_symlinks=False)
            except OSError:
                continue
            out[st.st_ino] = (lp.path, st.st_size)
    return out


def _read_from(path: Path, offset: int) -> bytes:
    try:
        fd, st = open_log(path)
    except NotAuditable:
        return b""
    try:
        if st.st_size < offset:
            offset = 0  # truncated (copytruncate): everything in it is new
        return os.pread(fd, st.st_size - offset, offset) if st.st_size > offset else b""
    except OSError:
        return b""
    finally:
        os.close(fd)


def probe(service: str, url: str, directory: Path, *, timeout: float = 5.0, poll: float = 0.05) -> ProbeResult:
    """GET ``url`` with a fresh ``X-Request-ID``; wait up to ``timeout`` s for a record with it in ``directory``.

    Only bytes written after the request are searched (a renamed file is followed by its inode, a new one read
    from its start). An HTTP error status still counts as answered: the probe checks logging, not health.
    """
    request_id = f"logcheck-probe-{uuid.uuid4().hex[:16]}"
    result = ProbeResult(service, url, request_id, ok=False)
    before = _positions(directory, service)
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"X-Request-ID": request_id, "User-Agent": "logcheck-probe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's own URL
            result.status_code = response.status
            response.read()
    except urllib.error.HTTPError as exc:
        result.status_code = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        result.error = f"request failed: {getattr(exc, 'reason', exc)}"
        return result
    needle = request_id.encode()
    deadline = started + timeout
    while True:
        for inode, (path, _size) in _positions(directory, service).items():
            offset = before[inode][1] if inode in before else 0
            if needle in _read_from(path, offset):
                result.ok, result.found_in = True, path.name
                result.after_s = round(time.monotonic() - started, 3)
                return result
        if time.monotonic() >= deadline:
            result.error = f"no record with X-Request-ID {request_id} in {directory} after {timeout:g} s"
            return result
        time.sleep(poll)
