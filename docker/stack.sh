#!/usr/bin/env bash
# The nightrecs deployment's services, defined once. `make stack` runs them here as local
# processes; docker/docker-compose.yml runs each in its own container. Both call this script,
# so the commands the images run are the ones `make stack` (and its test) runs.
#
#   stack.sh up            start every service in the background, PIDs in $STACK_DIR/pids
#   stack.sh down          stop them by those PIDs (each service's own process group)
#   stack.sh status        which recorded services are alive
#   stack.sh run SERVICE   one service in the foreground: postgres s3 spark-master spark-worker
#                          api-server scheduler dag-processor triggerer celery-worker [QUEUES]
#   stack.sh init          one-shot: metadata database, pools, bucket, demo data
#   stack.sh env           print the environment the services share (for `airflow` commands)
#
# Every server binds $STACK_BIND (127.0.0.1 here). Settings (environment, defaults):
#   STACK_DIR=.stack  STACK_PORT=8080 (web UI)  STACK_PG_PORT=5433
#   STACK_S3_PORT=8333 (and the 5 ports after it, and those + 10000, for SeaweedFS's inner servers)
#   STACK_SPARK_PORT=7077  STACK_SPARK_UI_PORT=8081  STACK_SPARK_WORKER_UI_PORT=8082
#   STACK_PARALLELISM=2  STACK_SPARK_CORES=2  STACK_SPARK_MEMORY=4g
#   STACK_DEMO_ARGS="" (extra `nightrecs demo-data` flags; STACK_DEMO=0: no demo data)
#   STACK_UNPAUSE=1 (DAGs start unpaused; the first scheduled run starts when the DAG is parsed)
#   STACK_RETRY_DELAY_SECONDS (the DAG's first retry delay; default the DAG's own, 5 minutes)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${STACK_VENV:-$REPO/.venv}
BIN=$VENV/bin
STACK_DIR=${STACK_DIR:-$REPO/.stack}
BIND=${STACK_BIND:-127.0.0.1}
PORT=${STACK_PORT:-8080}
PG_HOST=${STACK_PG_HOST:-127.0.0.1}
PG_PORT=${STACK_PG_PORT:-5433}
S3_HOST=${STACK_S3_HOST:-127.0.0.1}
S3_PORT=${STACK_S3_PORT:-8333}
SPARK_HOST=${STACK_SPARK_HOST:-127.0.0.1}
SPARK_WORKER_HOST=${STACK_SPARK_WORKER_HOST:-127.0.0.1}
SPARK_PORT=${STACK_SPARK_PORT:-7077}
API_HOST=${STACK_API_HOST:-127.0.0.1}
BUCKET=${STACK_BUCKET:-nightrecs}
SERVICES=(postgres s3 spark-master spark-worker api-server scheduler dag-processor triggerer)

log() { echo "stack: $*" >&2; }
die() { log "$*"; exit 1; }

# A secret shared by every service: from the environment (compose passes it to all
# containers), else generated once into the state folder.
secret() {
    local name=$1 value=${!1:-}
    if [[ -z $value ]]; then
        mkdir -p "$STACK_DIR/secrets"
        [[ -s $STACK_DIR/secrets/$name ]] || "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))' \
            > "$STACK_DIR/secrets/$name"
        value=$(< "$STACK_DIR/secrets/$name")
    fi
    printf '%s' "$value"
}

setup_env() {
    local pg_password s3_key s3_secret
    pg_password=$(secret STACK_PG_PASSWORD)
    s3_key=${STACK_S3_KEY:-nightrecs}
    s3_secret=$(secret STACK_S3_SECRET)
    export STACK_PG_PASSWORD=$pg_password STACK_S3_KEY=$s3_key STACK_S3_SECRET=$s3_secret
    export AIRFLOW_HOME=$STACK_DIR/airflow
    export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__EXECUTOR=${STACK_EXECUTOR:-LocalExecutor}
    export AIRFLOW__CORE__PARALLELISM=${STACK_PARALLELISM:-2}
    export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=$([[ ${STACK_UNPAUSE:-1} == 1 ]] && echo False || echo True)
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:$pg_password@$PG_HOST:$PG_PORT/airflow
    # task workers reach the execution API here (its default, localhost:8080, is wrong for any other port)
    export AIRFLOW__API__BASE_URL=http://$API_HOST:$PORT
    export AIRFLOW__API_AUTH__JWT_SECRET; AIRFLOW__API_AUTH__JWT_SECRET=$(secret STACK_JWT_SECRET)
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$STACK_DIR/secrets/ui-passwords.json
    export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
    export AIRFLOW__CELERY__BROKER_URL=${STACK_BROKER_URL:-redis://127.0.0.1:6379/0}
    export AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql://airflow:$pg_password@$PG_HOST:$PG_PORT/airflow
    # S3 for the tasks comes from an Airflow connection (the amazon provider's aws_conn_id);
    # the services themselves get no AWS variables.
    export NIGHTRECS_AWS_CONN_ID=nightrecs_s3
    export AIRFLOW_CONN_NIGHTRECS_S3
    AIRFLOW_CONN_NIGHTRECS_S3=$("$BIN/python" -c 'import json, sys; print(json.dumps({"conn_type": "aws",
        "login": sys.argv[1], "password": sys.argv[2],
        "extra": {"endpoint_url": sys.argv[3], "region_name": "us-east-1"}}))' \
        "$s3_key" "$s3_secret" "http://$S3_HOST:$S3_PORT")
    export NIGHTRECS_ROOT=${NIGHTRECS_ROOT:-s3://$BUCKET/shop}
    export NIGHTRECS_SPARK_MASTER=${NIGHTRECS_SPARK_MASTER:-spark://$SPARK_HOST:$SPARK_PORT}
    export NIGHTRECS_SPARK_JARS=${NIGHTRECS_SPARK_JARS:-$(ls "$VENV"/s3a-jars/*.jar 2>/dev/null | paste -sd, -)}
    export NIGHTRECS_GPU_QUEUE=${NIGHTRECS_GPU_QUEUE:-default} NIGHTRECS_GPU_POOL=${NIGHTRECS_GPU_POOL:-gpu}
    [[ -z ${STACK_RETRY_DELAY_SECONDS:-} ]] || export NIGHTRECS_RETRY_DELAY_SECONDS=$STACK_RETRY_DELAY_SECONDS
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export SPARK_HOME; SPARK_HOME=$("$BIN/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
    export PATH=$BIN:$PATH
}

# Postgres refuses to run as root: as root, run it as Debian's postgres user.
as_postgres() {
    if [[ $(id -u) == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

run_service() {
    local service=$1; shift
    case $service in
    postgres)
        local data=$STACK_DIR/postgres bin; bin=$(pg_bin)
        [[ -n $bin ]] || die "PostgreSQL not found: apt-get install postgresql"
        mkdir -p "$data" "$STACK_DIR/pg-socket"
        as_postgres test -x "$STACK_DIR" || die "user postgres cannot enter $STACK_DIR: choose a STACK_DIR whose folders it may traverse"
        [[ $(id -u) != 0 ]] || chown postgres: "$data" "$STACK_DIR/pg-socket"
        if [[ ! -s $data/PG_VERSION ]]; then
            printf '%s\n' "$STACK_PG_PASSWORD" > "$STACK_DIR/pg-socket/pw"
            [[ $(id -u) != 0 ]] || chown postgres: "$STACK_DIR/pg-socket/pw"
            as_postgres "$bin/initdb" -D "$data" -U airflow --pwfile="$STACK_DIR/pg-socket/pw" \
                --auth-local=scram-sha-256 --auth-host=scram-sha-256 > "$STACK_DIR/pg-socket/initdb.log"
            rm -f "$STACK_DIR/pg-socket/pw"
            # a compose network reaches it from other containers (password auth, as locally)
            echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
        fi
        local -a cmd=("$bin/postgres" -D "$data" -h "$BIND" -p "$PG_PORT" -k "$STACK_DIR/pg-socket")
        if [[ $(id -u) == 0 ]]; then exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${cmd[@]}"
        else exec "${cmd[@]}"; fi ;;
    s3)
        mkdir -p "$STACK_DIR/s3"
        # its inner servers on the 5 ports after the S3 port (gRPC: each + 10000), not on
        # weed's defaults, so this stack and another weed (a test's) can run side by side
        AWS_ACCESS_KEY_ID=$STACK_S3_KEY AWS_SECRET_ACCESS_KEY=$STACK_S3_SECRET exec "$BIN/weed" mini \
            -dir="$STACK_DIR/s3" -ip=127.0.0.1 -ip.bind="$BIND" -s3.port="$S3_PORT" \
            -master.port=$((S3_PORT + 1)) -volume.port=$((S3_PORT + 2)) -filer.port=$((S3_PORT + 3)) \
            -admin.port=$((S3_PORT + 4)) -webdav.port=$((S3_PORT + 5)) \
            -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false ;;
    spark-master)
        SPARK_LOCAL_IP=$BIND exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
            --host "$SPARK_HOST" --port "$SPARK_PORT" --webui-port "${STACK_SPARK_UI_PORT:-8081}" ;;
    spark-worker)
        mkdir -p "$STACK_DIR/spark-work"
        SPARK_LOCAL_IP=$BIND exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker \
            --host "$SPARK_WORKER_HOST" --cores "${STACK_SPARK_CORES:-2}" --memory "${STACK_SPARK_MEMORY:-4g}" \
            --webui-port "${STACK_SPARK_WORKER_UI_PORT:-8082}" --work-dir "$STACK_DIR/spark-work" \
            "spark://$SPARK_HOST:$SPARK_PORT" ;;
    api-server) exec "$BIN/airflow" api-server --host "$BIND" --port "$PORT" --workers 1 ;;
    # log servers: LocalExecutor tasks write their logs where the api-server reads them, so
    # the scheduler and triggerer serve none (theirs would bind every interface)
    scheduler) exec "$BIN/airflow" scheduler --skip-serve-logs ;;
    dag-processor) exec "$BIN/airflow" dag-processor ;;
    triggerer) exec "$BIN/airflow" triggerer --skip-serve-logs ;;
    # Celery (compose only): its log server is what the api-server fetches task logs from
    celery-worker) exec "$BIN/airflow" celery worker --queues "${1:-default}" --concurrency "${STACK_PARALLELISM:-2}" ;;
    *) die "unknown service $service (one of: ${SERVICES[*]} celery-worker)" ;;
    esac
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: poll a readiness check
    local what=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what not ready after ${seconds}s"
        sleep 1
    done
}

init() {
    wait_for postgres 120 pg_isready -h "$PG_HOST" -p "$PG_PORT"
    PGPASSWORD=$STACK_PG_PASSWORD psql -h "$PG_HOST" -p "$PG_PORT" -U airflow -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'airflow'" | grep -q 1 \
        || PGPASSWORD=$STACK_PG_PASSWORD createdb -h "$PG_HOST" -p "$PG_PORT" -U airflow airflow
    "$BIN/airflow" db migrate > "$STACK_DIR/logs/db-migrate.log" 2>&1 \
        || die "airflow db migrate failed: $STACK_DIR/logs/db-migrate.log"
    [[ -s $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE ]] \
        || printf '{"admin": "%s"}\n' "$(secret STACK_UI_PASSWORD)" > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
    "$BIN/airflow" pools set gpu 1 "GPU steps (train_model, embed_catalog, retrieve): one at a time per GPU" > /dev/null
    local -a aws=(env AWS_ACCESS_KEY_ID="$STACK_S3_KEY" AWS_SECRET_ACCESS_KEY="$STACK_S3_SECRET"
                  AWS_ENDPOINT_URL="http://$S3_HOST:$S3_PORT" AWS_DEFAULT_REGION=us-east-1)
    wait_for S3 120 "${aws[@]}" "$BIN/python" -c 'from nightrecs.tasks.storage import s3_client; s3_client().list_buckets()'
    "${aws[@]}" "$BIN/python" - "$BUCKET" <<'EOF'
import sys
from nightrecs.tasks.storage import s3_client
s3 = s3_client()
if sys.argv[1] not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
    s3.create_bucket(Bucket=sys.argv[1])
EOF
    if [[ ${STACK_DEMO:-1} == 1 ]] && ! "${aws[@]}" "$BIN/python" -c \
        'import sys; from nightrecs.tasks.storage import open_root; sys.exit(not open_root(sys.argv[1]).list("raw/catalog"))' \
        "$NIGHTRECS_ROOT"; then
        # shellcheck disable=SC2086  # STACK_DEMO_ARGS is a list of flags
        "${aws[@]}" "$BIN/nightrecs" demo-data --root "$NIGHTRECS_ROOT" ${STACK_DEMO_ARGS:-} > "$STACK_DIR/logs/demo-data.log" 2>&1 \
            || die "demo data failed: $STACK_DIR/logs/demo-data.log"
        log "demo shop written to $NIGHTRECS_ROOT"
    fi
}

alive() { [[ -s $STACK_DIR/pids/$1.pid ]] && kill -0 "$(< "$STACK_DIR/pids/$1.pid")" 2>/dev/null; }

start() {  # each service in its own session: its PID is its process group, stopped as one
    local service=$1
    alive "$service" && { log "$service already running (pid $(< "$STACK_DIR/pids/$service.pid"))"; return; }
    setsid "$0" run "$service" > "$STACK_DIR/logs/$service.log" 2>&1 < /dev/null &
    echo $! > "$STACK_DIR/pids/$service.pid"
}

up() {
    local t0=$SECONDS
    mkdir -p "$STACK_DIR/pids" "$STACK_DIR/logs"
    for service in postgres s3 spark-master spark-worker; do start "$service"; done
    init
    for service in api-server scheduler dag-processor triggerer; do start "$service"; done
    wait_for "web UI (log: $STACK_DIR/logs/api-server.log)" 300 curl -sf "http://$API_HOST:$PORT/api/v2/monitor/health"
    wait_for "DAG nightrecs_daily (log: $STACK_DIR/logs/dag-processor.log)" 300 \
        "$BIN/airflow" dags details nightrecs_daily
    for service in "${SERVICES[@]}"; do alive "$service" || die "$service exited: $STACK_DIR/logs/$service.log"; done
    log "up in $((SECONDS - t0)) s: web UI http://$API_HOST:$PORT (user admin, password in" \
        "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE), data root $NIGHTRECS_ROOT, logs $STACK_DIR/logs"
}

down() {
    local pid service
    for service in "${SERVICES[@]}"; do
        [[ -s $STACK_DIR/pids/$service.pid ]] || continue
        pid=$(< "$STACK_DIR/pids/$service.pid")
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for service in "${SERVICES[@]}"; do
        [[ -s $STACK_DIR/pids/$service.pid ]] || continue
        pid=$(< "$STACK_DIR/pids/$service.pid")
        for _ in $(seq 60); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$STACK_DIR/pids/$service.pid"
        log "stopped $service (pid $pid)"
    done
}

status() {
    for service in "${SERVICES[@]}"; do
        if alive "$service"; then echo "$service running (pid $(< "$STACK_DIR/pids/$service.pid"))"
        else echo "$service stopped"; fi
    done
}

[[ $# -ge 1 ]] || die "usage: stack.sh up|down|status|run SERVICE|init|env"
command=$1; shift
setup_env
case $command in
    up) up ;;
    down) down ;;
    status) status ;;
    run) [[ $# -ge 1 ]] || die "usage: stack.sh run SERVICE"; run_service "$@" ;;
    init) mkdir -p "$STACK_DIR/logs"; init ;;
    env) export -p | grep -E '^declare -x (AIRFLOW|NIGHTRECS_|STACK_|SPARK_HOME|HF_|TRANSFORMERS_)' ;;
    *) die "unknown command $command" ;;
esac
