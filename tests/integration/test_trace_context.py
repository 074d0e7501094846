"""W3C trace context on in-process records: each test runs a real process with the real OpenTelemetry SDK (or MLflow's
tracing) and reads back what it wrote, spans from the SDK's in-memory exporter, records from the log file."""

from __future__ import annotations

import json
from pathlib import Path

from mlops_logging.testing import read_records
from support.procs import run_python
from support.records import read_lines

SDK = """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("test")
        def exported(path):
            spans = [{"name": s.name, "trace_id": f"{s.context.trace_id:032x}", "span_id": f"{s.context.span_id:016x}",
                      "trace_flags": f"{s.context.trace_flags:02x}"} for s in exporter.get_finished_spans()]
            open(path, "w").write(json.dumps(spans))
"""


def _spans(path: Path) -> dict[str, dict[str, str]]:
    return {span["name"]: span for span in json.loads(path.read_text())}


def _ids(span: dict[str, str]) -> dict[str, str]:
    return {key: span[key] for key in ("trace_id", "span_id", "trace_flags")}


def test_records_inside_a_span_carry_exactly_the_exported_spans_ids_on_both_paths(log_root: Path,
                                                                                  tmp_path: Path) -> None:
    run_python(SDK + f"""
        import json, logging, structlog
        from unittest import mock
        from mlops_logging import configure_logging, get_logger
        configure_logging("training")
        structlog.contextvars.bind_contextvars(run_id="run-9")
        log, std = get_logger("same"), logging.getLogger("same")
        log.info("before any span")
        with mock.patch("time.time", return_value=1795680000.25):
            with tracer.start_as_current_span("outer"):
                log.info("in a span", step=1)
                std.info("in a span", extra={{"step": 1}})
                with tracer.start_as_current_span("inner"):
                    log.warning("in the inner span")
                    std.warning("in the inner span")
                log.info("back in outer")
        std.info("after every span")
        exported({str(tmp_path / "spans.json")!r})
    """)
    spans = _spans(tmp_path / "spans.json")
    records = read_records(log_root / "training" / "training.log")
    by_message = {}
    for record in records:
        by_message.setdefault(record["message"], []).append(record)
    assert spans["outer"]["trace_id"] == spans["inner"]["trace_id"]
    for message, span in (("in a span", "outer"), ("in the inner span", "inner"), ("back in outer", "outer")):
        assert all(_ids(record) == _ids(spans[span]) for record in by_message[message]), message
    # after the bound context, in this order; no ids outside any span
    assert list(by_message["in a span"][0])[6:] == ["step", "run_id", "trace_id", "span_id", "trace_flags"]
    assert not {"trace_id", "span_id", "trace_flags"} & {k for m in ("before any span", "after every span")
                                                       for k in by_message[m][0]}
    # the structlog and stdlib lines of one call inside a span are byte-identical
    lines = read_lines(log_root / "training" / "training.log")
    assert lines[1] == lines[2] and lines[3] == lines[4] and b'"trace_id":"' in lines[1]


def test_without_opentelemetry_nothing_is_imported_and_records_carry_no_ids(log_root: Path) -> None:
    done = run_python("""
        import sys
        sys.modules["opentelemetry"] = None  # not installed: every import of it fails
        import logging
        from mlops_logging import configure_logging, get_logger
        from mlops_logging.fastapi import instrument
        configure_logging("training")
        get_logger("a").info("structlog")
        logging.getLogger("a").info("stdlib")
        print(sorted(m for m, module in sys.modules.items() if module and m.startswith(("opentelemetry", "mlflow"))))
    """)
    assert done.stdout.splitlines()[-1] == "[]"
    records = read_records(log_root / "training" / "training.log")
    assert [r["message"] for r in records] == ["structlog", "stdlib"]
    assert all("trace_id" not in r for r in records)


def test_a_field_named_like_a_trace_field_keeps_its_name_only_when_it_is_a_valid_id(log_root: Path,
                                                                                    tmp_path: Path) -> None:
    run_python(SDK + f"""
        import json, logging
        from mlops_logging import configure_logging, get_logger
        configure_logging("training")
        with tracer.start_as_current_span("s"):
            get_logger("a").info("wrong types", trace_id="ABC", span_id=7)
            logging.getLogger("a").info("wrong types", extra={{"trace_id": "ABC", "span_id": 7}})
            get_logger("a").info("own id", trace_id="{'1' * 32}")
        exported({str(tmp_path / "spans.json")!r})
    """)
    span = _spans(tmp_path / "spans.json")["s"]
    wrong_s, wrong_std, own = read_records(log_root / "training" / "training.log")  # each validated by the schema
    for record in (wrong_s, wrong_std):
        assert _ids(record) == _ids(span) and record["trace_id_"] == "ABC" and record["span_id_"] == 7
    assert own["trace_id"] == "1" * 32 and own["span_id"] == span["span_id"]  # a call's own valid id wins


def test_records_inside_an_mlflow_run_and_trace_carry_the_run_id_and_the_traces_id(log_root: Path,
                                                                                 tmp_path: Path) -> None:
    out = run_python(f"""
        import json, logging, mlflow, structlog
        from mlops_logging import configure_logging, get_logger
        configure_logging("training")
        mlflow.set_tracking_uri("sqlite:///{tmp_path / 'mlflow.db'}")
        log = get_logger("train")
        with mlflow.start_run() as run:
            structlog.contextvars.bind_contextvars(run_id=run.info.run_id)
            log.info("in the run")
            with mlflow.start_span("epoch") as span:
                log.info("in the trace")
                logging.getLogger("train").info("in the trace")
            print(json.dumps({{"run_id": run.info.run_id, "trace_id": span.trace_id, "span_id": span.span_id}}))
    """, timeout=300)
    [printed] = [line for line in out.stdout.splitlines() if line.startswith('{"run_id"')]
    mlflow_ids = json.loads(printed)
    records = [r for r in read_records(log_root / "training" / "training.log") if r.get("logger") == "train"]
    assert [r["message"] for r in records] == ["in the run", "in the trace", "in the trace"]
    assert all(r["run_id"] == mlflow_ids["run_id"] for r in records)
    assert "trace_id" not in records[0]
    for record in records[1:]:
        assert f"tr-{record['trace_id']}" == mlflow_ids["trace_id"] and record["span_id"] == mlflow_ids["span_id"]
