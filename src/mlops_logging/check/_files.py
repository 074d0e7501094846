"""logcheck's file side: which files belong to a service, and reading the end of one without reading the rest.

A service S writes ``S.log`` (or, under ``logwrap --split-streams``, ``S.stdout.log`` and ``S.stderr.log``); size
rotation and logrotate leave ``S.log.1``, ``S.log.2.gz``, ``S.log-20261126``... beside them. Files are opened with
``O_NOFOLLOW | O_NONBLOCK``: a symlink is reported, never followed, and a FIFO never blocks the audit.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .._errors import describe_os_error

__all__ = ["LogPath", "Listing", "TailRead", "list_service_files", "read_tail", "open_log"]

#: The streams a service's files carry: ``None`` for ``S.log``, else logwrap's ``--split-streams`` names.
STREAMS: tuple[str | None, ...] = (None, "stdout", "stderr")
# "<base>" then an optional rotation suffix: ".1", ".2.gz", "-20261126", "-20261126.gz", ".gz".
_ROTATION = r"(?P<rot>(?:\.[0-9]+|-[0-9][0-9_-]*)?(?:\.gz)?)"


@dataclass(frozen=True)
class LogPath:
    """One file of a service: its path, which stream it holds, whether it is a rotated (older) file."""

    path: Path
    stream: str | None
    rotated: bool
    compressed: bool
    size: int
    mtime: float
    kind: str  # "file", "symlink" or "special" (FIFO, socket, device, directory)

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


@dataclass
class Listing:
    """What a service directory holds: its log files by stream (newest first) and anything else found there.

    ``exists`` without ``files`` and with an ``error``: the directory is there but cannot be listed.
    """

    directory: Path
    exists: bool
    error: str = ""
    files: list[LogPath] | None = None
    others: list[str] | None = None

    def family(self, stream: str | None) -> list[LogPath]:
        """The files of one stream: the current one first, then rotated ones, newest first."""
        return [f for f in self.files or () if f.stream == stream]


_ROTATION_RE = re.compile(r"\.log" + _ROTATION + r"\Z")


def _file_re(service: str) -> re.Pattern[str]:
    base = re.escape(service)
    return re.compile(rf"(?P<base>{base}(?:\.(?P<stream>stdout|stderr))?\.log){_ROTATION}\Z")


def list_service_files(directory: Path, service: str) -> Listing:
    """Every file of ``service`` in ``directory`` (lstat only: nothing is opened, no symlink followed)."""
    try:
        st = os.stat(directory)  # the directory itself may be a symlink (a mount point, a volume): followed
    except FileNotFoundError:
        return Listing(directory, exists=False)
    except OSError as exc:
        return Listing(directory, exists=False, error=describe_os_error(exc))
    if not stat.S_ISDIR(st.st_mode):
        return Listing(directory, exists=False, error="is not a directory")
    pattern = _file_re(service)
    files: list[LogPath] = []
    others: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        return Listing(directory, exists=True, error=f"cannot be listed ({describe_os_error(exc)})")
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            if not entry.name.startswith("."):  # .S.log.lock and other hidden helpers are ours or nobody's
                others.append(entry.name)
            continue
        try:
            lst = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed between listing and lstat: rotated away, not ours to report
        kind = "symlink" if stat.S_ISLNK(lst.st_mode) else "file" if stat.S_ISREG(lst.st_mode) else "special"
        rot = match.group("rot")
        files.append(LogPath(path=Path(entry.path), stream=match.group("stream"), rotated=bool(rot) and rot != ".gz",
                             compressed=rot.endswith(".gz"), size=lst.st_size, mtime=lst.st_mtime, kind=kind))
    files.sort(key=lambda f: (STREAMS.index(f.stream), _age_rank(f.path.name[len(service):])))
    return Listing(directory, exists=True, files=files, others=sorted(others))


def _age_rank(suffix: str) -> tuple[int, int]:
    """Sort key, newest first: the current file, then ``.1``, ``.2``... (logrotate's numbers), then dated ones by
    date, newest first."""
    rot = _ROTATION_RE.search(suffix)
    text = rot.group("rot").removesuffix(".gz") if rot else ""
    if not text:
        return (0, 0) if not suffix.endswith(".gz") else (1, 0)
    if text.startswith("."):
        return (1, int(text[1:]))
    return (2, -int("".join(ch for ch in text if ch.isdigit()) or 0))


@dataclass
class TailRead:
    """The last bytes of a file: ``data`` starts at ``offset`` of a file of ``size`` bytes."""

    data: bytes
    offset: int
    size: int
    mtime: float


class NotAuditable(Exception):
    """A file that cannot be read as a log: a symlink, a FIFO or device, unreadable. ``str()`` says why."""


def open_log(path: Path) -> tuple[int, os.stat_result]:
    """Open a log file read-only without following a symlink or blocking on a FIFO; return ``(fd, fstat)``.

    Raises :class:`NotAuditable` with the reason.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAuditable("is a symlink (not followed: a log file is never a link)") from None
        raise NotAuditable(f"cannot be opened ({describe_os_error(exc)})") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise NotAuditable(f"cannot be read ({describe_os_error(exc)})") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotAuditable("is not a regular file (a FIFO, socket, device or directory)")
    return fd, st


def read_tail(path: Path, max_bytes: int) -> TailRead:
    """The last ``max_bytes`` of ``path`` with one ``pread`` (the cost does not depend on the file's size)."""
    fd, st = open_log(path)
    try:
        size = st.st_size
        offset = max(0, size - max_bytes)
        chunks: list[bytes] = []
        want, at = size - offset, offset
        while want > 0:
            try:
                chunk = os.pread(fd, want, at)
            except OSError as exc:
                raise NotAuditable(f"cannot be read ({describe_os_error(exc)})") from None
            if not chunk:
                break  # truncated while we read (copytruncate): what we have is what there is
            chunks.append(chunk)
            want -= len(chunk)
            at += len(chunk)
        return TailRead(b"".join(chunks), offset, size, st.st_mtime)
    finally:
        os.close(fd)
