"""``logcheck``: the audit that says, per service, whether logs are being written and are complete.

    logcheck [--root logs] [--services a,b] [--unused inference] [--max-age 15m] [--json]
    logcheck --trace REQUEST_ID_OR_TRACE_ID
    logcheck --probe fastapi=http://127.0.0.1:8080/health

For each service it looks at ``<root>/<service>/``: the log files (rotated and ``--split-streams`` ones too), their
size, the age of the newest write, and records *sampled from the end* of each file (one ``pread`` of at most
``--sample-bytes``, at most ``--sample-lines`` records: a 10 GB log audits as fast as a 10 KB one). The statuses,
checked in this order (docs/references/LOGGING.md, "logcheck"):

- ``UNUSED``: declared unused (``--unused``, or ``unused`` in the config file); never fails the run;
- ``MISSING``: no directory, or no log file of the service in it;
- ``EMPTY``: log files, but not one record in them (and every file could be read);
- ``STALE``: the newest write (the latest mtime of the service's files) is older than ``--max-age`` (15 min);
- ``INCOMPLETE``: fresh, but a file could not be audited (unreadable, a symlink, not a regular file; only gzip
  rotated files), fewer than
  ``--min-complete`` (99%) of the sampled records have a timestamp, a level and a message, or this package recorded
  lost lines within ``--max-age``;
- ``OK``: none of the above.

The exit status is 0 only when every required (not unused) service is OK; 1 otherwise; 2 for bad usage.
Errors in the logs are counted and shown but are not a logging failure: a service that logs its errors is doing
its job. The logic lives in importable functions (:func:`audit`, :func:`audit_service`, :func:`trace`,
:func:`probe`); :func:`main` only parses, calls and prints.

The implementation is private, one job a module: ``_config`` (settings: command line, config file, environment),
``_files`` (a service's files, reading a tail), ``_records`` (judging sampled lines), ``_report`` (the report
types), ``_audit`` (sampling and the statuses), ``_trace`` (``--trace``), ``_follow`` (``--trace`` by W3C trace
id), ``_probe`` (``--probe``), ``_render``
(the table, ``--json``, the transcript) and ``_cli`` (options, :func:`main`).
"""

from __future__ import annotations

from ._audit import audit, audit_service, sample_file_lines
from ._cli import main
from ._config import DEFAULT_SERVICES, CheckSettings
from ._follow import trace
from ._probe import ProbeResult, probe
from ._report import FileReport, Finding, Report, ServiceReport, Status
from ._trace import TraceHit

__all__ = [
    "CheckSettings",
    "DEFAULT_SERVICES",
    "FileReport",
    "Finding",
    "ProbeResult",
    "Report",
    "ServiceReport",
    "Status",
    "TraceHit",
    "audit",
    "audit_service",
    "main",
    "probe",
    "sample_file_lines",
    "trace",
]
