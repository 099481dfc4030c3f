#!/usr/bin/env bash
# Durable-path throughput: stream -> committed and acked, against the binary-COPY ceiling.
#
#   scripts/bench-durable.sh                 # N=500000 DEVICES=5000
#   N=1000000 BATCH=2000 INFLIGHT=3 POOL=4 scripts/bench-durable.sh
#
# Preloads N realistic positions (fleet preload: attributes, 1% duplicates, 1% late), starts
# a release processor on them, and times until the durable group has no lag and nothing
# pending. Then binary-COPYs the same rows into an unindexed table. Prints one JSON line
# per measurement.
#
#   BUILD_PROFILE=profiling PROFILER="perf record -g -o /tmp/perf.data" scripts/bench-durable.sh
#                     # the same run under a profiler, built with debug information
#                     # (Cargo.toml's [profile.profiling]; the release binary has none)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-500000}
DEVICES=${DEVICES:-5000}
BATCH=${BATCH:-1000}
INFLIGHT=${INFLIGHT:-2}
POOL=${POOL:-4}
SEED=${SEED:-1}
PGBASE=${PGBASE:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

BUILD_PROFILE=${BUILD_PROFILE:-release}

bash scripts/services.sh
cargo build --profile "$BUILD_PROFILE" -q -p processor-shell --bins
bin="${CARGO_TARGET_DIR:-target}/$BUILD_PROFILE"

stream="bench:durable:$$"
dead="$stream:dead-letter"
schema="bench_durable"
db="$PGBASE?options=-c%20search_path%3D$schema"
psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
DATABASE_URL="$db" "$bin/processor" migrate 2>/dev/null
redis-cli -u "$REDIS_URL" del "$stream" "$dead" >/dev/null

"$bin/fleet" --stream "$stream" --devices "$DEVICES" --seed "$SEED" preload --count "$N"

metrics_port=$((20000 + RANDOM % 10000))
start_ns=$(date +%s%N)
DATABASE_URL="$db" REDIS_TELEMETRY_STREAM="$stream" DEAD_LETTER_STREAM="$dead" \
  METRICS_ADDR="127.0.0.1:$metrics_port" LIVE_WS_ADDR="127.0.0.1:0" INSTANCE_ID=bench \
  DURABLE_BATCH_SIZE="$BATCH" DURABLE_MAX_IN_FLIGHT="$INFLIGHT" DATABASE_POOL_SIZE="$POOL" \
  MIGRATE_ON_START=false LOG_LEVEL=warn \
  ${PROFILER:-} "$bin/processor" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT

# Done when every entry was delivered (lag 0) and acked (pending 0).
# XINFO GROUPS in --raw form is one line per name and per value.
# One redis-cli per poll: the polling itself must not take CPU the run needs.
drained() { { redis-cli -u "$REDIS_URL" --raw xinfo groups "$stream" 2>/dev/null || true; } \
  | awk 'prev == "name" {g = $0} g == "durable-write" && prev == "lag" {lag = $0}
         g == "durable-write" && prev == "pending" {pending = $0} {prev = $0}
         END {exit !(lag == "0" && pending == "0")}'; }
until drained; do sleep 0.1; done
end_ns=$(date +%s%N)
rss_kib=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
cpu_ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
kill -TERM $pid; wait $pid || true
trap - EXIT

secs=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
rows=$(psql -qtA "$db" -c "SELECT count(*) FROM positions")
rate=$(awk -v n="$N" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
cpu=$(awk -v t="$cpu_ticks" -v s="$secs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz / s}')
echo "{\"mode\":\"durable\",\"entries\":$N,\"rows_stored\":$rows,\"seconds\":$secs,\"entries_per_s\":$rate,\"peak_rss_kib\":$rss_kib,\"processor_cores\":$cpu,\"batch\":$BATCH,\"in_flight\":$INFLIGHT,\"pool\":$POOL}"

DATABASE_URL="$db" "$bin/fleet" --devices "$DEVICES" --seed "$SEED" copy-ceiling --count "$N"
redis-cli -u "$REDIS_URL" del "$stream" "$dead" >/dev/null
psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE" >/dev/null
