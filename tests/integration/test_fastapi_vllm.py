"""The example gateway in front of the real vLLM CPU server: one request id in both logs.

vLLM 0.32 takes the incoming ``X-Request-Id`` as its request id and, with ``--enable-log-requests``, logs
``Received request cmpl-<id>`` / ``Received request chatcmpl-<id>``. Slow (vLLM starts in ~30-50 s): the server is
shared by the module. Needs ``.venv-vllm`` (``make setup-vllm``).
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi_support import BIN, CLEAN_EXIT, REPO, free_port, start, stop, wait_ready
from vllm_server import (
    SERVED_MODEL_NAME,
    ensure_tiny_model,
    stop_process,
    vllm_available,
    vllm_command,
    vllm_env,
    wait_for_http,
)

from support.records import read_records

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A vLLM OpenAI server on a free loopback port, its output in a file: (port, log path)."""
    if not vllm_available():
        pytest.skip("the vLLM CPU venv is missing: run `make setup-vllm` (scripts/setup-vllm.sh creates .venv-vllm)")
    model = ensure_tiny_model()
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(vllm_command(model, port), env=vllm_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc, log_path=log_path)
        yield port, log_path
    finally:
        stop_process(proc)


def test_gateway_request_id_reaches_vllm_log(vllm: tuple[int, Path], tmp_path: Path, log_root: Path) -> None:
    vllm_port, vllm_log = vllm
    port = free_port()
    out = tmp_path / "gateway.out"
    gateway = start([str(BIN / "uvicorn"), "app:app", "--app-dir", str(REPO / "examples" / "gateway"),
                     "--port", str(port), "--log-config", str(REPO / "src" / "mlops_logging" / "uvicorn_log_config.json")],
                    out, env={"GATEWAY_BACKEND_URL": f"http://127.0.0.1:{vllm_port}", "GATEWAY_TIMEOUT_S": "120"})
    cmpl_id, chat_id = f"vllm-cmpl-{uuid.uuid4().hex[:12]}", f"vllm-chat-{uuid.uuid4().hex[:12]}"
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", gateway, out)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            completion = client.post("/v1/completions", headers={"X-Request-ID": cmpl_id},
                                     json={"model": SERVED_MODEL_NAME, "prompt": "Hello", "max_tokens": 4})
            chat = client.post("/v1/chat/completions", headers={"X-Request-ID": chat_id},
                               json={"model": SERVED_MODEL_NAME, "max_tokens": 4,
                                     "messages": [{"role": "user", "content": "Hi"}]})
    finally:
        assert stop(gateway) in CLEAN_EXIT
    assert completion.status_code == 200, completion.text
    assert chat.status_code == 200, chat.text
    assert cmpl_id in completion.json()["id"] and chat_id in chat.json()["id"]

    records = read_records(log_root / "fastapi" / "fastapi.log")
    for rid, path in ((cmpl_id, "/v1/completions"), (chat_id, "/v1/chat/completions")):
        [access] = [r for r in records if r.get("logger") == "mlops_logging.access" and r["request_id"] == rid]
        assert access["path"] == path and access["status_code"] == 200
    text = vllm_log.read_text(errors="replace")
    assert re.search(rf"Received request cmpl-{re.escape(cmpl_id)}\b", text), text[-3000:]
    assert re.search(rf"Received request chatcmpl-{re.escape(chat_id)}\b", text), text[-3000:]
