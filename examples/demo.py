"""The demo: the six services of the stack run for real, then logcheck proves each one wrote complete logs.

1. MLflow through entrypoints/mlflow.sh, vLLM (CPU, tiny local model) through entrypoints/vllm.sh, both behind
   logwrap, and the system sampler, all started at once;
2. a training job tracked in the live MLflow server, then batch inference with the trained model;
3. the FastAPI gateway under gunicorn (2 workers, mlops_logging.gunicorn_conf) in front of vLLM;
4. batch inference through the gateway and a little traffic (completions, chat, a stream, a 404);
5. logcheck --probe (a fresh request id reaches the gateway's file) and --trace (one request: inference -> gateway
   -> vLLM), then --trace by the W3C trace id the gateway gave that request (its records and vLLM's lines);
6. SIGTERM to every server (exit codes shown), then logcheck's table: `6/6 services writing complete logs`.

Run with `make demo` (it installs .venv, the vLLM venv and the tiny model first; later runs reuse them).
`DEMO_VLLM=0 make demo` skips vLLM: the gateway forwards to examples/backend_stub, a stand-in, and logcheck is told
vllm is unused, so the verdict says `5/5 ... (unused: vllm)`, never a pretend 6/6. Logs go to $MLOPS_LOG_ROOT
(default ./logs); servers' console output and MLflow's store to .cache/demo/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import vllm_server  # noqa: E402 - scripts/vllm_server.py: vLLM venv, tiny model, flags, waiting for /health

PY = sys.executable
BIN = Path(PY).parent
WORK = REPO / ".cache" / "demo"
STARTED = time.monotonic()


def step(text: str) -> None:
    """A step header, with the time since the demo started."""
    print(f"\n== [{time.monotonic() - STARTED:5.1f} s] {text}", flush=True)


def run(cmd: list[str], env: dict[str, str], *, show: int = 3) -> subprocess.CompletedProcess[str]:
    """Run a job to completion (the demo fails if it does); the first and last lines of its console are shown."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=WORK)
    lines = proc.stdout.splitlines()
    shown = lines if len(lines) <= 2 * show else [*lines[:show], "   ...", *lines[-show:]]
    for line in shown:
        print(f"   {line[:160]}")
    if proc.returncode != 0:
        sys.exit(f"demo: {' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def start(cmd: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """Start a server in its own session; its console output goes to .cache/demo/<name>.console."""
    with (WORK / f"{name}.console").open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=WORK)


def stop(proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> int:
    """SIGTERM, wait, report the exit code (what `docker stop` does: KILL only after the timeout)."""
    code = vllm_server.stop_process(proc, timeout=timeout)
    how = " (the signal re-raised after a clean shutdown, as uvicorn does)" if code == -15 else ""
    print(f"   {name}: stopped with SIGTERM, exit code {code}{how}")
    return code


def logcheck(*args: str, env: dict[str, str]) -> int:
    """Run logcheck (its table and verdict go straight to the terminal); return its exit status."""
    return subprocess.run([str(BIN / "logcheck"), *args], env=env, cwd=REPO).returncode


def last_request_id(root: Path) -> str | None:
    """The request id of the last item the inference job sent through the gateway."""
    path = root / "inference" / "inference.log"
    for line in reversed(path.read_bytes().splitlines()):
        record = json.loads(line)
        if record.get("message") == "completion received":
            return str(record["request_id"])
    return None


def trace_id_of(root: Path, request_id: str) -> str | None:
    """The W3C trace id the gateway's access record of ``request_id`` carries (the trace the gateway started)."""
    path = root / "fastapi" / "fastapi.log"
    for line in reversed(path.read_bytes().splitlines()):
        record = json.loads(line)
        if record.get("request_id") == request_id and "trace_id" in record:
            return str(record["trace_id"])
    return None


def main() -> int:
    use_vllm = os.environ.get("DEMO_VLLM", "1") != "0"
    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(os.environ.get("MLOPS_LOG_ROOT") or REPO / "logs").resolve()
    env = {**os.environ, "MLOPS_LOG_ROOT": str(root), "PYTHONUNBUFFERED": "1", "LOGWRAP": str(BIN / "logwrap")}
    for key in ("MLOPS_LOG_DIR", "MLOPS_SERVICE", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    shown = root.relative_to(REPO) if root.is_relative_to(REPO) else root  # logcheck runs in the repo
    audit = ["--root", str(shown)] + ([] if use_vllm else ["--unused", "vllm"])

    servers: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        step("MLflow (entrypoints/mlflow.sh -> logwrap -> mlflow server), vLLM and the system sampler, at once")
        mlflow_port = vllm_server.free_port()
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        mlflow_cmd = ["sh", str(REPO / "entrypoints" / "mlflow.sh"), "--host", "127.0.0.1", "--port",
                      str(mlflow_port), "--workers", "1", "--backend-store-uri", f"sqlite:///{WORK / 'mlflow.db'}",
                      "--artifacts-destination", str(WORK / "mlartifacts")]
        servers.append((start(mlflow_cmd, {**env, "MLOPS_LOG_DIR": str(root / "mlflow"),
                                           "MLOPS_MLFLOW": str(BIN / "mlflow")}, "mlflow"), "mlflow (logwrap)"))
        backend_port = vllm_server.free_port()
        if use_vllm:
            if not vllm_server.vllm_available():
                sys.exit("demo: the vLLM venv is missing: run `make setup-vllm` (or `make demo`), or DEMO_VLLM=0")
            model = vllm_server.ensure_tiny_model(REPO / ".cache")
            args = vllm_server.vllm_serve_args(model, backend_port, log_requests=False)  # vllm.sh adds it
            vllm_env = {**vllm_server.vllm_env(env), "MLOPS_LOG_DIR": str(root / "vllm"),
                        "MLOPS_VLLM_PYTHON": str(vllm_server.VLLM_PYTHON)}
            servers.append((start(["sh", str(REPO / "entrypoints" / "vllm.sh"), *args], vllm_env,
                                  "vllm"), "vllm (logwrap)"))
            print(f"   vLLM is loading {model.name} on port {backend_port} (about 30 s on 2 cores)")
        else:
            print("   vLLM skipped (DEMO_VLLM=0): the gateway forwards to examples/backend_stub, a stand-in, and "
                  "logcheck is told vllm is unused")
            stub = [str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "backend_stub"),
                    "--host", "127.0.0.1", "--port", str(backend_port)]
            servers.append((start(stub, {**env, "MLOPS_SERVICE": "backend_stub"}, "backend_stub"), "backend stub"))
        sampler = [PY, "-m", "mlops_logging.system", "--interval", "2", "--processes",
                   "vllm,mlflow,gunicorn,uvicorn"]
        servers.append((start(sampler, env, "system"), "system sampler"))
        vllm_server.wait_for_http(f"{mlflow_url}/health", 120, proc=servers[0][0],
                                  log_path=WORK / "mlflow.console")
        print(f"   MLflow is up on {mlflow_url}")

        step("training job tracked in the live MLflow server -> logs/training/")
        run([PY, str(REPO / "examples" / "training" / "train.py"), "--epochs", "8", "--out",
             str(WORK / "model.json")], {**env, "MLFLOW_TRACKING_URI": mlflow_url})
        step("batch inference with the trained model -> logs/inference/")
        run([PY, str(REPO / "examples" / "inference" / "batch.py"), "--model", str(WORK / "model.json"), "--n", "40"],
            env, show=2)

        backend = f"http://127.0.0.1:{backend_port}"
        vllm_server.wait_for_http(f"{backend}/health", vllm_server.STARTUP_TIMEOUT_S, proc=servers[1][0],
                                  log_path=WORK / f"{'vllm' if use_vllm else 'backend_stub'}.console")
        print(f"   {'vLLM' if use_vllm else 'the backend stub'} is up on {backend}")

        step("FastAPI gateway under gunicorn, 2 UvicornWorkers (mlops_logging.gunicorn_conf) -> logs/fastapi/")
        gateway_port = vllm_server.free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        gunicorn = [str(BIN / "gunicorn"), "-c", "python:mlops_logging.gunicorn_conf", "-w", "2", "--chdir",
                    str(REPO / "examples" / "gateway"), "-b", f"127.0.0.1:{gateway_port}", "app:app"]
        servers.append((start(gunicorn, {**env, "MLOPS_SERVICE": "fastapi", "GATEWAY_BACKEND_URL": backend},
                              "gateway"), "gunicorn gateway"))
        vllm_server.wait_for_http(f"{gateway_url}/health", 60, proc=servers[-1][0], log_path=WORK / "gateway.console")

        step("batch inference through the gateway (each prompt with its own X-Request-ID)")
        run([PY, str(REPO / "examples" / "inference" / "batch.py"), "--endpoint", gateway_url, "--batch-size", "2",
             "--prompts", "Hello", "The logs say", "Every service writes", "One command proves it"], env, show=2)
        step("a little traffic through the gateway")
        import httpx

        with httpx.Client(base_url=gateway_url, timeout=120) as client:
            calls = [
                ("chat", client.post("/v1/chat/completions", json={
                    "model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})),
                ("models", client.get("/v1/models")),
                ("missing", client.get("/v1/nothing-here")),
            ]
            with client.stream("POST", "/v1/completions", json={"model": "tiny", "prompt": "Once", "max_tokens": 8,
                                                                "stream": True}) as streamed:
                chunks = sum(1 for line in streamed.iter_lines() if line.startswith("data: "))
            calls.append((f"stream ({chunks} events)", streamed))
        for what, response in calls:
            print(f"   {what}: HTTP {response.status_code}, X-Request-ID {response.headers.get('x-request-id')}")

        step("logcheck --probe: a request with a fresh X-Request-ID must reach logs/fastapi/ within seconds")
        logcheck(*audit, "--services", "fastapi", "--probe", f"fastapi={gateway_url}/health", env=env)
        rid = last_request_id(root)
        if rid is not None:
            step(f"logcheck --trace {rid}: one request through inference -> gateway -> "
                 f"{'vLLM' if use_vllm else 'backend stub'}")
            logcheck(*audit, "--trace", rid, env=env)
            trace_id = trace_id_of(root, rid)
            if trace_id is not None:
                step(f"logcheck --trace {trace_id}: the same request by its W3C trace id (the gateway started the "
                     "trace and sent it on in traceparent)")
                logcheck(*audit, "--trace", trace_id, env=env)
    finally:
        step("stopping every server with SIGTERM")
        for proc, name in reversed(servers):
            stop(proc, name)

    step(f"logcheck: every service's logs under {shown} (read back from disk; scripts/check_logs.sh audits them "
         "again any time)")
    return logcheck(*audit, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
