"""The demo: run the stack's jobs and servers for real, then show every service's log file and trace one request.

1. training job and local batch inference (configure_logging);
2. a real vLLM CPU server (tiny local model) behind logwrap -> logs/vllm/vllm.log;
3. the FastAPI gateway under uvicorn (2 workers) in front of it -> logs/fastapi/fastapi.log;
4. batch inference through the gateway, so one request id shows up in inference, fastapi and vllm logs;
5. SIGTERM to the servers, then a table: file, records, levels, all lines valid JSON.

Run with `make demo` (it installs .venv and .venv-vllm first). Logs go to $MLOPS_LOG_ROOT (default ./logs).
Without the vLLM venv (`--no-vllm`) the gateway points at nothing and the demo shows its 502 records instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import vllm_server  # noqa: E402 - scripts/vllm_server.py: venv, tiny model, command line

PY = sys.executable
WORK = REPO / ".cache" / "demo"


def step(text: str) -> None:
    """Print a step header."""
    print(f"\n== {text}", flush=True)


def run(cmd: list[str], env: dict[str, str]) -> None:
    """Run a job to completion, failing the demo if it fails; its stdout (readable lines) is shown trimmed."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=WORK)
    lines = proc.stdout.splitlines()
    for line in lines[:3] + (["   ..."] if len(lines) > 6 else []) + lines[-3:] if len(lines) > 6 else lines:
        print(f"   {line[:150]}")
    if proc.returncode != 0:
        sys.exit(f"demo: {' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr}")


def start(cmd: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """Start a server in its own session; its console output goes to .cache/demo/<name>.console."""
    out = open(WORK / f"{name}.console", "wb")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=WORK)


def stop(proc: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    """SIGTERM, wait, report the exit code (what `docker stop` does)."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    print(f"   {name}: stopped with SIGTERM, exit code {code}")


def summarise(root: Path) -> int:
    """One row per log file; returns how many files had a line that is not a valid record."""
    bad_files = 0
    print(f"   {'file':<42} {'records':>8}  {'valid':<5}  levels")
    for path in sorted(root.glob("*/*.log")):
        levels: Counter[str] = Counter()
        invalid = 0
        lines = path.read_bytes().splitlines()
        for line in lines:
            try:
                record = json.loads(line)
                levels[record["level"]] += 1
                assert {"timestamp", "message", "service"} <= record.keys()
            except (ValueError, KeyError, AssertionError):
                invalid += 1
        bad_files += bool(invalid)
        shown = ", ".join(f"{k} {v}" for k, v in sorted(levels.items()))
        print(f"   {str(path.relative_to(root.parent)):<42} {len(lines):>8}  {'yes' if not invalid else 'NO':<5}  {shown}")
    return bad_files


def trace(root: Path) -> None:
    """Show the records of the last request id of the inference batch in every file that has it."""
    inference = root / "inference" / "inference.log"
    ids = [json.loads(x).get("request_id") for x in inference.read_bytes().splitlines()]
    rid = next((i for i in reversed(ids) if i and i.startswith("batch-") and not i[6:].isdigit()), None)
    if rid is None:
        return
    print(f"   request id {rid}:")
    for path in sorted(root.glob("*/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if rid in line:
                record = json.loads(line)
                print(f"   {path.parent.name:<10} {record['level']:<7} {record['message'][:110]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM server (no .venv-vllm needed)")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(os.environ.get("MLOPS_LOG_ROOT") or REPO / "logs").resolve()
    env = {**os.environ, "MLOPS_LOG_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    env.pop("MLOPS_LOG_DIR", None)
    env.pop("MLOPS_SERVICE", None)

    step("training job (configure_logging) -> logs/training/")
    run([PY, str(REPO / "examples/training/train.py"), "--epochs", "5", "--out", str(WORK / "model.json")], env)
    step("batch inference with the trained model -> logs/inference/")
    run([PY, str(REPO / "examples/inference/batch.py"), "--model", str(WORK / "model.json"), "--n", "30"], env)

    servers: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        backend = "http://127.0.0.1:9"  # nothing listens: the gateway answers 502 and logs why
        if not args.no_vllm:
            if not vllm_server.vllm_available():
                sys.exit("demo: the vLLM venv is missing: run `make setup-vllm` (or `make demo`), or pass --no-vllm")
            step("vLLM CPU server behind logwrap -> logs/vllm/ (about 25 s to start)")
            model = vllm_server.ensure_tiny_model(REPO / ".cache")
            port = vllm_server.free_port()
            wrapped = [PY, "-m", "mlops_logging.wrap", "--service", "vllm", "--subreaper", "--kill-after", "20", "--",
                       *vllm_server.vllm_command(model, port)]
            servers.append((start(wrapped, {**env, **vllm_server.vllm_env()}, "vllm"), "logwrap + vllm"))
            vllm_server.wait_for_http(f"http://127.0.0.1:{port}/health", 240, proc=servers[-1][0])
            backend = f"http://127.0.0.1:{port}"
            print(f"   vLLM is up on {backend}")

        step("FastAPI gateway under uvicorn, 2 workers -> logs/fastapi/")
        gport = vllm_server.free_port()
        log_config = REPO / "src" / "mlops_logging" / "uvicorn_log_config.json"
        gateway = [PY, "-m", "uvicorn", "--app-dir", str(REPO / "examples" / "gateway"), "app:app", "--host",
                   "127.0.0.1", "--port", str(gport), "--workers", "2", "--log-config", str(log_config)]
        servers.append((start(gateway, {**env, "MLOPS_SERVICE": "fastapi", "GATEWAY_BACKEND_URL": backend},
                              "gateway"), "uvicorn gateway"))
        vllm_server.wait_for_http(f"http://127.0.0.1:{gport}/health", 60, proc=servers[-1][0])

        step("batch inference through the gateway (each prompt with its own X-Request-ID)")
        run([PY, str(REPO / "examples/inference/batch.py"), "--endpoint", f"http://127.0.0.1:{gport}", "--prompts",
             "Hello", "The logs say", "Every service writes"], env)
    finally:
        step("stopping the servers")
        for proc, name in reversed(servers):
            stop(proc, name)

    step(f"log files under {root}")
    bad = summarise(root)
    step("one request, traced across services")
    trace(root)
    print(f"\nEvery line above was read back from disk. Try: tail -n 3 {root}/*/*.log")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
