"""Safe log files: whole-record appends, rotation awareness, size rotation across processes, no symlinks.

Design (the same as nginx's and s6-log's): the file is opened ``O_APPEND`` so each record is one ``write()`` that the
kernel places atomically at the end, whatever other processes (gunicorn workers, pool children) do. The descriptor
*number* never changes for the life of a :class:`LogFile`: a reopen swaps the file underneath it with ``dup2``, so a
thread writing concurrently never hits a closed or reused descriptor. Once a second at most the path's inode is
compared with the open file's, which notices logrotate's rename/create or a deleted file; a ``copytruncate`` needs no
action because ``O_APPEND`` writes go to the new end with no NUL holes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
from pathlib import Path

from .errors import LogSetupError

__all__ = ["LogFile", "PartialWrite", "ensure_log_dir", "open_log_file"]

DIR_MODE = 0o750
FILE_MODE = 0o640
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def ensure_log_dir(directory: Path) -> Path:
    """Create ``directory`` (mode 0750, parents as needed) and check it is a writable directory."""
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        raise LogSetupError(f"log directory {directory} exists but is not a directory: remove it or choose "
                            "another --log-dir / MLOPS_LOG_DIR") from None
    except OSError as exc:
        raise LogSetupError(f"cannot create log directory {directory}: {exc.strerror}; create it with write "
                            "permission for this user or choose another --log-dir / MLOPS_LOG_DIR") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise LogSetupError(f"log directory {directory} is not writable by uid {os.getuid()}: fix its permissions "
                            "or choose another --log-dir / MLOPS_LOG_DIR")
    return directory


def open_log_file(path: Path) -> int:
    """Open ``path`` for appending, creating it 0640; refuse symlinks and anything but a regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LogSetupError(f"refusing to open log file {path}: it is a symlink (remove it; log files are "
                                "never opened through symlinks)") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise LogSetupError(f"refusing to open log file {path}: it is not a regular file (remove it)") from None
        raise LogSetupError(f"cannot open log file {path}: {exc.strerror}; check the directory's permissions "
                            "and free space") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise LogSetupError(f"refusing to open log file {path}: it is not a regular file (remove it)")
    return fd


class PartialWrite(OSError):
    """The disk filled in the middle of a write: ``kept`` bytes of the data (whole records) are in the file."""

    def __init__(self, errno_: int | None, strerror: str | None, *, kept: int) -> None:
        super().__init__(errno_, strerror)
        self.kept = kept


class LogFile:
    """An append-only log file that survives logrotate, truncation, deletion and size rotation.

    ``write`` raises ``OSError`` when the kernel refuses the bytes (disk full, EIO); deciding what to do about it is
    the caller's policy (see :mod:`mlops_logging.sink`). It is safe to share between threads and across ``fork``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 0,
        backups: int = 0,
        check_interval: float = 1.0,
        exclusive: bool = False,
    ) -> None:
        self.path = Path(path)
        self.exclusive = exclusive  # the only writer of this file: a record the disk cut short is trimmed off
        self.max_bytes = max_bytes
        self.backups = backups
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._fd = open_log_file(self.path)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        # Other processes grow the file too: with size rotation on, re-read its real size this often (bytes of ours).
        self._stat_every = max(4096, max_bytes // 64) if max_bytes else 0
        self._since_stat = 0
        self._next_check = time.monotonic() + check_interval
        self._torn = False  # a short write left a partial line: start the next write on a fresh line
        self._closed = False

    # -- writing --------------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole records) with one ``write()``; reopen or rotate first when due.

        Raises ``OSError`` when nothing was written, :class:`PartialWrite` when the disk filled mid-way.
        """
        if time.monotonic() >= self._next_check or (self.max_bytes and self._size >= self.max_bytes):
            self._maintain()
        prefix = 0
        if self._torn:
            data = b"\n" + data
            prefix = 1
        written = self._write(self._fd, data)
        if written != len(data):
            self._finish_short_write(data, written, prefix)
        self._torn = False
        self._size += written
        if self._stat_every:
            self._since_stat += written
            if self._since_stat >= self._stat_every:
                self._since_stat = 0
                self._size = os.fstat(self._fd).st_size

    _write = staticmethod(os.write)  # the one syscall; tests replace it to play a disk that fills mid-write

    def _finish_short_write(self, data: bytes, written: int, prefix: int) -> None:
        """A short write means the disk filled mid-record: try the rest, else leave no torn record behind.

        An ``exclusive`` file (one writer: logwrap) is truncated back to its last whole record; a shared one cannot
        be (another process may have appended since), so the next write starts on a fresh line instead.
        """
        total = written
        try:
            while total < len(data):
                n = self._write(self._fd, memoryview(data)[total:])
                self._size += n
                total += n
            return
        except OSError as exc:
            kept = data.rfind(b"\n", 0, total) + 1  # bytes of whole records (and the fresh-line prefix) on disk
            self._torn = True
            if self.exclusive and kept < total:
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - (total - kept))
                    self._size -= total - kept
                    self._torn = False
                except OSError:
                    pass
            raise PartialWrite(exc.errno, exc.strerror, kept=max(kept - prefix, 0)) from None

    def fileno(self) -> int:
        """The descriptor number; it stays the same across reopens."""
        return self._fd

    # -- rotation awareness ---------------------------------------------------------------------------------------

    def _maintain(self) -> None:
        """Reopen when the path no longer names our file; rotate when over ``max_bytes``."""
        with self._lock:
            self._next_check = time.monotonic() + self.check_interval
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                self._reopen()
                return
            if (st.st_dev, st.st_ino) != self._ident:
                self._reopen()
                return
            self._size = st.st_size
            if self.max_bytes and self._size >= self.max_bytes and self.backups > 0:
                self._rotate()

    def reopen(self) -> None:
        """Reopen the path now (gunicorn ``USR1``, logrotate ``postrotate``)."""
        with self._lock:
            self._reopen()

    def _reopen(self) -> None:
        try:
            new_fd = open_log_file(self.path)
        except LogSetupError as exc:
            if self.path.parent.exists():
                raise OSError(errno.EIO, str(exc)) from None
            # The whole log directory was removed (a cleanup job, `rm -rf logs/`): recreate it once.
            try:
                ensure_log_dir(self.path.parent)
                new_fd = open_log_file(self.path)
            except LogSetupError as again:
                raise OSError(errno.ENOENT, str(again)) from None
        try:
            os.dup2(new_fd, self._fd, inheritable=False)
        finally:
            os.close(new_fd)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        self._torn = False

    def _rotate(self) -> None:
        """Size rotation ``f -> f.1 -> f.2 ...`` under an exclusive ``flock``, so one process of many rotates."""
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        lock_fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != self._ident:
                self._reopen()  # another process rotated while we waited for the lock
                return
            if st.st_size < self.max_bytes:
                self._size = st.st_size
                return
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if os.path.lexists(older):
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            try:
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            except FileNotFoundError:
                pass  # an external logrotate moved it between our lstat and now: it is rotated either way
            self._reopen()
        finally:
            os.close(lock_fd)  # closing releases the flock

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the descriptor; further writes raise ``OSError(EBADF)``."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LogFile({str(self.path)!r}, fd={self._fd})"
