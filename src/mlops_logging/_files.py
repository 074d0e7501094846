"""Safe log files: whole-record appends, rotation awareness, size rotation across processes, no symlinks.

Design (the same as nginx's and s6-log's): the file is opened ``O_APPEND`` so each record is one ``write()`` that the
kernel places atomically at the end, whatever other processes (gunicorn workers, pool children) do. The descriptor
*number* never changes for the life of a :class:`LogFile`: a reopen swaps the file underneath it with ``dup2``. Every
write holds the file's lock, so :meth:`LogFile.close` (a reconfiguration retiring the file) never closes the
descriptor while a thread is about to write to it, and the number is never reused for another file under a writer.
Once a second (and every :data:`KEEP_BYTES` written) the path's inode is compared with the open file's, which notices
logrotate's rename/create or a deleted file; what this process wrote since the last check is kept in memory until
then, so the records a deleted file swallowed are written again into the new one. A ``copytruncate`` needs no
action because ``O_APPEND`` writes go to the new end with no NUL holes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from ._errors import LogSetupError, describe_os_error
from ._locks import acquire
from ._records import Loss, loss_notice

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DIR_FIX",
    "FILE_MODE",
    "KEEP_BYTES",
    "LogFile",
    "Notice",
    "PartialWrite",
    "dir_mode_for",
    "ensure_log_dir",
    "open_log_file",
]

#: The default mode of a log file this package creates (the umask may take more away): owner and group read it.
FILE_MODE = 0o640
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: How the messages of :func:`ensure_log_dir` say to choose another directory unless the caller says otherwise.
DIR_FIX = "choose another --log-dir / MLOPS_LOG_DIR"
#: The path is checked again at least every this many bytes written, and what was written since the last check is
#: kept in memory until then: what a deleted file swallowed is written again into the new one, none lost.
KEEP_BYTES = 1 << 20
_MAX_SYMLINKS = 40  # what the kernel allows on one path (ELOOP)


def dir_mode_for(file_mode: int) -> int:
    """The mode of a log directory created for files of ``file_mode``: whoever may read the files may enter it."""
    return file_mode | 0o100 | (file_mode & 0o044) >> 2


#: Renders a WARNING record of the package (logger ``mlops_logging``) from a message and fields.
Notice = Callable[[str, "dict[str, Any]"], bytes]  # (Any is imported for the type checker only)


def ensure_log_dir(directory: Path, *, fix: str = DIR_FIX, file_mode: int = FILE_MODE) -> Path:
    """Create ``directory`` level by level (each new one :func:`dir_mode_for` ``file_mode``: 0750 by default, less
    if the umask is stricter) and check it is usable.

    Refuses, with a :class:`LogSetupError` naming the path: a component that is not a directory, and a symlink on
    the way that neither root nor this user owns (another user could point it anywhere). ``fix`` ends the messages
    with how the caller chooses another directory.
    """
    path = os.path.abspath(directory)
    dir_mode = dir_mode_for(file_mode)
    euid = os.geteuid()
    pending = [part for part in reversed(path.split("/")) if part]
    current = "/"
    links = 0
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            try:
                os.mkdir(candidate, dir_mode)  # one level at a time: parents too get it (less by the umask)
            except FileExistsError:
                pending.append(name)  # created meanwhile by another process: look again
                continue
            except OSError as exc:
                raise LogSetupError(f"cannot create log directory {directory}: {exc.strerror} ({candidate}); create "
                                    f"it with write permission for this user or {fix}") from None
            current = candidate
            continue
        except OSError as exc:
            raise LogSetupError(f"cannot use log directory {directory}: {exc.strerror} ({candidate}); {fix}") from None
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in (0, euid):
                raise LogSetupError(f"refusing log directory {directory}: {candidate} is a symlink owned by uid "
                                    f"{st.st_uid}, neither root nor this user (uid {euid}); replace it with a real "
                                    f"directory or {fix}")
            links += 1
            if links > _MAX_SYMLINKS:
                raise LogSetupError(f"cannot use log directory {directory}: too many levels of symlinks; {fix}")
            try:
                target = os.readlink(candidate)
            except OSError as exc:  # replaced between lstat and readlink: look again
                if exc.errno != errno.EINVAL:
                    raise LogSetupError(f"cannot use log directory {directory}: {exc.strerror} ({candidate}); "
                                        f"{fix}") from None
                pending.append(name)
                continue
            if target.startswith("/"):
                current = "/"
            pending.extend(part for part in reversed(target.split("/")) if part)
            continue
        if not stat.S_ISDIR(st.st_mode):
            if not pending:  # the log directory itself
                raise LogSetupError(f"log directory {directory} exists but is not a directory: remove it or {fix}")
            raise LogSetupError(f"cannot create log directory {directory}: {candidate} is not a directory; remove "
                                f"it or {fix}")
        current = candidate
    if not os.access(path, os.W_OK | os.X_OK):
        raise LogSetupError(f"log directory {directory} is not writable by uid {os.getuid()}: fix its permissions "
                            f"or {fix}")
    return directory


def open_log_file(path: Path, mode: int = FILE_MODE) -> int:
    """Open ``path`` for appending, creating it with ``mode`` (less by the umask; an existing file keeps its own);
    refuse symlinks and anything but a regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS, mode)
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


_live: weakref.WeakSet[LogFile] = weakref.WeakSet()


class LogFile:
    """An append-only log file that survives logrotate, truncation, deletion and size rotation.

    ``write`` raises ``OSError`` when the kernel refuses the bytes (disk full, EIO); deciding what to do about it is
    the caller's policy (see :mod:`mlops_logging._sink`). It is safe to share between threads and across ``fork``.
    ``notice``, when set, renders the WARNING records the file writes about itself (a rotation that cannot be done);
    without it those go to stderr only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 0,
        backups: int = 0,
        check_interval: float = 1.0,
        exclusive: bool = False,
        mode: int = FILE_MODE,
    ) -> None:
        self.path = Path(path)
        self.mode = mode  # of the files (and directories) this creates: at the start, after a rotation or a delete
        self.exclusive = exclusive  # the only writer of this file: a record the disk cut short is trimmed off
        self.max_bytes = max_bytes
        self.backups = backups
        self.check_interval = check_interval
        self.notice: Notice | None = None
        #: Held by every write (and by writers that keep state about this file, see :mod:`.sink`). Re-entrant: a
        #: signal handler that logs may interrupt a write of its own thread. Recreated in a forked child. Never waited
        #: for forever at interpreter exit (:mod:`._locks`): a daemon thread frozen while writing keeps it for good.
        self.lock = threading.RLock()
        self._fd = open_log_file(self.path, self.mode)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        # Rotation is due at this size; infinite without rotation, or while a failed rotation waits for its retry.
        self._rotate_at: float = max_bytes if max_bytes and backups > 0 else float("inf")
        self._rotate_failed = False
        self._rotate_retry = 0.0
        # Other processes grow the file too: with size rotation on, re-read its real size this often (bytes of ours).
        self._stat_every = max(4096, max_bytes // 64) if max_bytes else 0
        self._since_stat = 0
        # What this process wrote since the last check found the file at its path, to write again into the new file
        # if that one turns out deleted (None: not kept; with check_interval=0 every write checks first).
        self._kept: bytearray | None = bytearray() if check_interval > 0 else None
        self._next_check = time.monotonic() + check_interval
        self._check_at: float = self._size  # set by _checked: the size at which the next check is due
        self._checked_at = 0.0  # and when it last found the file at its path (wall clock)
        self._checked()
        self._maintaining = False
        self._torn = False  # a short write left a partial line: start the next write on a fresh line
        self._closed = False
        _live.add(self)

    # -- writing --------------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole records) with one ``write()``; reopen or rotate first when due.

        Raises ``OSError`` when nothing was written, :class:`PartialWrite` when the disk filled mid-way. After
        :meth:`close` (a record that was on its way when a reconfiguration retired the file) the path is opened for
        this one write, so the record still lands in this file and no other.
        """
        lock = self.lock
        # (acquire/release: half the cost of a `with` block on this hot path; at interpreter exit a bounded wait)
        held = lock.acquire(False) or acquire(lock)
        try:
            if self._closed:
                self._write_retired(data)
                return
            if (self._size >= self._check_at or time.monotonic() >= self._next_check) and not self._maintaining:
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
            kept = self._kept
            if kept is not None:
                kept += data  # a copy (cheaper than keeping each record's object alive)
            if self._stat_every:
                self._since_stat += written
                if self._since_stat >= self._stat_every:
                    self._since_stat = 0
                    self._size = os.fstat(self._fd).st_size
        finally:
            if held:
                lock.release()

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

    def _write_retired(self, data: bytes) -> None:
        """Append ``data`` through a descriptor of its own: the shared one was closed by :meth:`close`."""
        try:
            fd = open_log_file(self.path, self.mode)
        except LogSetupError as exc:
            raise OSError(errno.EBADF, str(exc)) from None
        try:
            view = memoryview(data)
            while view:
                view = view[self._write(fd, view):]
        finally:
            os.close(fd)

    def fileno(self) -> int:
        """The descriptor number; it stays the same across reopens."""
        return self._fd

    # -- rotation awareness ---------------------------------------------------------------------------------------

    def _checked(self) -> None:
        """The path names our file (just checked, or just opened): forget what was kept, set when to look again.

        The next check is due after ``check_interval`` seconds, at the rotation size, or once :data:`KEEP_BYTES`
        more are written: so what a deleted file swallowed is always still in memory, bounded."""
        kept_limit: float = float("inf")
        if self._kept is not None:
            self._kept.clear()
            self._checked_at = time.time()
            kept_limit = self._size + KEEP_BYTES
        self._check_at = min(self._rotate_at, kept_limit)

    def _maintain(self) -> None:
        """Reopen when the path no longer names our file; rotate when over ``max_bytes`` (the lock is held)."""
        self._maintaining = True
        try:
            now = time.monotonic()
            self._next_check = now + self.check_interval
            if self._rotate_failed and now >= self._rotate_retry:
                self._rotate_at = self.max_bytes  # try the failed rotation again
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != self._ident:
                self._replace()
                return
            self._size = st.st_size
            if self._size >= self._rotate_at:
                self._rotate()
            self._checked()
        finally:
            self._maintaining = False

    def reopen(self) -> None:
        """Reopen the path now (gunicorn ``USR1``, logrotate ``postrotate``)."""
        with self.lock:
            if not self._closed:
                self._replace()

    def _replace(self) -> None:
        """Open the file now at the path; if ours was deleted, write there again what it swallowed."""
        unlinked = os.fstat(self._fd).st_nlink == 0
        self._reopen()
        if unlinked and self._kept:
            data = bytes(self._kept)
            view = memoryview(data)
            try:
                while view:  # nothing of this process comes in between: the lock is held
                    view = view[self._write(self._fd, view):]
            except OSError as exc:  # the new file refuses too (disk full): say exactly what is lost
                written = len(data) - len(view)
                whole = data.rfind(b"\n", 0, written) + 1
                self._torn = written > whole
                loss = Loss(records=data.count(b"\n", whole), bytes=len(data) - whole, first=self._checked_at,
                            last=time.time(), error=describe_os_error(exc))
                self._say(*loss_notice(loss, self.path, cause="was deleted while open, and writing again what it "
                                                                "swallowed failed"))
            self._size += len(data) - len(view)
        self._checked()

    def _say(self, message: str, fields: dict[str, Any]) -> None:
        """A WARNING about the file itself: on stderr, and as a record in the file when ``notice`` is set."""
        try:
            sys.stderr.write(f"mlops_logging: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if self.notice is not None:
            try:
                self._size += self._write(self._fd, self.notice(message, fields))
            except OSError:
                pass  # the file refuses: stderr has it

    def _reopen(self) -> None:
        try:
            new_fd = open_log_file(self.path, self.mode)
        except LogSetupError as exc:
            if self.path.parent.exists():
                raise OSError(errno.EIO, str(exc)) from None
            # The whole log directory was removed (a cleanup job, `rm -rf logs/`): recreate it.
            try:
                ensure_log_dir(self.path.parent, fix="recreate it or restart the service with another log directory",
                               file_mode=self.mode)
                new_fd = open_log_file(self.path, self.mode)
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
        """Size rotation ``f -> f.1 -> f.2 ...`` under an exclusive ``flock`` on the log directory, so one process
        of many rotates. When it cannot be done, logging goes on into the unrotated file, with one WARNING."""
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self._rotation_failed(exc)
            return
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != self._ident:
                self._reopen()  # another process rotated while we waited for the lock
            elif st.st_size < self.max_bytes:
                self._size = st.st_size
            else:
                for index in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{index}")
                    if os.path.lexists(older):
                        os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
                try:
                    os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
                except FileNotFoundError:
                    pass  # an external logrotate moved it between our lstat and now: it is rotated either way
                self._reopen()
        except OSError as exc:
            self._rotation_failed(exc)
        else:
            self._rotate_failed = False
        finally:
            os.close(dir_fd)  # closing releases the flock

    def _rotation_failed(self, exc: OSError) -> None:
        """Keep writing into the current file; retry in a second at the soonest; say so once per failing stretch."""
        self._rotate_at = float("inf")
        self._rotate_retry = time.monotonic() + max(self.check_interval, 1.0)
        if self._rotate_failed:
            return
        self._rotate_failed = True
        error = describe_os_error(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        self._say(f"cannot rotate log file {self.path}: {error}{where}; logging goes on into the unrotated file, "
                  f"which grows past max_bytes={self.max_bytes} until this is fixed",
                  {"error": error, "path": str(self.path)})

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the descriptor, waiting for a write in progress; a later write opens the path for itself."""
        with self.lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LogFile({str(self.path)!r}, fd={self._fd})"


def _after_fork_in_child() -> None:
    """A lock held by another thread at ``fork`` would never be released in the child; what the parent wrote since
    the last check is the parent's to restore, not the child's."""
    for logfile in list(_live):
        logfile.lock = threading.RLock()
        if logfile._kept is not None:
            logfile._kept = bytearray()


os.register_at_fork(after_in_child=_after_fork_in_child)
