"""logwrap's log files: the file sink of each of the child's streams (one file for both unless ``--split-streams``)
and the one way logwrap writes a record of its own into them."""

from __future__ import annotations

from collections.abc import Callable

from .._errors import LogSetupError
from .._files import LogFile, ensure_log_dir
from .._records import render_wrapper_record
from .._settings import LogSettings
from .._sink import WRITE_SLICE, FileSink
from ._process import say

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: logwrap's start-up (docs/bench-notes/startup.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LogFiles"]


class LogFiles:
    """The sinks by stream name (``stdout``, ``stderr``); none when the files could not be set up or were given up."""

    def __init__(self, sinks: dict[str, FileSink] | None = None,
                 render: Callable[..., bytes] | None = None) -> None:
        self.sinks: dict[str, FileSink] = sinks or {}
        self._render = render

    @classmethod
    def open(cls, settings: LogSettings, *, split_streams: bool, buffer_bytes: int) -> LogFiles | str:
        """Create the directory and open the log file(s) (``--split-streams``: one per stream), each sink holding at
        most ``buffer_bytes`` while its file cannot be written; the one-line error when that fails."""
        s = settings
        try:
            ensure_log_dir(s.log_dir, file_mode=s.file_mode)
            names = ("stdout", "stderr") if split_streams else (None,)
            opened: dict[str | None, LogFile] = {}
            try:
                for stream in names:
                    path = s.log_dir / (f"{s.service}.{stream}.log" if stream else f"{s.service}.log")
                    # check_interval=0: look at the path before every batch, so a deleted or renamed file is
                    # replaced at once and nothing goes to an unlinked inode (one lstat per batch).
                    opened[stream] = LogFile(path, max_bytes=s.max_bytes, backups=s.backups, check_interval=0.0,
                                             exclusive=True, mode=s.file_mode)
            except LogSetupError:
                for logfile in opened.values():
                    logfile.close()
                raise
        except LogSetupError as exc:
            return str(exc)
        service, fmt = s.service, s.fmt

        def render(level: str, message: str, **fields: Any) -> bytes:
            return render_wrapper_record(service=service, level=level, message=message, fmt=fmt, **fields)

        def notice(message: str, fields: dict[str, Any]) -> bytes:
            return render("WARNING", message, **fields)

        # With size rotation, write at most 1/16 of --max-bytes at a time, so a file overshoots it by little.
        slice_bytes = min(WRITE_SLICE, max(4096, s.max_bytes // 16)) if s.max_bytes else WRITE_SLICE
        sinks = {k: FileSink(v, notice=notice, buffer_bytes=buffer_bytes, slice_bytes=slice_bytes)
                 for k, v in opened.items()}
        if split_streams:
            return cls({"stdout": sinks["stdout"], "stderr": sinks["stderr"]}, render)
        return cls({"stdout": sinks[None], "stderr": sinks[None]}, render)

    def note(self, level: str, message: str, *, stream: str | None = None, **fields: Any) -> None:
        """Queue one logwrap record: in the file of ``stream``, or in every file when no stream is named."""
        if self._render is None or not self.sinks:
            return
        if stream is not None:
            self.sinks[stream].submit(self._render(level, message, stream=stream, **fields))
            return
        data = self._render(level, message, **fields)
        for sink in self.unique():
            sink.submit(data)

    def unique(self) -> list[FileSink]:
        """Each sink once (both streams share one unless ``--split-streams``)."""
        seen: list[FileSink] = []
        for sink in self.sinks.values():
            if sink not in seen:
                seen.append(sink)
        return seen

    def flush(self, now: float) -> None:
        """Write what is queued (every turn of the loop; at once for the start records)."""
        for sink in self.unique():
            sink.flush(now)

    def next_deadline(self) -> float | None:
        """When a sink next retries a failed write, or None."""
        deadlines = [d for d in (sink.next_deadline() for sink in self.unique()) if d is not None]
        return min(deadlines) if deadlines else None

    def finish(self, now: float) -> None:
        """One last write of everything queued; what still cannot be written is reported on stderr."""
        for sink in self.unique():
            if not sink.flush(now, force=True):
                dropped = sink.loss.records
                say(f"could not write {sink.path} ({sink.error}) at exit: {sink.pending_bytes} bytes of records "
                    f"lost{f', after {dropped} lines dropped earlier' if dropped else ''}")
            sink.close()

    def give_up(self, message: str, now: float) -> None:
        """Logwrap goes on without its files (an internal error): ``message`` as a CRITICAL record, what can be
        written written, the files closed."""
        try:
            self.note("CRITICAL", message)
            for sink in self.unique():
                sink.flush(now, force=True)
                sink.close()
        except Exception:  # noqa: BLE001, S110 - best effort: the files are being given up on
            pass
        self.sinks = {}
