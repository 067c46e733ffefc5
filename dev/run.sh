#!/usr/bin/env bash
# Starts NATS (JetStream), ClickHouse and the three services (release builds: `make run` builds
# them) on loopback, data under .data/.
# Ctrl-C (or SIGTERM) stops everything. Ports come from the usual variables; see docs/configuration.md.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CARGO_TARGET_DIR:=$HOME/.cache/adtrack-target}"
BIN="$CARGO_TARGET_DIR/release"
DATA="$PWD/.data"
NATS_PORT="${NATS_PORT:-4222}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:$NATS_PORT}"
export CLICKHOUSE_URL="${CLICKHOUSE_URL:-http://127.0.0.1:$CLICKHOUSE_HTTP_PORT}"
export INGEST_ADDR="${INGEST_ADDR:-127.0.0.1:8080}"
export QUERY_ADDR="${QUERY_ADDR:-127.0.0.1:8081}"
export INGEST_ADMIN_ADDR="${INGEST_ADMIN_ADDR:-127.0.0.1:8090}"
export QUERY_ADMIN_ADDR="${QUERY_ADMIN_ADDR:-127.0.0.1:8091}"
export AGGREGATOR_ADDR="${AGGREGATOR_ADDR:-127.0.0.1:8082}"
mkdir -p "$DATA/logs" "$DATA/secrets"
chmod 700 "$DATA/secrets"
# A secret made once per checkout and kept (mode 0600), so that it holds across restarts.
kept_secret() { # file
    [ -s "$1" ] || (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$1")
    chmod 600 "$1"
    cat "$1"
}
# Ingest's key for daily visitor ids: visitors stay the same across restarts (docs/api.md, "Privacy").
[ -n "${VISITOR_HASH_SECRET:-}" ] || VISITOR_HASH_SECRET="$(kept_secret "$DATA/visitor-hash-secret")"
export VISITOR_HASH_SECRET
# The key ingest signs messages with and the aggregator checks; given to those two only.
[ -n "${EVENT_SIGNING_KEY:-}" ] || EVENT_SIGNING_KEY="$(kept_secret "$DATA/secrets/event-signing-key")"
# The users of ClickHouse (deploy/clickhouse/users.d/adtrack.xml) and NATS
# (deploy/nats/adtrack-users.conf): the administrator runs the migrations, each service logs in
# as its own user. With EXTERNAL_CLICKHOUSE, set the CLICKHOUSE_* ones to that server's
# passwords. Each server gets all of its own; each service, only its own.
clickhouse_passwords=()
nats_passwords=()
passwords() { # CLICKHOUSE|NATS who...: sets <server>_<who>_PASSWORD, given or kept, and lists it
    local server="$1" who variable
    local -n list="${server,,}_passwords"
    shift
    for who in "$@"; do
        variable="${server}_${who}_PASSWORD"
        [ -n "${!variable:-}" ] || printf -v "$variable" '%s' "$(kept_secret "$DATA/secrets/${server,,}-${who,,}-password")"
        list+=("$variable=${!variable}")
    done
}
passwords CLICKHOUSE ADMIN INGEST AGGREGATOR QUERY ANALYST
passwords NATS ADMIN INGEST AGGREGATOR QUERY
CLICKHOUSE_ADMIN_USER="${CLICKHOUSE_ADMIN_USER:-adtrack_admin}"
as_user() { # clickhouse-user clickhouse-password nats-user nats-password command...
    CLICKHOUSE_USER="$1" CLICKHOUSE_PASSWORD="$2" NATS_USER="$3" NATS_PASSWORD="$4" "${@:5}"
}
# Analytics without a key, for this machine only: the query service refuses to start without
# a key unless ANONYMOUS_READS is on, and here it listens on loopback. Given a key, or another
# address, it is left to what you set.
READS="with a key only (API_KEY, READ_API_KEYS)"
if [ -z "${API_KEY:-}${READ_API_KEYS:-}" ] && [[ "$QUERY_ADDR" =~ ^(127\.0\.0\.1|localhost|\[::1\]): ]]; then
    export ANONYMOUS_READS="${ANONYMOUS_READS:-true}"
fi
[ "${ANONYMOUS_READS:-false}" = "true" ] && READS="open to anyone on this machine, no key (ANONYMOUS_READS=true)"
# No rate limits unless asked for: a load test from this machine is one address.
export RATE_LIMIT_PER_IP="${RATE_LIMIT_PER_IP:-0}" RATE_LIMIT_PER_CALLER="${RATE_LIMIT_PER_CALLER:-0}"
LIMIT="ingest off (RATE_LIMIT_PER_IP=0: a load test here comes from one address)"
[ "$RATE_LIMIT_PER_IP" = "0" ] || LIMIT="ingest $RATE_LIMIT_PER_IP events/s per client IP"
LIMIT="$LIMIT; query off (RATE_LIMIT_PER_CALLER=0)"
[ "$RATE_LIMIT_PER_CALLER" = "0" ] || LIMIT="${LIMIT%; *}; query $RATE_LIMIT_PER_CALLER requests/s per caller"

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    # Services first (they drain and ack), then the servers they use.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null || true
        wait "${pids[$i]}" 2>/dev/null || true
    done
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

wait_http() { # url what
    for _ in $(seq 1 60); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "$2 did not come up; see $DATA/logs/" >&2
    exit 1
}

(export "${nats_passwords[@]}" && exec "${NATS_SERVER:-nats-server}" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$DATA/nats" \
    -c deploy/nats/adtrack-users.conf) >"$DATA/logs/nats.log" 2>&1 &
pids+=($!)
if [ -z "${EXTERNAL_CLICKHOUSE:-}" ]; then
    (export "${clickhouse_passwords[@]}" && exec .venv/bin/python dev/clickhouse_server.py "$DATA/clickhouse" \
        "$CLICKHOUSE_HTTP_PORT" "$CLICKHOUSE_TCP_PORT") >"$DATA/logs/clickhouse.log" 2>&1 &
    pids+=($!)
fi
wait_http "$CLICKHOUSE_URL/ping" "ClickHouse"

as_user "$CLICKHOUSE_ADMIN_USER" "$CLICKHOUSE_ADMIN_PASSWORD" adtrack_admin "$NATS_ADMIN_PASSWORD" \
    "$BIN/aggregator" migrate --seed >"$DATA/logs/migrate.log" 2>&1 || { cat "$DATA/logs/migrate.log"; exit 1; }
EVENT_SIGNING_KEY="$EVENT_SIGNING_KEY" as_user adtrack_aggregator "$CLICKHOUSE_AGGREGATOR_PASSWORD" adtrack_aggregator "$NATS_AGGREGATOR_PASSWORD" \
    "$BIN/aggregator" >"$DATA/logs/aggregator.log" 2>&1 &
pids+=($!)
# Redirect and pixel events JetStream did not confirm wait here to be replayed.
EVENT_SIGNING_KEY="$EVENT_SIGNING_KEY" SPOOL_DIR="$DATA/ingest-spool" as_user adtrack_ingest "$CLICKHOUSE_INGEST_PASSWORD" adtrack_ingest "$NATS_INGEST_PASSWORD" \
    "$BIN/ingest" >"$DATA/logs/ingest.log" 2>&1 &
pids+=($!)
as_user adtrack_query "$CLICKHOUSE_QUERY_PASSWORD" adtrack_query "$NATS_QUERY_PASSWORD" \
    "$BIN/query" >"$DATA/logs/query.log" 2>&1 &
pids+=($!)
wait_http "http://$AGGREGATOR_ADDR/readyz" "aggregator"
wait_http "http://$INGEST_ADDR/readyz" "ingest"
wait_http "http://$QUERY_ADDR/readyz" "query"

cat <<MSG

  demo player http://$INGEST_ADDR/demo/
  dashboard   http://$QUERY_ADDR/dashboard/
  ingest      http://$INGEST_ADDR      (Swagger UI: http://$INGEST_ADDR/docs)
  query       http://$QUERY_ADDR      (Swagger UI: http://$QUERY_ADDR/docs)
  analytics   $READS
  rate limit  $LIMIT
  metrics     http://$INGEST_ADMIN_ADDR/metrics  http://$QUERY_ADMIN_ADDR/metrics  http://$AGGREGATOR_ADDR/metrics
  NATS        $NATS_URL   (user adtrack_admin, password in $DATA/secrets/nats-admin-password)
  ClickHouse  $CLICKHOUSE_URL   (SQL: user adtrack_analyst, password in $DATA/secrets/clickhouse-analyst-password)
  logs        $DATA/logs/

Ready. Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited unexpectedly; see $DATA/logs/" >&2
exit 1
