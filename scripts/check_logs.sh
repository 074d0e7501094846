#!/bin/sh
# Audit the stack's logs with the repo's defaults: prints logcheck's table and verdict, exits with its status
# (0 every required service OK, 1 not, 2 bad usage).
#
#   scripts/check_logs.sh [logcheck options]     e.g. --unused vllm, --json, --trace ID, --probe fastapi=URL
#
# Defaults: log root $MLOPS_LOG_ROOT, else <repo>/logs; transcript in <repo>/.context/terminal/; the repo's
# .venv/bin/logcheck when it exists, else logcheck on PATH (LOGCHECK overrides). Later options win over these.
set -eu

repo=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
if [ -z "${LOGCHECK:-}" ]; then
    if [ -x "$repo/.venv/bin/logcheck" ]; then
        LOGCHECK=$repo/.venv/bin/logcheck
    else
        LOGCHECK=logcheck
    fi
fi

status=0
"$LOGCHECK" --root "${MLOPS_LOG_ROOT:-$repo/logs}" --transcript-dir "$repo/.context/terminal" "$@" || status=$?
exit "$status"
