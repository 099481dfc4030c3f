#!/usr/bin/env bash
# Live path: C WebSocket clients over E events, D devices publishing R positions/s.
#
#   C=1000 E=10 D=1000 R=5000 DURATION=20 scripts/bench-live.sh
#
# Seeds E public events (UUIDs by the Node.js baseline's rule) with D devices (device i in
# event i mod E), starts a release processor, starts `fleet stream` (no imperfections), then
# connects C clients with `loadgen` (client i subscribes to event i mod E), which measure for
# DURATION seconds once all are subscribed. The fleet publishes before that window opens and
# until it has closed, so the window sees steady traffic at both edges and delivered ==
# expected when nothing is lost (when the fleet started after the clients, the first few
# tenths of a second of the window had no traffic and delivered read 1 to 3 % low).
# A service that cannot keep up therefore enters the window with the backlog it built while
# the clients connected and subscribed ("subscribe_s" says how long that took; an overloaded
# service can take minutes, and SUBSCRIBE_TIMEOUT, default 300 s, ends the run), so its
# latency reads higher than when the fleet started after the clients. FLEET_FIRST=0 starts
# the fleet after the clients, as before, to compare with older figures (its delivered/s
# reads low, so bench-compare.sh's loss check does not apply to it).
# Prints one line: loadgen's figures (delivered, delivered/s, latency from the fix time,
# which is the XADD time, to receive, clients closed), the processor's own lag histogram,
# then the expected deliveries per second, delivered/expected ("delivered_ratio"; it also
# varies by about 0.5 / (sqrt(D) x reports per device in the window) with where the window
# falls among the devices' report times), the measured service's CPU (cores over the window)
# and RSS, and loadgen's CPU.
#
#   IDLE=10000 scripts/bench-live.sh    # RSS per idle connection instead: IDLE clients that
#                                       # connect and stay, nothing published
#   PROCESSOR=/tmp/old/processor scripts/bench-live.sh   # another build of the processor
#                                       # (A/B against the same loadgen and fleet)
#
# Peers (same loadgen, fleet, devices and events; the line says "target"):
#
#   TARGET=minimal scripts/bench-live.sh   # minimal-fanout's bench-standin (Rust, the floor)
#   TARGET=node scripts/bench-live.sh      # node-baseline (the design this project replaces)
#
#   For peers nothing is seeded or migrated (they take D and E on their command line and map
#   device i to event i mod E themselves) and the lag quantiles are null (the processor's own
#   metric). "processor_cores" and "processor_rss_kib" are the measured service's, whichever
#   it is. Both peers read the stream named on their command line (--stream, STREAM=), so
#   every run, whatever the target, publishes on its own stream bench:live:<pid>, deleted at
#   exit. The peers are not in this repository: PEERS_DIR (default ../shared/peers from the
#   repository root) must hold minimal-fanout/ and node-baseline/. They are copied to
#   PEERS_BUILD_DIR (default /tmp/processor-peers) and built there: minimal-fanout with
#   `cargo build --release` (its own workspace and target dir) when its binary is missing or
#   older than the sources, node-baseline with one `npm install` (needs node and npm).
#   Ready means: processor /readyz; minimal /healthz (its stream reader starts with it and
#   reads from `$`: whatever it might miss is published before the clients' window); node
#   /healthz and its consumer group on the stream.
#
#   PIN=1 scripts/bench-live.sh     # the measured service under `taskset -c 1`, loadgen and
#                                   # fleet under `taskset -c 0` (SERVICE_CPUS, LOAD_CPUS to
#                                   # change them); Redis and Postgres stay unpinned.
#                                   # Default PIN=0: nothing pinned. A pinned service has
#                                   # one CPU, however many threads it starts.
#   BUILD=0 scripts/bench-live.sh   # skip `cargo build`: use the binaries in target/release
#                                   # (or LOADGEN=..., FLEET=..., like PROCESSOR=...)
#   BUILD_PROFILE=profiling scripts/bench-live.sh   # build and use target/profiling: the
#                                   # release build with debug information, for perf
#                                   # (Cargo.toml's [profile.profiling])
#
# scripts/bench-compare.sh runs this for the three targets side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

TARGET=${TARGET:-processor}
C=${C:-1000}
E=${E:-10}
D=${D:-1000}
R=${R:-1000}
DURATION=${DURATION:-20}
PIN=${PIN:-0}
SERVICE_CPUS=${SERVICE_CPUS:-1}
LOAD_CPUS=${LOAD_CPUS:-0}
BUILD=${BUILD:-1}
FLEET_FIRST=${FLEET_FIRST:-1}
SUBSCRIBE_TIMEOUT=${SUBSCRIBE_TIMEOUT:-300}
PEERS_DIR=${PEERS_DIR:-$root/../shared/peers}
PEERS_BUILD_DIR=${PEERS_BUILD_DIR:-/tmp/processor-peers}
PGBASE=${PGBASE:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

log() { printf 'bench-live: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

case $TARGET in
  processor | minimal | node) ;;
  *) die "TARGET must be processor, minimal or node (got '$TARGET')" ;;
esac
for v in C E D R DURATION SUBSCRIBE_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$DURATION" -ge 2 ] || die "DURATION must be at least 2 (seconds)"
[[ $PIN == [01] ]] || die "PIN must be 0 or 1 (got '$PIN')"
[[ $FLEET_FIRST == [01] ]] || die "FLEET_FIRST must be 0 or 1 (got '$FLEET_FIRST')"

svc_pin=()
load_pin=()
if [ "$PIN" = 1 ]; then
  command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
  svc_pin=(taskset -c "$SERVICE_CPUS")
  load_pin=(taskset -c "$LOAD_CPUS")
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- peers: copy and build
peer_missing() {
  log "error: TARGET=$TARGET needs the peer $1, not found at $PEERS_DIR/$1."
  log "The peers are not part of this repository; set PEERS_DIR to the folder holding"
  log "minimal-fanout/ and node-baseline/ (default: ../shared/peers from the repository root)."
  exit 2
}

# Copies peer $1 from PEERS_DIR to PEERS_BUILD_DIR (shared/ may be read-only), leaving
# whatever was built or installed there (target/, node_modules/, Cargo.lock) in place.
copy_peer() {
  local dst=$PEERS_BUILD_DIR/$1
  mkdir -p "$dst"
  cp -rf "$PEERS_DIR/$1/." "$dst/"
  # The copies keep the read-only modes of shared/; make them replaceable next time.
  find "$dst" \( -path "$dst/target" -o -path "$dst/node_modules" \) -prune -o -exec chmod u+w {} +
}

# True when the file $2 is missing or anything under PEERS_DIR/$1 is newer than it.
stale() { [ ! -e "$2" ] || [ -n "$(find "$PEERS_DIR/$1" -newer "$2" -print -quit)" ]; }

prepare_minimal() {
  [ -f "$PEERS_DIR/minimal-fanout/Cargo.toml" ] || peer_missing minimal-fanout
  local dst=$PEERS_BUILD_DIR/minimal-fanout
  minimal_bin=$dst/target/release/bench-standin
  if stale minimal-fanout "$minimal_bin"; then
    command -v cargo >/dev/null || die "building minimal-fanout needs cargo"
    log "building minimal-fanout in $dst (the first build takes a few minutes)"
    copy_peer minimal-fanout
    CARGO_TARGET_DIR="$dst/target" cargo build --release -q --manifest-path "$dst/Cargo.toml" >&2
    touch "$minimal_bin" # cargo may keep an up-to-date binary's old mtime
  fi
}

prepare_node() {
  [ -f "$PEERS_DIR/node-baseline/server.js" ] || peer_missing node-baseline
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "TARGET=node needs node and npm on PATH"
  fi
  node_dir=$PEERS_BUILD_DIR/node-baseline
  local stamp=$node_dir/node_modules/.package-lock.json # written by npm install
  if stale node-baseline "$stamp"; then
    log "installing node-baseline's dependencies in $node_dir"
    copy_peer node-baseline
    (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error) >&2
    touch "$stamp"
  fi
}

# ---------------------------------------------------------------- services and binaries
case $TARGET in
  minimal) prepare_minimal ;;
  node) prepare_node ;;
esac
if [ "$TARGET" = processor ] || [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" != PONG ]; then
  bash scripts/services.sh
fi
BUILD_PROFILE=${BUILD_PROFILE:-release}
if [ "$BUILD" = 1 ]; then
  cargo build --profile "$BUILD_PROFILE" -q -p processor-shell --bins
fi
bin_dir="${CARGO_TARGET_DIR:-target}/$BUILD_PROFILE"
PROCESSOR=${PROCESSOR:-$bin_dir/processor}
LOADGEN=${LOADGEN:-$bin_dir/loadgen}
FLEET=${FLEET:-$bin_dir/fleet}
needed=("$LOADGEN" "$FLEET")
[ "$TARGET" != processor ] || needed+=("$PROCESSOR")
for bin in "${needed[@]}"; do
  [ -x "$bin" ] || die "$bin is missing (build it, or run without BUILD=0)"
done

# ---------------------------------------------------------------- process bookkeeping
tmp=$(mktemp -d)
stream="bench:live:$$"
schema="bench_live"
db="$PGBASE?options=-c%20search_path%3D$schema"
pids=()
schema_made=0

source scripts/bench-processes.sh

cleanup() {
  local p
  for p in "${pids[@]}"; do stop "$p"; done
  redis-cli -u "$REDIS_URL" del "$stream" "$stream:dead-letter" >/dev/null 2>&1 || true
  if [ "$schema_made" = 1 ]; then
    psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The number after "$1": in the JSON text $2.
jnum() { sed -n "s/.*\"$1\":\(-\{0,1\}[0-9.]*\).*/\1/p" <<<"$2"; }

# ---------------------------------------------------------------- the measured service
# Two free ports (ws_port, ws_port + 1), below the kernel's ephemeral range, so that neither
# another run's listener nor one of the clients' outgoing connections holds them.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
  ws_port=$((20000 + RANDOM % 12000))
  if port_free "$ws_port" && port_free "$((ws_port + 1))" &&
    ! ss -Htan 2>/dev/null | awk '{print $4}' | grep -qE ":($ws_port|$((ws_port + 1)))\$"; then
    break
  fi
done
metrics_port=$((ws_port + 1))
group="live-broadcast-bench-$$" # node-baseline's consumer group (GROUP_PREFIX-INSTANCE_ID)
case $TARGET in
  processor)
    schema_made=1
    psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
    DATABASE_URL="$db" "$bin_dir/processor" migrate 2>/dev/null
    psql -q "$db" >/dev/null <<SQL
INSERT INTO events SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(e), 12, '0'))::uuid, 'bench ' || e, 'public'
  FROM generate_series(0, $E - 1) e;
INSERT INTO entries SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(i), 12, '0'))::uuid,
  ('00000000-0000-4000-8000-' || lpad(to_hex(i % $E), 12, '0'))::uuid, 'device ' || i
  FROM generate_series(0, $D - 1) i;
INSERT INTO entry_devices SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(i), 12, '0'))::uuid,
  (356307040000000 + i)::text FROM generate_series(0, $D - 1) i;
SQL
    DATABASE_URL="$db" REDIS_TELEMETRY_STREAM="$stream" DEAD_LETTER_STREAM="$stream:dead-letter" \
      LIVE_WS_ADDR="127.0.0.1:$ws_port" METRICS_ADDR="127.0.0.1:$metrics_port" INSTANCE_ID=bench \
      MIGRATE_ON_START=false LOG_LEVEL=warn LIVE_DEVICE_EVENT_REFRESH_MS=1000 \
      "${svc_pin[@]}" "$PROCESSOR" &
    ;;
  minimal)
    "${svc_pin[@]}" "$minimal_bin" --listen "127.0.0.1:$ws_port" --redis "$REDIS_URL" \
      --stream "$stream" --devices "$D" --events "$E" 2>"$tmp/service.log" &
    ;;
  node)
    HOST=127.0.0.1 PORT="$ws_port" REDIS_URL="$REDIS_URL" STREAM="$stream" INSTANCE_ID="bench-$$" \
      BENCH_DEVICES="$D" BENCH_EVENTS="$E" \
      "${svc_pin[@]}" node "$node_dir/server.js" 2>"$tmp/service.log" &
    ;;
esac
pid=$!
pids+=("$pid")

ready() {
  case $TARGET in
    processor) curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null ;;
    minimal) curl -sf "http://127.0.0.1:$ws_port/healthz" >/dev/null ;;
    node)
      curl -sf "http://127.0.0.1:$ws_port/healthz" >/dev/null &&
        redis-cli -u "$REDIS_URL" xinfo groups "$stream" 2>/dev/null | grep -qxF "$group"
      ;;
  esac
}
# IDLE connections registered by the service.
counted() {
  case $TARGET in
    processor) curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -q "^processor_live_connections{.*} $IDLE\$" ;;
    node) curl -sf "http://127.0.0.1:$ws_port/stats" | grep -q "\"conns\":$IDLE," ;;
    minimal) sleep 0.5 ;; # no counter to read; it accepts and upgrades on one thread
  esac
}
svc_log=$tmp/service.log
[ "$TARGET" != processor ] || svc_log=/dev/null # the processor logs to the terminal
wait_for 60 "$pid" "$svc_log" "$TARGET to be ready" ready

# ---------------------------------------------------------------- idle connections
if [ -n "${IDLE:-}" ]; then
  rss0=$(rss_kib "$pid")
  "${load_pin[@]}" "$LOADGEN" --url "ws://127.0.0.1:$ws_port/live" --clients "$IDLE" --idle \
    --duration-s 5 >/dev/null 2>"$tmp/idle.err" &
  lg=$!
  pids+=("$lg")
  wait_for 300 "$lg" "$tmp/idle.err" "$IDLE idle connections" grep -qs "connected" "$tmp/idle.err"
  # Every handshake has completed; wait until the service has registered them too.
  wait_for 60 "$pid" "$svc_log" "$TARGET to count $IDLE connections" counted
  rss1=$(rss_kib "$pid")
  wait "$lg" || true
  forget "$lg"
  echo "{\"mode\":\"idle\",\"target\":\"$TARGET\",\"connections\":$IDLE,\"rss_before_kib\":$rss0,\"rss_with_kib\":$rss1,\"bytes_per_connection\":$(((rss1 - rss0) * 1024 / IDLE))}"
  exit 0
fi

# ---------------------------------------------------------------- load and measurement
# The fleet, bounded (so that it cannot outlive a killed run by long); it is stopped as soon
# as the clients' window has closed.
start_fleet() {
  "${load_pin[@]}" "$FLEET" --stream "$stream" --devices "$D" --duplicate-rate 0 --late-rate 0 \
    --null-island-rate 0 --no-fix-rate 0 stream --rate "$R" --duration-s "$1" \
    >/dev/null 2>"$tmp/fleet.err" &
  fl=$!
  pids+=("$fl")
}
published() { [ "$(redis-cli -u "$REDIS_URL" xlen "$stream")" -gt 0 ]; }
if [ "$FLEET_FIRST" = 1 ]; then
  start_fleet "$((SUBSCRIBE_TIMEOUT + DURATION + 30))"
  wait_for 30 "$fl" "$tmp/fleet.err" "the fleet's first positions" published
fi

tl0=$(now_ns)
"${load_pin[@]}" "$LOADGEN" --url "ws://127.0.0.1:$ws_port/live" --clients "$C" --events "$E" \
  --duration-s "$DURATION" >"$tmp/loadgen.out" 2>"$tmp/loadgen.err" &
lg=$!
pids+=("$lg")
wait_for "$SUBSCRIBE_TIMEOUT" "$lg" "$tmp/loadgen.err" "$C clients to subscribe" grep -qs "subscribed" "$tmp/loadgen.err"
t0=$(now_ns)
cpu0=$(cpu_ticks "$pid")
lgcpu0=$(cpu_ticks "$lg")
[ "$FLEET_FIRST" = 1 ] || start_fleet "$DURATION"
# loadgen's CPU is sampled just before its window closes (the clients then disconnect).
sleep "$((DURATION - 1))"
tl1=$(now_ns)
lgcpu1=$(cpu_ticks "$lg" 2>/dev/null || echo "$lgcpu0")
lg_rc=0
wait "$lg" || lg_rc=$?
forget "$lg"
if [ "$lg_rc" != 0 ]; then
  cat "$tmp/loadgen.err" >&2
  die "loadgen failed (exit status $lg_rc)"
fi
t1=$(now_ns)
cpu1=$(cpu_ticks "$pid")
alive "$fl" || log "warning: the fleet stopped before the window closed; delivered figures are low"
lag='{"processor_lag_p50_le_ms":null,"processor_lag_p99_le_ms":null}'
if [ "$TARGET" = processor ]; then
  # The processor's own view: fix time to the frame written to the socket, as bucket upper
  # bounds of processor_live_broadcast_lag_ms (1, 2, 4 ... ms).
  lag=$(curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk '
    /^processor_live_broadcast_lag_ms_bucket/ { match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); n++; les[n] = le; cum[n] = $NF }
    END { total = cum[n]; p50 = p99 = "?";
          for (i = 1; i <= n; i++) { if (p50 == "?" && cum[i] >= 0.5 * total) p50 = les[i]; if (p99 == "?" && cum[i] >= 0.99 * total) p99 = les[i] }
          printf "{\"processor_lag_p50_le_ms\":\"%s\",\"processor_lag_p99_le_ms\":\"%s\"}", p50, p99 }')
fi
rss=$(rss_kib "$pid")
stop "$fl"
stop "$pid"

hz=$(getconf CLK_TCK)
subscribe_s=$(awk -v t="$((t0 - tl0))" 'BEGIN {printf "%.1f", t / 1e9}')
cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$((t1 - t0))" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz / (t / 1e9)}')
lgcpu=$(awk -v a="$lgcpu0" -v b="$lgcpu1" -v t="$((tl1 - t0))" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz / (t / 1e9)}')
# What reaches the clients per second: fleet gives each device a report every
# max(1, int(D / R * 1000)) ms (so the real rate can be a little over R), device i is in
# event i mod E, client i watches event i mod E.
expected=$(awk -v c="$C" -v e="$E" -v d="$D" -v r="$R" 'BEGIN {
  iv = int(d / r * 1000); if (iv < 1) iv = 1
  for (k = 0; k < e; k++) {
    nc = (k < c) ? int((c - 1 - k) / e) + 1 : 0; nd = (k < d) ? int((d - 1 - k) / e) + 1 : 0
    s += nc * nd }
  printf "%.1f", s * 1000 / iv }')
loadgen=$(cat "$tmp/loadgen.out")
ratio=$(awk -v got="$(jnum delivered_per_s "$loadgen")" -v want="$expected" 'BEGIN {printf "%.4f", got / want}')
echo "$loadgen $lag {\"target\":\"$TARGET\",\"expected_per_s\":$(printf '%.0f' "$expected"),\"delivered_ratio\":$ratio,\"processor_cores\":$cpu,\"loadgen_cores\":$lgcpu,\"subscribe_s\":$subscribe_s,\"processor_rss_kib\":$rss,\"pin\":$PIN,\"fleet_first\":$FLEET_FIRST,\"C\":$C,\"E\":$E,\"D\":$D,\"R\":$R}"
