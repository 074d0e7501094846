#!/bin/sh
# MLflow's tracking server behind logwrap: the ENTRYPOINT of docker/Dockerfile.mlflow.
#
#   docker run IMAGE [mlflow server flags]           e.g. --backend-store-uri sqlite:////mlflow/mlflow.db --workers 2
#   docker run IMAGE mlflow server [flags]           the official image's spelling works too
#   docker run IMAGE <other command>                 runs it as is, without logwrap (a shell, `mlflow db upgrade`)
#   entrypoints/mlflow.sh [flags]                    outside an image (set the variables below)
#
# It execs (so logwrap is PID 1 of the container):
#   logwrap --service mlflow --subreaper --signal-group -- mlflow server <your flags>
#   - --signal-group: TERM goes to every process of the server, not only to `mlflow server`, which passes it on to
#     uvicorn alone; its job runner and huey consumers would notice only by polling, and a stop soon after the start
#     left them running past logwrap's drain timeout (measured here: 7-9 s, and 2-7 processes left over, in 2 of 3
#     stops; with the group signalled 1-5 s and none);
#   - log file $MLOPS_LOG_DIR/mlflow.log, MLOPS_LOG_DIR=/logs unless set (mount the host's logs/mlflow at /logs);
#   - NO_COLOR=1; PYTHONUNBUFFERED=1 unless set;
#   - MLFLOW_HOST=0.0.0.0 unless set: MLflow's own variable for --host, so other containers can connect;
#   - MLFLOW_SERVER_ALLOWED_HOSTS: MLflow's own variable for --allowed-hosts (the Host headers it answers; others
#     get 403). Unless set: mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*,10.*,172.1[6-9].*,172.2[0-9].*,172.3[01].*,192.168.*
#     that is the compose service name `mlflow`, loopback and private addresses, at any port. Set it to the names
#     clients use (e.g. mlflow.example.com,mlflow:5000).
#   A --host or --allowed-hosts flag you pass wins over both variables (MLflow reads flags before variables).
#
# Variables for running outside an image (the defaults are the image's):
#   LOGWRAP       the logwrap command     (default: logwrap)
#   MLOPS_MLFLOW  the mlflow command      (default: mlflow)
set -eu

case ${1-} in
    mlflow)
        if [ "${2-}" = server ]; then shift 2; else exec "$@"; fi ;;
    server)
        shift ;;
    '' | -*)
        ;;
    *)
        exec "$@" ;;
esac

: "${MLOPS_LOG_DIR:=/logs}"
: "${PYTHONUNBUFFERED:=1}"
: "${MLFLOW_HOST:=0.0.0.0}"
: "${MLFLOW_SERVER_ALLOWED_HOSTS:=mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*,10.*,172.1[6-9].*,172.2[0-9].*,172.3[01].*,192.168.*}"
NO_COLOR=1
export MLOPS_LOG_DIR PYTHONUNBUFFERED MLFLOW_HOST MLFLOW_SERVER_ALLOWED_HOSTS NO_COLOR

exec "${LOGWRAP:-logwrap}" --service mlflow --subreaper --signal-group -- "${MLOPS_MLFLOW:-mlflow}" server "$@"
