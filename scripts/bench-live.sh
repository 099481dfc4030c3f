#!/usr/bin/env bash
# Live path: C WebSocket clients over E events, D devices publishing R positions/s.
#
#   C=1000 E=10 D=1000 R=5000 DURATION=20 scripts/bench-live.sh
#
# Seeds E public events (UUIDs by the Node.js baseline's rule) with D devices (device i in
# event i mod E), starts a release processor, connects C clients with `loadgen` (client i
# subscribes to event i mod E), then publishes with `fleet stream` (no imperfections) for
# DURATION seconds. Prints loadgen's figures (delivered/s, latency from XADD to receive)
# plus the expected deliveries, the processor's CPU and RSS.
#
#   IDLE=10000 scripts/bench-live.sh    # RSS per idle connection instead: IDLE clients that
#                                       # connect and stay, nothing published
#   PROCESSOR=/tmp/old/processor scripts/bench-live.sh   # another build of the processor
#                                       # (A/B against the same loadgen and fleet)
set -euo pipefail
cd "$(dirname "$0")/.."

C=${C:-1000}
E=${E:-10}
D=${D:-1000}
R=${R:-1000}
DURATION=${DURATION:-20}
PGBASE=${PGBASE:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bash scripts/services.sh
cargo build --release -q -p processor-shell --bins
PROCESSOR=${PROCESSOR:-target/release/processor}

stream="bench:live:$$"
schema="bench_live"
db="$PGBASE?options=-c%20search_path%3D$schema"
psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
DATABASE_URL="$db" target/release/processor migrate 2>/dev/null
psql -q "$db" >/dev/null <<SQL
INSERT INTO events SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(e), 12, '0'))::uuid, 'bench ' || e, 'public'
  FROM generate_series(0, $E - 1) e;
INSERT INTO entries SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(i), 12, '0'))::uuid,
  ('00000000-0000-4000-8000-' || lpad(to_hex(i % $E), 12, '0'))::uuid, 'device ' || i
  FROM generate_series(0, $D - 1) i;
INSERT INTO entry_devices SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(i), 12, '0'))::uuid,
  (356307040000000 + i)::text FROM generate_series(0, $D - 1) i;
SQL

ws_port=$((30000 + RANDOM % 10000))
metrics_port=$((ws_port + 1))
DATABASE_URL="$db" REDIS_TELEMETRY_STREAM="$stream" DEAD_LETTER_STREAM="$stream:dead-letter" \
  LIVE_WS_ADDR="127.0.0.1:$ws_port" METRICS_ADDR="127.0.0.1:$metrics_port" INSTANCE_ID=bench \
  MIGRATE_ON_START=false LOG_LEVEL=warn LIVE_DEVICE_EVENT_REFRESH_MS=1000 \
  "$PROCESSOR" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null; do sleep 0.2; done

if [ -n "${IDLE:-}" ]; then
  rss0=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  target/release/loadgen --url "ws://127.0.0.1:$ws_port/live" --clients "$IDLE" --idle \
    --duration-s 5 >/dev/null 2>/tmp/idle.err &
  lg=$!
  until grep -q "connected" /tmp/idle.err 2>/dev/null; do sleep 0.2; done
  until curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -q "^processor_live_connections{.*} $IDLE\$"; do sleep 0.2; done
  rss1=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  wait $lg || true
  kill -TERM $pid; wait $pid || true
  trap - EXIT
  echo "{\"mode\":\"idle\",\"connections\":$IDLE,\"rss_before_kib\":$rss0,\"rss_with_kib\":$rss1,\"bytes_per_connection\":$(( (rss1 - rss0) * 1024 / IDLE ))}"
  psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE" >/dev/null
  exit 0
fi

out=$(mktemp)
target/release/loadgen --url "ws://127.0.0.1:$ws_port/live" --clients "$C" --events "$E" \
  --duration-s "$DURATION" >"$out" 2>"$out.err" &
lg=$!
until grep -q "subscribed" "$out.err" 2>/dev/null; do sleep 0.2; done
cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
lgcpu0=$(awk '{print $14 + $15}' /proc/$lg/stat)
target/release/fleet --stream "$stream" --devices "$D" --duplicate-rate 0 --late-rate 0 \
  --null-island-rate 0 --no-fix-rate 0 stream --rate "$R" --duration-s "$DURATION" >/dev/null 2>&1 &
fl=$!
# Sampled just before the clients' measuring window closes (they then disconnect).
sleep "$((DURATION - 1))"
lgcpu1=$(awk '{print $14 + $15}' /proc/$lg/stat 2>/dev/null || echo "$lgcpu0")
wait $lg
cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
# The processor's own view: fix time to the frame written to the socket, as bucket upper
# bounds of processor_live_broadcast_lag_ms (1, 2, 4 ... ms).
lag=$(curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk '
  /^processor_live_broadcast_lag_ms_bucket/ { match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); n++; les[n] = le; cum[n] = $NF }
  END { total = cum[n]; p50 = p99 = "?";
        for (i = 1; i <= n; i++) { if (p50 == "?" && cum[i] >= 0.5 * total) p50 = les[i]; if (p99 == "?" && cum[i] >= 0.99 * total) p99 = les[i] }
        printf "{\"processor_lag_p50_le_ms\":\"%s\",\"processor_lag_p99_le_ms\":\"%s\"}", p50, p99 }')
wait $fl || true
rss_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
trap - EXIT
cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$DURATION" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz / s}')
lgcpu=$(awk -v a="$lgcpu0" -v b="$lgcpu1" -v s="$((DURATION - 1))" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz / s}')
expected=$(awk -v r="$R" -v c="$C" -v e="$E" 'BEGIN {printf "%.0f", r * c / e}')
echo "$(cat "$out") $lag {\"expected_per_s\":$expected,\"processor_cores\":$cpu,\"loadgen_cores\":$lgcpu,\"processor_rss_kib\":$rss_kib,\"C\":$C,\"E\":$E,\"D\":$D,\"R\":$R}"
rm -f "$out" "$out.err"
redis-cli -u "$REDIS_URL" del "$stream" "$stream:dead-letter" >/dev/null
psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE" >/dev/null
