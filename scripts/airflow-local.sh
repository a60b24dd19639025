#!/usr/bin/env bash
# `make airflow`: Airflow on this machine with docqa's DAGs, ready to trigger.
#
# `airflow standalone` runs the api-server, scheduler, dag-processor and triggerer in one
# terminal, with a SQLite metadata DB and the LocalExecutor, all under airflow-home/ in the
# project (gitignored). The DAG tasks read the same DOCQA_* variables as the API and CLI;
# set them before `make airflow` (DOCQA_CHROMA_URL and DOCQA_DATABASE_URL to share one
# index with a running `docqa serve`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/.venv/bin"
PORT=${AIRFLOW_PORT:-8080}
USER_NAME=${AIRFLOW_USER:-docqa}

export AIRFLOW_HOME=${AIRFLOW_HOME:-$ROOT/airflow-home}
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$USER_NAME:admin"
export AIRFLOW__API__HOST=${AIRFLOW_HOST:-127.0.0.1}
export AIRFLOW__API__PORT=$PORT
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
# Tasks run in their own working folders: the data folder must be absolute.
export DOCQA_DATA_DIR=${DOCQA_DATA_DIR:-$ROOT/data}
case "$DOCQA_DATA_DIR" in /*) ;; *) DOCQA_DATA_DIR="$ROOT/$DOCQA_DATA_DIR" ;; esac
# No network at run time, and no telemetry.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
       SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true UNSTRUCTURED_DISABLE_NOTICE=1

# standalone starts its components as `airflow ...` from PATH.
export PATH="$BIN:$PATH"
mkdir -p "$AIRFLOW_HOME"
PASSWORDS="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
cat <<MSG
Airflow for docqa
  AIRFLOW_HOME  $AIRFLOW_HOME
  DAGs          $AIRFLOW__CORE__DAGS_FOLDER
  UI and API    http://$AIRFLOW__API__HOST:$PORT   (user $USER_NAME, password in $PASSWORDS)
  docqa data    $DOCQA_DATA_DIR${DOCQA_CHROMA_URL:+, Chroma server $DOCQA_CHROMA_URL}
Trigger from another terminal, for example:
  AIRFLOW_HOME=$AIRFLOW_HOME $BIN/airflow dags trigger docqa_sync --conf '{"sources": ["$ROOT/docs"]}'
  AIRFLOW_HOME=$AIRFLOW_HOME $BIN/airflow dags trigger docqa_ingest --conf '{"paths": ["$ROOT/README.md"]}'
Let uploads go through Airflow (docqa serve needs a Chroma server shared with the tasks):
  DOCQA_AIRFLOW__URL=http://127.0.0.1:$PORT DOCQA_AIRFLOW__USERNAME=$USER_NAME \\
  DOCQA_AIRFLOW__PASSWORD=<from the file above> DOCQA_CHROMA_URL=... docqa serve
MSG
exec "$BIN/airflow" standalone
