"""The public API as a user's code calls it, with the types a user would write: checked by mypy --strict
(``make typecheck``), never run (as structlog's tests/typing). A change that breaks a user's type check breaks this.
"""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path
from typing import Any, assert_type

from structlog.typing import FilteringBoundLogger

import mlops_logging
from mlops_logging import (
    TAKEOVER_LOGGERS,
    LogSetupError,
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    configure_logging,
    get_contextvars,
    get_logger,
    gunicorn_conf,
    unbind_contextvars,
)
from mlops_logging.check import (
    DEFAULT_SERVICES,
    CheckSettings,
    FileReport,
    Finding,
    ProbeResult,
    Report,
    ServiceReport,
    Status,
    TraceHit,
    audit,
    audit_service,
    probe,
    sample_file_lines,
    trace,
)
from mlops_logging.fastapi import (
    ACCESS_LOGGER,
    REQUEST_ID_HEADER,
    SERVER_ACCESS_LOGGERS,
    RequestLoggingMiddleware,
    current_request_id,
    disable_server_access_logs,
    instrument,
    redact_query,
    valid_request_id,
)
from mlops_logging.testing import assert_valid, capture_records, read_records
from mlops_logging.uvicorn_conf import LOG_CONFIG, LOG_CONFIG_FILE, handler, log_config
from mlops_logging.wrap import main as logwrap


def a_service_sets_up_logging() -> None:
    assert_type(mlops_logging.__version__, str)
    path: Path = configure_logging("training", log_dir="logs/training", level="INFO", fmt="json", stdout=False,
                                   strict=True, max_bytes="100M", backups=3, takeover=(*TAKEOVER_LOGGERS, "myapp"))
    assert_type(configure_logging(log_dir=path.parent), Path)
    log: FilteringBoundLogger = get_logger("train", run="r1")
    log.info("epoch done", epoch=3, loss=0.25)
    bind_contextvars(run_id="r1")
    with bound_contextvars(step=7):
        context: dict[str, Any] = get_contextvars()
        assert context
    unbind_contextvars("run_id")
    clear_contextvars()
    try:
        configure_logging("../etc")
    except LogSetupError as exc:
        message: str = str(exc)
        assert message


def a_gateway_logs_its_requests(app: Any) -> None:
    app = instrument(app, "fastapi", access_console=True, log_dir="logs/fastapi")
    middleware = RequestLoggingMiddleware(app, access_logger=ACCESS_LOGGER, access_console=False)
    assert callable(middleware)
    request_id: str | None = current_request_id()
    ok: bool = valid_request_id(request_id) and valid_request_id(b"abc")
    query: str = redact_query(b"api_key=secret&page=2") + redact_query("page=2")
    header: str = REQUEST_ID_HEADER
    silenced: tuple[str, ...] = SERVER_ACCESS_LOGGERS
    disable_server_access_logs()
    assert ok and query and header and silenced


def a_server_is_configured_for_uvicorn() -> None:
    config: dict[str, Any] = log_config(service="gateway")
    logging.config.dictConfig(config)
    one: logging.Handler = handler("gateway", fmt="text")
    assert isinstance(LOG_CONFIG, dict) and LOG_CONFIG_FILE.is_file() and one
    worker: str = gunicorn_conf.worker_class
    assert worker and gunicorn_conf.logger_class is gunicorn_conf.GunicornLogger


def an_entrypoint_runs_a_server_under_logwrap() -> int:
    code: int = logwrap(["--service", "vllm", "--", "vllm", "serve", "/models/tiny"])
    return code


def an_operator_audits_the_logs() -> int:
    settings = CheckSettings(root=Path("logs"), services=DEFAULT_SERVICES, unused=("vllm",), max_age=900.0)
    report = audit(settings, now=None)
    assert_type(report, Report)
    for service in report.services:
        assert_type(service, ServiceReport)
        status: Status = service.status
        share: float | None = service.complete_share
        files: list[FileReport] = service.files
        findings: list[Finding] = service.findings
        assert status is Status.OK or share is None or files or findings
    one: ServiceReport = audit_service("fastapi", Path("logs/fastapi"), settings, required=False)
    lines, too_long = sample_file_lines(b"a\nb\n", 0, 10)
    assert_type(lines, list[bytes])
    assert_type(too_long, bool)
    hits: list[TraceHit] = trace(Path("logs"), "req-1", ["fastapi", "vllm"]).hits
    answer: ProbeResult = probe("fastapi", "http://127.0.0.1:8080/health", Path("logs/fastapi"), timeout=2.0)
    assert one and hits and answer.ok
    verdict: str = report.verdict()
    assert verdict
    return report.exit_code


def a_user_tests_their_own_logging(path: Path) -> None:
    with capture_records() as records:
        get_logger("t").info("hello")
    first: dict[str, Any] = records[0]
    assert_valid(first, where="captured")
    on_disk: list[dict[str, Any]] = read_records(path, validate=True)
    assert on_disk
