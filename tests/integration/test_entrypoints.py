"""The entrypoint scripts' own job, fast: the arguments and environment they hand over, through the real logwrap.

The server is replaced by a recorder (a small Python program that prints its argv and the variables the scripts set,
then exits with a chosen code), so every spelling can be checked in milliseconds; the real vLLM and MLflow behind
the same scripts are the live tests (test_vllm_stack.py, test_mlflow_server.py).
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_logging.testing import read_records

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTRYPOINTS = REPO / "entrypoints"
VLLM_CLI = str(ENTRYPOINTS / "vllm_cli.py")
KEYS = ("MLOPS_LOG_DIR", "NO_COLOR", "VLLM_LOGGING_COLOR", "PYTHONUNBUFFERED", "MLFLOW_HOST",
        "MLFLOW_SERVER_ALLOWED_HOSTS", "MLOPS_VLLM_PYTHON")
DEFAULT_ALLOWED_HOSTS = ("mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*,10.*,172.1[6-9].*,172.2[0-9].*,"
                         "172.3[01].*,192.168.*")


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    """Stands in for the server: prints {"argv": [...], "env": {...}} and exits with $RECORDER_EXIT."""
    path = tmp_path / "recorder"
    path.write_text(f"#!{sys.executable}\n"
                    "import json, os, sys\n"
                    f"print(json.dumps({{'argv': sys.argv[1:], 'env': {{k: os.environ.get(k) for k in {KEYS!r}}}}}))\n"
                    "sys.exit(int(os.environ.get('RECORDER_EXIT', '0')))\n")
    path.chmod(0o755)
    return path


def run(script: str, args: list[str], log_dir: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The entrypoint with the real logwrap (LOGWRAP) writing to ``log_dir``; MLOPS_* of the test run left out."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    full = {**base, "LOGWRAP": str(BIN / "logwrap"), "MLOPS_LOG_DIR": str(log_dir), **env}
    result = subprocess.run([str(ENTRYPOINTS / script), *args], env=full, capture_output=True, text=True, timeout=60,
                            check=False)
    return result, log_dir


def recorded(log: Path) -> dict[str, Any]:
    """What the recorder printed, read back from the log record logwrap wrote for its line."""
    [line] = [r for r in read_records(log) if r.get("stream") == "stdout" and r["message"].startswith("{")]
    return json.loads(line["message"])


# --- vllm.sh --------------------------------------------------------------------------------------------------------


def test_vllm_entrypoint_passes_arguments_unchanged_then_turns_request_logging_on(recorder: Path,
                                                                                  tmp_path: Path) -> None:
    args = ["/models/tiny llama", "--served-model-name", "tiny", "--max-model-len=256", "", "--api-key", "k*"]
    result, logs = run("vllm.sh", args, tmp_path / "logs", MLOPS_VLLM_PYTHON=str(recorder))
    assert result.returncode == 0, result.stderr
    got = recorded(logs / "vllm.log")
    assert got["argv"] == [VLLM_CLI, "serve", *args, "--enable-log-requests"]
    # the command line in logwrap's start record names the same program and hides the key
    [start] = [r for r in read_records(logs / "vllm.log") if r.get("logger") == "logwrap" and "command" in r]
    assert start["command"].startswith(f"{recorder} {VLLM_CLI} serve ") and "k*" not in start["command"]


@pytest.mark.parametrize("flag", ["--enable-log-requests", "--no-enable-log-requests", "--enable_log_requests",
                                  "--no_enable_log_requests", "--no-enable_log-requests"])
def test_vllm_entrypoint_leaves_request_logging_to_a_flag_the_user_gives(flag: str, recorder: Path,
                                                                         tmp_path: Path) -> None:
    result, logs = run("vllm.sh", ["/models/m", flag, "--port", "8001"], tmp_path / "logs",
                       MLOPS_VLLM_PYTHON=str(recorder))
    assert result.returncode == 0, result.stderr
    assert recorded(logs / "vllm.log")["argv"] == [VLLM_CLI, "serve", "/models/m", flag, "--port", "8001"]


def test_vllm_entrypoint_turns_trace_export_on_when_opentelemetrys_endpoint_variable_is_set(recorder: Path,
                                                                                            tmp_path: Path) -> None:
    endpoint = "http://collector:4318/v1/traces"
    result, logs = run("vllm.sh", ["/models/m", "--port", "8001"], tmp_path / "logs", MLOPS_VLLM_PYTHON=str(recorder),
                       OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint)
    assert result.returncode == 0, result.stderr
    assert recorded(logs / "vllm.log")["argv"] == [VLLM_CLI, "serve", "/models/m", "--port", "8001",
                                                   "--otlp-traces-endpoint", endpoint, "--enable-log-requests"]


@pytest.mark.parametrize("flag", [["--otlp-traces-endpoint", "http://mine:4317"], ["--otlp_traces_endpoint=http://mine"]])
def test_vllm_entrypoint_leaves_trace_export_to_an_endpoint_flag_the_user_gives(flag: list[str], recorder: Path,
                                                                                tmp_path: Path) -> None:
    result, logs = run("vllm.sh", ["/models/m", *flag], tmp_path / "logs", MLOPS_VLLM_PYTHON=str(recorder),
                       OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector:4318/v1/traces")
    assert result.returncode == 0, result.stderr
    assert recorded(logs / "vllm.log")["argv"] == [VLLM_CLI, "serve", "/models/m", *flag, "--enable-log-requests"]


def test_vllm_entrypoint_sets_colour_off_and_keeps_the_users_log_dir(recorder: Path, tmp_path: Path) -> None:
    result, logs = run("vllm.sh", ["/models/m"], tmp_path / "mine", MLOPS_VLLM_PYTHON=str(recorder),
                       MLOPS_SERVICE="other", NO_COLOR="", VLLM_LOGGING_COLOR="1")
    assert result.returncode == 0, result.stderr
    env = recorded(logs / "vllm.log")["env"]
    assert env["MLOPS_LOG_DIR"] == str(tmp_path / "mine") and env["PYTHONUNBUFFERED"] == "1"
    assert env["NO_COLOR"] == "1" and env["VLLM_LOGGING_COLOR"] == "0"
    # the service is fixed: MLOPS_SERVICE does not rename the file
    assert {r["service"] for r in read_records(logs / "vllm.log")} == {"vllm"}
    assert not (logs / "other.log").exists()


@pytest.mark.parametrize("code", [0, 3, 137])
def test_vllm_entrypoint_exits_with_the_servers_status(code: int, recorder: Path, tmp_path: Path) -> None:
    result, logs = run("vllm.sh", ["/models/m"], tmp_path / "logs", MLOPS_VLLM_PYTHON=str(recorder),
                       RECORDER_EXIT=str(code))
    assert result.returncode == code
    [exit_record] = [r for r in read_records(logs / "vllm.log") if "exit_code" in r]
    assert exit_record["exit_code"] == code and exit_record["level"] == ("INFO" if code == 0 else "ERROR")


def test_entrypoint_without_logwrap_fails_loudly_with_127(tmp_path: Path) -> None:
    result, _logs = run("vllm.sh", ["/models/m"], tmp_path / "logs", LOGWRAP=str(tmp_path / "no-such-logwrap"))
    assert result.returncode == 127 and "no-such-logwrap" in result.stderr


# --- mlflow.sh ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "server_args"),
    [
        ([], []),
        (["--workers", "2", "--backend-store-uri", "sqlite:////mlflow/m.db"],
         ["--workers", "2", "--backend-store-uri", "sqlite:////mlflow/m.db"]),
        (["server", "--workers", "2"], ["--workers", "2"]),
        (["mlflow", "server", "-h", "127.0.0.1"], ["-h", "127.0.0.1"]),  # the official image's spelling
    ],
)
def test_mlflow_entrypoint_runs_mlflow_server_with_the_users_flags(args: list[str], server_args: list[str],
                                                                   recorder: Path, tmp_path: Path) -> None:
    result, logs = run("mlflow.sh", args, tmp_path / "logs", MLOPS_MLFLOW=str(recorder))
    assert result.returncode == 0, result.stderr
    got = recorded(logs / "mlflow.log")
    assert got["argv"] == ["server", *server_args]
    assert got["env"]["MLFLOW_HOST"] == "0.0.0.0" and got["env"]["NO_COLOR"] == "1"
    assert got["env"]["MLFLOW_SERVER_ALLOWED_HOSTS"] == DEFAULT_ALLOWED_HOSTS


@pytest.mark.parametrize(("host", "answered"), [
    ("mlflow:5000", True), ("localhost", True), ("127.0.0.1:5000", True), ("10.1.2.3:5000", True),
    ("172.16.0.1", True), ("172.17.0.2:5000", True), ("172.31.255.254:80", True), ("192.168.1.5:5000", True),
    ("172.15.0.1:5000", False), ("172.32.0.1:5000", False), ("172.1.0.1", False), ("evil.example.com", False),
    ("8.8.8.8:5000", False)])
def test_the_default_allowed_hosts_are_the_service_loopback_and_rfc_1918_addresses(host: str, answered: bool) -> None:
    """Judged by MLflow's own matcher: 172.16.0.0/12 exactly (Docker's networks), not all of 172.*."""
    security = pytest.importorskip("mlflow.server.security_utils", reason="the mlflow extra is not installed")
    assert security.is_allowed_host_header(DEFAULT_ALLOWED_HOSTS.split(","), host) is answered


def test_mlflow_entrypoint_keeps_the_users_host_and_allowed_hosts(recorder: Path, tmp_path: Path) -> None:
    result, logs = run("mlflow.sh", [], tmp_path / "logs", MLOPS_MLFLOW=str(recorder), MLFLOW_HOST="127.0.0.1",
                       MLFLOW_SERVER_ALLOWED_HOSTS="mlflow.example.com")
    assert result.returncode == 0, result.stderr
    env = recorded(logs / "mlflow.log")["env"]
    assert env["MLFLOW_HOST"] == "127.0.0.1" and env["MLFLOW_SERVER_ALLOWED_HOSTS"] == "mlflow.example.com"


def test_mlflow_entrypoint_runs_another_command_as_is_without_logwrap(tmp_path: Path) -> None:
    result, logs = run("mlflow.sh", ["sh", "-c", 'echo "direct $0"', "x"], tmp_path / "logs")
    assert result.returncode == 0 and result.stdout == "direct x\n"
    assert not logs.exists()


# --- vllm_cli.py ----------------------------------------------------------------------------------------------------


def _load_vllm_cli() -> Any:
    spec = importlib.util.spec_from_file_location("vllm_cli_under_test", VLLM_CLI)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    before = list(sys.meta_path)
    spec.loader.exec_module(module)
    sys.meta_path[:] = before  # its import-time alias for "vllm" stays out of this test process
    return module


def test_vllm_cli_alias_serves_the_real_distribution_under_the_asked_name_with_the_label() -> None:
    vllm_cli = _load_vllm_cli()
    real = metadata.distribution("structlog")
    alias = vllm_cli.DistributionAlias({"some-build": ("structlog", "cpu")})
    [found] = alias.find_distributions(metadata.DistributionFinder.Context(name="some_build"))
    assert found.version == f"{real.version}+cpu" and found.metadata["Name"] == "some-build"
    assert found.requires == real.requires and found.read_text("RECORD") == real.read_text("RECORD")
    assert list(alias.find_distributions(metadata.DistributionFinder.Context(name="other"))) == []
    assert list(alias.find_distributions(metadata.DistributionFinder.Context())) == []
    missing = vllm_cli.DistributionAlias({"x": ("no-such-distribution-here", "cpu")})
    assert list(missing.find_distributions(metadata.DistributionFinder.Context(name="x"))) == []


def test_vllm_cli_installs_the_alias_only_for_a_name_with_no_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    vllm_cli = _load_vllm_cli()
    before = list(sys.meta_path)
    monkeypatch.setattr(vllm_cli, "ALIASES", {"structlog": ("orjson", "x"), "no-such-dist-abc": ("structlog", "x")})
    try:
        assert vllm_cli.install_aliases() == ["no-such-dist-abc"]
        assert metadata.version("no-such-dist-abc") == f"{metadata.version('structlog')}+x"
        assert metadata.distribution("structlog").metadata["Name"].lower() == "structlog"
    finally:
        sys.meta_path[:] = before
