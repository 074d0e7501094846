"""The whole stack, ``docker/docker-compose.yml`` with the CPU override ``docker/docker-compose.cpu.yml`` (the tiny
local model, no GPU), jobs profile included, under the real engine: what the PRD asks of every service, read on the
host's ``logs/``.

One module-scoped run: ``build``; ``up -d`` (vllm, fastapi, mlflow, system); every server healthy (healthchecks run
through the engine); the jobs (training, inference) run to their end; ``logcheck`` as root and as a host user who is
not root; ``logcheck --trace`` of one inference item; ``restart vllm``; ``down -v``.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine import SERVERS as SERVER_TIMEOUTS
from engine import Engine
from support.stack import Stack, as_nobody, copy_repository
from vllm_server import ensure_tiny_model, vllm_available

pytestmark = [pytest.mark.containers, pytest.mark.vllm, pytest.mark.timeout(2400)]

SERVICES = ("fastapi", "inference", "mlflow", "system", "training", "vllm")
SERVERS = tuple(service for service, _timeout in SERVER_TIMEOUTS)  # the servers, in the order they become healthy
JOBS = ("training", "inference")
VLLM_READY = "Starting vLLM server on"


@dataclass
class Run:
    stack: Stack
    jobs: dict[str, str] = field(default_factory=dict)  #: job -> "status exit code" after it ran
    healthy: dict[str, bool] = field(default_factory=dict)
    image_healthchecks: dict[str, str] = field(default_factory=dict)  #: wrapped server -> its image's HEALTHCHECK
    job_checks: dict[str, int] = field(default_factory=dict)  #: job -> exit of its healthcheck command
    pid1: dict[str, list[str]] = field(default_factory=dict)
    check: tuple[int, str] = (-1, "")
    nobody_check: tuple[int, str] = (-1, "")
    nobody_reads: dict[str, tuple[str, str]] = field(default_factory=dict)  #: service -> (ls -la, tail -20)
    trace_id: str = ""
    trace: dict[str, Any] = field(default_factory=dict)
    vllm_before_restart: bytes = b""
    vllm_after_restart: bytes = b""


def _logcheck(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlops_logging.check", "--root", "logs", "--no-transcript", *argv]


@pytest.fixture(scope="module")
def run(engine: Engine) -> Iterator[Run]:
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing (make setup-vllm): it builds the tiny local model")
    model = ensure_tiny_model()
    root = copy_repository("mlops-stack-")
    stack = Stack(engine, root, ["docker-compose.yml", "docker-compose.cpu.yml"], f"mlopsstack{uuid.uuid4().hex[:8]}",
                  env={"VLLM_MODEL_DIR": str(model)})
    result = Run(stack)
    try:
        # one build per image: fastapi, system and the jobs share mlops-logging/python (podman-compose would build
        # it once per service, in parallel)
        stack.build("vllm", "mlflow", "fastapi")
        for service, image in (("vllm", "mlops-logging/vllm-cpu:0.1.0"), ("mlflow", "mlops-logging/mlflow:0.1.0")):
            result.image_healthchecks[service] = engine.run("image", "inspect", "--format",
                                                            "{{json .Config.Healthcheck}}", image).stdout
        stack.compose("up", "-d")
        for service, timeout in SERVER_TIMEOUTS:
            stack.wait_healthy(service, timeout)
        result.healthy = {service: stack.healthcheck(service) for service in SERVERS}
        result.pid1 = {service: stack.pid1(service) for service in ("vllm", "mlflow")}
        stack.compose("up", "--no-deps", *JOBS, profiles=("jobs",))
        for job in JOBS:
            result.jobs[job] = stack.inspect(job, "{{.State.Status}} {{.State.ExitCode}}")
            # a job's healthcheck (its log is not empty) is run after it ended: in a fresh container of its image
            # with the same mount, the same command
            image = stack.inspect(job, "{{.ImageName}}") if engine.name == "podman" else stack.inspect(
                job, "{{.Config.Image}}")
            result.job_checks[job] = engine.run("run", "--rm", "-v", f"{stack.logs / job}:/logs:ro", image,
                                                "test", "-s", f"/logs/{job}.log", check=False).returncode
        done = as_nobody(_logcheck([]), root)
        result.nobody_check = (done.returncode, done.stdout + done.stderr)
        for service in SERVICES:
            listing = as_nobody(["ls", "-la", f"logs/{service}/"], root).stdout
            tail = as_nobody(["tail", "-20", f"logs/{service}/{service}.log"], root).stdout
            result.nobody_reads[service] = (listing, tail)
        item = next(r for r in stack.records("inference") if r["message"] == "completion received")
        result.trace_id = item["request_id"]
        done = as_nobody(_logcheck(["--trace", result.trace_id, "--json"]), root)
        result.trace = json.loads(done.stdout)
        result.vllm_before_restart = stack.log_file("vllm").read_bytes()
        stack.compose("restart", "vllm")
        stack.wait_until("vllm ready again", lambda: stack.count("vllm", VLLM_READY) >= 2, 600)
        stack.wait_healthy("vllm", 120)
        result.vllm_after_restart = stack.log_file("vllm").read_bytes()
        done = as_nobody(_logcheck([]), root)
        result.check = (done.returncode, done.stdout + done.stderr)
        yield result
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def test_all_six_containers_write_their_log_file_on_the_host(run: Run) -> None:
    for service in SERVICES:
        records = run.stack.records(service)
        assert records and all(r["service"] == service for r in records), service


def test_the_jobs_ran_to_their_end_and_exited_0(run: Run) -> None:
    assert run.jobs == {"training": "exited 0", "inference": "exited 0"}, run.jobs


def test_logcheck_says_6_of_6_before_and_after_the_vllm_restart(run: Run) -> None:
    for code, output in (run.nobody_check, run.check):
        assert code == 0 and "6/6 services writing complete logs" in output, output


def test_one_inference_request_is_followed_fastapi_to_vllm_across_containers(run: Run) -> None:
    services = {r["service"] for r in run.trace["records"]}
    assert {"inference", "fastapi", "vllm"} <= services, run.trace
    vllm_lines = [r["message"] for r in run.trace["records"] if r["service"] == "vllm"]
    assert any("Received request" in m and run.trace_id in m for m in vllm_lines), vllm_lines


def test_vllm_start_and_model_loading_lines_are_there(run: Run) -> None:
    messages = run.stack.messages("vllm")
    for line in (VLLM_READY, "Starting to load model", "Loading weights took"):
        assert any(line in m for m in messages), line


def test_restart_vllm_appends_to_the_same_file(run: Run) -> None:
    before, after = run.vllm_before_restart, run.vllm_after_restart
    assert after.startswith(before) and len(after) > len(before)
    records = [json.loads(line) for line in after.splitlines()]
    starts = [r for r in records if r.get("logger") == "logwrap" and "command" in r]
    ends = [r for r in records if r.get("logger") == "logwrap" and "exit_code" in r]
    assert len(starts) == 2 and len(ends) == 1 and ends[0]["exit_code"] == 0


def test_logwrap_is_pid_1_of_the_vllm_and_mlflow_containers(run: Run) -> None:
    for service, argv in run.pid1.items():
        assert Path(argv[1]).name == "logwrap" and argv[2:4] == ["--service", service], argv


def test_the_built_images_keep_their_dockerfiles_healthcheck(run: Run) -> None:
    """`docker run IMAGE` gets the HEALTHCHECK too (Podman drops it from OCI-format images: built in Docker's)."""
    for service, port in (("vllm", 8000), ("mlflow", 5000)):
        assert f"http://127.0.0.1:{port}/health" in run.image_healthchecks[service], run.image_healthchecks


def test_every_healthcheck_reports_healthy(run: Run) -> None:
    assert run.healthy == dict.fromkeys(SERVERS, True)
    assert run.job_checks == dict.fromkeys(JOBS, 0)


def test_a_host_user_who_is_not_root_lists_and_tails_every_log_file(run: Run) -> None:
    for service, (listing, tail) in run.nobody_reads.items():
        assert f"{service}.log" in listing and "-rw-r--r--" in listing, listing
        lines = tail.splitlines()
        assert lines and all(json.loads(line)["service"] == service for line in lines), (service, tail)
