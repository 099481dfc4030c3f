#!/usr/bin/env bash
# The main job, for a newcomer: Redis and Postgres up (installed if missing), a release
# processor with its migrations, and a simulated fleet publishing positions to it.
# Ctrl-C stops everything.
#
#   scripts/demo.sh                 # 100 devices, 100 positions/s
#   DEVICES=1000 RATE=2000 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-100}
RATE=${RATE:-100}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9090}
export LIVE_WS_ADDR=${LIVE_WS_ADDR:-127.0.0.1:8080}

bash scripts/services.sh
cargo build --release -q -p processor-shell --bins

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo stopped"
}
trap stop INT TERM EXIT

target/release/processor &
pids+=($!)
target/release/fleet --devices "$DEVICES" stream --rate "$RATE" &
pids+=($!)

cat <<MSG

Processor running; the fleet publishes $RATE positions/s from $DEVICES devices.
  metrics:    http://$METRICS_ADDR/metrics
  readiness:  http://$METRICS_ADDR/readyz
  stored:     psql "$DATABASE_URL" -c 'SELECT count(*) FROM positions'
Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
