"""What logcheck found: the statuses, the findings, and the reports of a file, a service and a log root (the
audit fills them in; the table and ``--json`` read them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from ._config import CheckSettings
from ._files import LogPath
from ._probe import ProbeResult
from ._records import Sample

__all__ = ["FileReport", "Finding", "Report", "ServiceReport", "Status"]


class Status(str, enum.Enum):  # noqa: UP042 - not StrEnum: the public class keeps its bases
    """A service's verdict."""

    OK = "OK"
    STALE = "STALE"
    INCOMPLETE = "INCOMPLETE"
    EMPTY = "EMPTY"
    MISSING = "MISSING"
    UNUSED = "UNUSED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Finding:
    """Something the audit noticed. ``fails``: it is a reason the service is not OK (else a note)."""

    text: str
    fails: bool
    file: str | None = None


@dataclass
class FileReport:
    """One file of a service as the audit saw it: the file (size and mtime as read), its sample, or why not."""

    log: LogPath
    sampled: bool = False
    sample: Sample = field(default_factory=Sample)
    problem: str = ""  # why it could not be audited ("is a symlink ...")

    path = property(lambda self: self.log.path, doc="The file's path.")
    stream = property(lambda self: self.log.stream, doc="``stdout``/``stderr`` for split streams, else None.")
    rotated = property(lambda self: self.log.rotated, doc="An older, rotated file.")
    compressed = property(lambda self: self.log.compressed, doc="A gzip rotated file (listed, not sampled).")
    size = property(lambda self: self.log.size, doc="Its size in bytes.")
    mtime = property(lambda self: self.log.mtime, doc="Its last modification time.")


@dataclass
class ServiceReport:
    """The audit of one service."""

    service: str
    status: Status
    reason: str
    directory: Path
    required: bool
    files: list[FileReport] = field(default_factory=list)
    sample: Sample = field(default_factory=Sample)
    findings: list[Finding] = field(default_factory=list)
    newest_write: float | None = None
    age: float | None = None

    @property
    def size(self) -> int:
        """Bytes in all the service's regular files."""
        return sum(f.size for f in self.files if not f.problem)

    @property
    def complete_share(self) -> float | None:
        """Share of sampled records with timestamp, level and message (None without records)."""
        return self.sample.complete / self.sample.records if self.sample.records else None


@dataclass
class Report:
    """The audit of a log root."""

    root: Path
    settings: CheckSettings
    generated_at: float
    services: list[ServiceReport]
    findings: list[Finding] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)

    @property
    def required(self) -> list[ServiceReport]:
        """Services that must be OK."""
        return [s for s in self.services if s.required]

    @property
    def ok(self) -> bool:
        """True when every required service is OK (and there is one), and every probe passed."""
        required = self.required
        return bool(required) and all(s.status is Status.OK for s in required) and all(p.ok for p in self.probes)

    @property
    def exit_code(self) -> int:
        """0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1

    def verdict(self) -> str:
        """``6/6 services writing complete logs``, naming the others: ``4/5 ... (mlflow STALE; unused: vllm)``."""
        required = self.required
        good = sum(s.status is Status.OK for s in required)
        line = f"{good}/{len(required)} services writing complete logs"
        notes = [f"{s.service} {s.status}" for s in required if s.status is not Status.OK]
        unused = [s.service for s in self.services if not s.required]
        if unused:
            notes.append(f"unused: {', '.join(unused)}")
        failed = [p for p in self.probes if not p.ok]
        if failed:
            notes.append(f"probe failed: {', '.join(p.service for p in failed)}")
        if not required:
            notes.insert(0, "nothing audited: every service is declared unused")
        return f"{line} ({'; '.join(notes)})" if notes else line
