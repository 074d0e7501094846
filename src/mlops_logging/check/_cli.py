"""logcheck's command line: its options, and :func:`main`, which only parses, calls the library and prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .._errors import LogSetupError
from ._audit import audit
from ._config import DEFAULT_SERVICES, CheckSettings, load_config, resolve
from ._follow import trace
from ._probe import probe

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    """logcheck's options (defaults are None: the config file and the built-in defaults fill them in)."""
    parser = argparse.ArgumentParser(
        prog="logcheck", description="Audit the log files of every service: there, fresh, parseable, complete?",
        epilog="Exit status: 0 every required service OK (and every probe passed), 1 otherwise, 2 bad usage. "
               "Statuses and the --json shape: docs/references/LOGGING.md, section logcheck.")
    parser.add_argument("--root", help="log root with one directory per service (default: MLOPS_LOG_ROOT or ./logs)")
    parser.add_argument("--services", action="append", metavar="A,B",
                        help=f"services to audit (default: {','.join(DEFAULT_SERVICES)})")
    parser.add_argument("--unused", action="append", metavar="A,B",
                        help="services declared unused: shown as UNUSED, never fail the run")
    parser.add_argument("--max-age", help="a service is STALE when its newest write is older (default 15m)")
    parser.add_argument("--min-complete", help="share of sampled records that must be complete (default 0.99)")
    parser.add_argument("--sample-lines", help="records sampled from the end of each stream (default 1000)")
    parser.add_argument("--sample-bytes", help="bytes read from the end of each stream (default 1MiB)")
    parser.add_argument("--config", type=Path, help="config file (default ./logcheck.toml, else [tool.logcheck] of "
                                                    "./pyproject.toml)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (shape in LOGGING.md)")
    parser.add_argument("--plain", action="store_true", help="plain table even when rich is installed")
    parser.add_argument("--trace", metavar="ID", help="print every record carrying this request id, in any service, "
                                                      "merged by time; for a W3C trace id, every record of its "
                                                      "requests")
    parser.add_argument("--probe", action="append", metavar="SERVICE=URL",
                        help="GET URL with a fresh X-Request-ID, check its record reaches SERVICE's log")
    parser.add_argument("--probe-timeout", help="how long to wait for a probe's record (default 5s)")
    parser.add_argument("--transcript-dir", help="where the run's output is saved (default .context/terminal)")
    parser.add_argument("--no-transcript", dest="transcript", action="store_false", default=None,
                        help="do not save the output")
    return parser


def _settings_from_args(args: argparse.Namespace, *, cwd: Path | None = None) -> CheckSettings:
    """Resolve the parsed command line with the config file and the environment."""
    config, config_file = load_config(args.config, cwd or Path.cwd())
    cli = {key: getattr(args, key) for key in ("root", "services", "unused", "max_age", "min_complete",
                                               "sample_lines", "sample_bytes", "transcript_dir", "transcript",
                                               "probe", "probe_timeout")}
    return resolve(cli, config, config_file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run logcheck; return its exit status."""
    from . import _render as render

    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings_from_args(args)
    except LogSetupError as exc:
        print(f"logcheck: {exc}", file=sys.stderr)
        return 2
    out = render.Output(plain=args.plain)
    if args.trace is not None:
        try:
            searched = settings.services if "services" in settings.sources else None  # default: every directory
            hits = trace(settings.root, args.trace, searched)
        except ValueError as exc:
            print(f"logcheck: {exc}", file=sys.stderr)
            return 2
        render.print_trace(out, args.trace, hits, settings, as_json=args.json)
        code = 0 if hits else 1
    else:
        probes = [probe(service, url, settings.root / service, timeout=settings.probe_timeout)
                  for service, url in settings.probes]
        report = audit(settings)
        report.probes = probes
        render.print_report(out, report, as_json=args.json)
        code = report.exit_code
    out.save_transcript(settings.transcript_dir)
    return code
