#!/usr/bin/env bash
# History features: trail snapshots, paced replays, track export.
#
#   scripts/bench-history.sh                          # the full sizes below (several minutes)
#   QUICK=1 scripts/bench-history.sh                  # small sizes: under a minute
#   PHASES="trail replay" scripts/bench-history.sh    # some of trail, replay, export
#
# Setup: a schema (bench_history) and a stream (bench:history:<pid>) of its own, both
# removed at exit; two public events made with `processor admin` (event create, then a
# start list imported: bib, name, device), one for trails and replays, one for the export;
# a release `processor` pinned to SERVICE_CPUS (default 0), the load generators (`loadgen`,
# `fleet`) to LOAD_CPUS (default 1). Redis and Postgres stay unpinned.
#
# Phases, and the JSON line each prints on stdout (after an "environment" line: date,
# machine, commit, versions, sizes):
#
# trail_load  (trail or replay) TRAIL_DEVICES devices (1000) report at 1 Hz in real time
#             (`fleet stream`, fix time = now; no duplicates, late uploads or faulty fixes)
#             for TRAIL_S + WARM_S seconds (600 + 10) to the stream the running processor
#             reads: a warm instance, which has read the whole trail window of every device
#             (its memory answers a device's window from FAULTY_MAX_FUTURE_MS after it
#             started reading, set to 5000 here; the default, 60 s, would need WARM_S=70).
#             Waits until the durable group has stored and acked all of them. Prints the
#             feed time and rate, the time until all were stored, and what the live path
#             read (`live_records`; `orphan_records` must be 0).
# trail       SUBSCRIBES times (50), one after the other, a new connection subscribes to
#             the event with {"trail_s": TRAIL_S}: the time from sending `subscribe` to
#             the complete `snapshot` message, p50/p99/max (nearest rank: with fewer than
#             100 samples p99 is the max) and the snapshot's size (devices; points: each
#             device's position plus its trail; bytes). "label":"warm".
#             Then the processor is restarted (SIGTERM, started again, /readyz on the ops
#             port) and RESTART_SUBSCRIBES (5) more are timed, each listed ("samples"):
#             "label":"restarted", with "stop_s" and "start_to_ready_s" of the restart.
# replay      One replay of the whole stored window (from = the first fix - 1 ms, to = the
#             last) at REPLAY_SPEED (60; 1000 devices: 60,000 positions/s to one client),
#             then REPLAYS (20) at once at REPLAYS_SPEED (10), REPLAYS_PER_CONNECTION (2)
#             per connection. "played_s_max" (first position to replay_end) against
#             "expected_s" (the window / speed): "pace_min" and "pace_p50" are expected /
#             played per replay (1 keeps pace, 0.5 took twice as long); "late_*_ms" how
#             long after its due time each position arrived; "positions_per_replay_min"
#             against "expected_positions_per_replay" (every stored position of the
#             window). Replays still running after twice the expected time plus 30 s are
#             cut off and counted up to their last position ("finished" < "replays").
# mixed       The live and durable paths with and without replays running beside them:
#             the trail event's devices report in real time again (`fleet stream`, 1 Hz
#             each) while MIXED_CLIENTS (20) clients (`loadgen` without a subcommand, all
#             subscribed to the event) measure MIXED_S (30) seconds of it: fix time to
#             receive p50/p99, messages/s, and the rows the durable path stored a second.
#             "label":"alone", then "label":"with_replays": the same while REPLAYS (20)
#             replays at REPLAYS_SPEED (10) run over the stored window.
# export_load (export) EXPORT_N positions (1,000,000) over EXPORT_DEVICES devices (1000),
#             one a second per device, interleaved across devices as live data is,
#             inserted straight into `positions` with one INSERT ... SELECT, then VACUUM
#             ANALYZE (a settled table, as autovacuum leaves it). Prints the insert time.
# export      GET /events/<uuid>/tracks?from=..&to=.. (GeoJSON) read to the end as fast as
#             it comes: points (counted from the body, against "expected_points"), bytes,
#             time to first byte, points/s and MiB/s; the processor's VmRSS sampled every
#             RSS_EVERY seconds (0.05) during it: before, max, after (flat memory: max -
#             before stays small whatever EXPORT_N), and its CPU.
#
# Every measurement also carries the CPU used over it, in cores (ticks / wall time): the
# processor's ("processor_cores", utime + stime from /proc/<pid>/stat), the load
# generator's ("loadgen_cores") and the whole machine's ("machine_cores", /proc/stat: the
# processor, Postgres, Redis, the load generator and whatever else runs).
#
# Settings (environment): the sizes above; PHASES; PIN=0 to pin nothing; SERVICE_CPUS,
# LOAD_CPUS; BUILD=0 to use the binaries already built (PROCESSOR=, LOADGEN=, FLEET= for
# others); BUILD_PROFILE (release; `profiling` for perf); CARGO_TARGET_DIR; PGBASE and
# REDIS_URL; KEEP=1 leaves the schema and its data in place, for a look with psql. Any
# processor setting the script does not set passes through from the environment (e.g.
# LIVE_TRAIL_MAX_POINTS; LIVE_REPLAY_MAX_PER_CONNECTION, to allow more replays per
# connection; DATABASE_POOL_SIZE).
#
# QUICK=1 changes the defaults to TRAIL_DEVICES=50 TRAIL_S=30 SUBSCRIBES=10
# RESTART_SUBSCRIBES=3 EXPORT_N=50000 EXPORT_DEVICES=50 (each still settable).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  : "${TRAIL_DEVICES:=50}" "${TRAIL_S:=30}" "${SUBSCRIBES:=10}" "${RESTART_SUBSCRIBES:=3}"
  : "${EXPORT_N:=50000}" "${EXPORT_DEVICES:=50}"
fi
TRAIL_DEVICES=${TRAIL_DEVICES:-1000}
TRAIL_S=${TRAIL_S:-600}
WARM_S=${WARM_S:-10}
SUBSCRIBES=${SUBSCRIBES:-50}
RESTART_SUBSCRIBES=${RESTART_SUBSCRIBES:-5}
REPLAY_SPEED=${REPLAY_SPEED:-60}
REPLAYS=${REPLAYS:-20}
REPLAYS_SPEED=${REPLAYS_SPEED:-10}
REPLAYS_PER_CONNECTION=${REPLAYS_PER_CONNECTION:-2}
EXPORT_N=${EXPORT_N:-1000000}
EXPORT_DEVICES=${EXPORT_DEVICES:-1000}
RSS_EVERY=${RSS_EVERY:-0.05}
PHASES=${PHASES:-trail replay mixed export}
MIXED_CLIENTS=${MIXED_CLIENTS:-20}
MIXED_S=${MIXED_S:-30}
PIN=${PIN:-1}
SERVICE_CPUS=${SERVICE_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
BUILD=${BUILD:-1}
BUILD_PROFILE=${BUILD_PROFILE:-release}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-900}
KEEP=${KEEP:-0}
PGBASE=${PGBASE:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

log() { printf 'bench-history: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for v in MIXED_CLIENTS MIXED_S TRAIL_DEVICES TRAIL_S WARM_S SUBSCRIBES RESTART_SUBSCRIBES REPLAYS REPLAYS_PER_CONNECTION \
  EXPORT_N EXPORT_DEVICES LOAD_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in REPLAY_SPEED REPLAYS_SPEED RSS_EVERY; do
  [[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$v must be a number (got '${!v}')"
done
[[ $PIN == [01] ]] || die "PIN must be 0 or 1 (got '$PIN')"
[[ $KEEP == [01] ]] || die "KEEP must be 0 or 1 (got '$KEEP')"
[ "$TRAIL_S" -le "${LIVE_TRAIL_MAX_S:-3600}" ] || die "TRAIL_S must be at most LIVE_TRAIL_MAX_S (${LIVE_TRAIL_MAX_S:-3600})"
[ "$EXPORT_DEVICES" -le "$EXPORT_N" ] || die "EXPORT_DEVICES must not exceed EXPORT_N"
want_trail=0 want_replay=0 want_mixed=0 want_export=0
for p in $PHASES; do
  case $p in
    trail) want_trail=1 ;;
    replay) want_replay=1 ;;
    mixed) want_mixed=1 ;;
    export) want_export=1 ;;
    *) die "PHASES: unknown phase '$p' (trail, replay, mixed, export)" ;;
  esac
done

svc_pin=()
load_pin=()
if [ "$PIN" = 1 ]; then
  command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
  taskset -c "$SERVICE_CPUS" true 2>/dev/null || die "cannot pin to SERVICE_CPUS=$SERVICE_CPUS (PIN=0 pins nothing)"
  taskset -c "$LOAD_CPUS" true 2>/dev/null || die "cannot pin to LOAD_CPUS=$LOAD_CPUS (PIN=0 pins nothing)"
  svc_pin=(taskset -c "$SERVICE_CPUS")
  load_pin=(taskset -c "$LOAD_CPUS")
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- services and binaries
bash scripts/services.sh
if [ "$BUILD" = 1 ]; then
  cargo build --profile "$BUILD_PROFILE" -q -p processor-shell --bins
fi
bin_dir="${CARGO_TARGET_DIR:-target}/$BUILD_PROFILE"
PROCESSOR=${PROCESSOR:-$bin_dir/processor}
LOADGEN=${LOADGEN:-$bin_dir/loadgen}
FLEET=${FLEET:-$bin_dir/fleet}
for bin in "$PROCESSOR" "$LOADGEN" "$FLEET"; do
  [ -x "$bin" ] || die "$bin is missing (build it, or run without BUILD=0)"
done

# ---------------------------------------------------------------- process bookkeeping
tmp=$(mktemp -d)
stream="bench:history:$$"
schema="bench_history"
db="$PGBASE?options=-c%20search_path%3D$schema"
pids=()
schema_made=0

source scripts/bench-processes.sh

cleanup() {
  local p
  for p in "${pids[@]}"; do stop "$p"; done
  redis-cli -u "$REDIS_URL" del "$stream" "$stream:dead-letter" >/dev/null 2>&1 || true
  if [ "$schema_made" = 1 ] && [ "$KEEP" = 1 ]; then
    log "KEEP=1: the data is left in schema $schema (DROP SCHEMA $schema CASCADE when done)"
  elif [ "$schema_made" = 1 ]; then
    psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Every CPU's busy ticks (user, nice, system, irq, softirq, steal): with cores(), how many
# cores the whole machine kept busy (Postgres, Redis, the load generator, anything else).
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
hz=$(getconf CLK_TCK)
# cores TICKS_BEFORE TICKS_AFTER NS_BEFORE NS_AFTER
cores() { awk -v a="$1" -v b="$2" -v t="$(($4 - $3))" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz / (t / 1e9)}'; }
secs() { awk -v t="$(($2 - $1))" 'BEGIN {printf "%.2f", t / 1e9}'; }
# merge JSON FIELDS: the object JSON with the fields (`"a":1,"b":2`) added at its end.
merge() { printf '%s,%s}\n' "${1%\}}" "$2"; }
sql() { psql -qtA -v ON_ERROR_STOP=1 "$db" -c "$1"; }

# run_load OUT COMMAND...: the load generator, pinned, its stdout to OUT (its stderr shown
# on failure). Sets load_cores: its own CPU (utime + stime, read from this subshell's
# cutime + cstime once it was reaped) over its wall time.
run_load() {
  local out=$1 t0 t1 rc=0
  shift
  t0=$(now_ns)
  (
    if "${load_pin[@]}" "$@" >"$out" 2>"$tmp/load.err"; then code=0; else code=$?; fi
    awk '{print $16 + $17}' "/proc/$BASHPID/stat" >"$tmp/load.ticks"
    exit "$code"
  ) || rc=$?
  t1=$(now_ns)
  if [ "$rc" != 0 ]; then
    cat "$tmp/load.err" >&2
    die "$(basename "$1") $2 failed (exit status $rc)"
  fi
  load_cores=$(cores 0 "$(cat "$tmp/load.ticks")" "$t0" "$t1")
}

# ---------------------------------------------------------------- environment
json_str() { tr -d '"\\' <<<"$1" | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=false
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || dirty=true
cpu_model=$(json_str "$(awk -F: '/^model name/ {print $2; exit}' /proc/cpuinfo)")
mem_gib=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
pg_version=$(json_str "$(psql -qtA "$PGBASE" -c 'SHOW server_version' 2>/dev/null || echo unknown)")
redis_version=$(redis-cli -u "$REDIS_URL" info server 2>/dev/null | awk -F: '/^redis_version/ {print $2}' | tr -d '\r')
echo "{\"mode\":\"environment\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"machine\":\"$(json_str "$(uname -srm)")\",\"cpu\":\"$cpu_model\",\"cpus\":$(nproc),\"mem_gib\":$mem_gib,\"load_avg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"commit\":\"$commit\",\"dirty\":$dirty,\"postgres\":\"$pg_version\",\"redis\":\"${redis_version:-unknown}\",\"profile\":\"$BUILD_PROFILE\",\"pin\":$PIN,\"service_cpus\":\"$SERVICE_CPUS\",\"load_cpus\":\"$LOAD_CPUS\",\"phases\":\"$PHASES\",\"trail_devices\":$TRAIL_DEVICES,\"trail_s\":$TRAIL_S,\"subscribes\":$SUBSCRIBES,\"restart_subscribes\":$RESTART_SUBSCRIBES,\"replay_speed\":$REPLAY_SPEED,\"replays\":$REPLAYS,\"replays_speed\":$REPLAYS_SPEED,\"replays_per_connection\":$REPLAYS_PER_CONNECTION,\"export_n\":$EXPORT_N,\"export_devices\":$EXPORT_DEVICES}"

# ---------------------------------------------------------------- schema and events
schema_made=1
psql -q "$PGBASE" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
DATABASE_URL="$db" "$PROCESSOR" migrate 2>/dev/null
redis-cli -u "$REDIS_URL" del "$stream" "$stream:dead-letter" >/dev/null

# make_event NAME FIRST_DEVICE COUNT: a public event whose entries (bib 1..COUNT) carry
# devices FIRST_DEVICE, FIRST_DEVICE + 1, ...; prints its id. Start lists are imported
# 10,000 rows at a time (the import's limit).
make_event() {
  local name=$1 first=$2 count=$3 event start
  event=$(DATABASE_URL="$db" "$PROCESSOR" admin event create --name "$name" --visibility public)
  for ((start = 0; start < count; start += 10000)); do
    awk -v first="$first" -v start="$start" -v end="$((start + 10000 < count ? start + 10000 : count))" \
      'BEGIN { print "bib,name,device_id"; for (i = start; i < end; i++) printf "%d,Rider %d,%d\n", i + 1, i + 1, first + i }' \
      >"$tmp/start-list.csv"
    DATABASE_URL="$db" "$PROCESSOR" admin import --event "$event" "$tmp/start-list.csv" >/dev/null
  done
  echo "$event"
}
trail_first=356307040000000 # `fleet`'s device numbering: device i is 356307040000000 + i
export_first=356307050000000
if [ "$want_trail" = 1 ] || [ "$want_replay" = 1 ]; then
  trail_event=$(make_event "bench history: trails and replays" "$trail_first" "$TRAIL_DEVICES")
fi
if [ "$want_export" = 1 ]; then
  export_event=$(make_event "bench history: export" "$export_first" "$EXPORT_DEVICES")
fi

# ---------------------------------------------------------------- the processor
# Two free ports (ws_port, ws_port + 1) below the kernel's ephemeral range.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 50); do
  ws_port=$((20000 + RANDOM % 12000))
  if port_free "$ws_port" && port_free "$((ws_port + 1))"; then break; fi
done
metrics_port=$((ws_port + 1))
plog=$tmp/processor.log
ready() { curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null; }

# Starts the processor and waits for /readyz; sets pid and start_to_ready_s.
start_processor() {
  local t0
  t0=$(now_ns)
  DATABASE_URL="$db" REDIS_TELEMETRY_STREAM="$stream" DEAD_LETTER_STREAM="$stream:dead-letter" \
    LIVE_WS_ADDR="127.0.0.1:$ws_port" METRICS_ADDR="127.0.0.1:$metrics_port" \
    INSTANCE_ID=bench-history MIGRATE_ON_START=false \
    FAULTY_MAX_FUTURE_MS="${FAULTY_MAX_FUTURE_MS:-5000}" LOG_LEVEL="${LOG_LEVEL:-warn}" \
    "${svc_pin[@]}" "$PROCESSOR" >>"$plog" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_for 60 "$pid" "$plog" "the processor to be ready" ready
  start_to_ready_s=$(secs "$t0" "$(now_ns)")
}
start_processor
ws_url="ws://127.0.0.1:$ws_port/live"

# A counter of the processor's metrics (prometheus-client's `_total`), 0 when absent.
metric() {
  curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%d", s}'
}

# ---------------------------------------------------------------- trail data, through the stream
if [ "$want_trail" = 1 ] || [ "$want_replay" = 1 ] || [ "$want_mixed" = 1 ]; then
  log "streaming $TRAIL_DEVICES devices at 1 Hz for $((TRAIL_S + WARM_S)) s to $stream"
  t0=$(now_ns)
  "${load_pin[@]}" "$FLEET" --stream "$stream" --devices "$TRAIL_DEVICES" \
    --duplicate-rate 0 --late-rate 0 --null-island-rate 0 --no-fix-rate 0 \
    stream --rate "$TRAIL_DEVICES" --duration-s "$((TRAIL_S + WARM_S))" \
    >"$tmp/preload.out" 2>"$tmp/preload.err" ||
    { cat "$tmp/preload.err" >&2; die "fleet stream failed"; }
  t1=$(now_ns)
  n_trail=$(sed -n 's/.*"entries":\([0-9]*\).*/\1/p' "$tmp/preload.out")
  [[ $n_trail =~ ^[0-9]+$ ]] || die "fleet stream printed no entry count: $(cat "$tmp/preload.out")"
  # Stored and acked: the durable group has no lag and nothing pending (XINFO GROUPS in
  # --raw form is one line per name and per value).
  drained() {
    { redis-cli -u "$REDIS_URL" --raw xinfo groups "$stream" 2>/dev/null || true; } |
      awk 'prev == "name" {g = $0} g == "durable-write" && prev == "lag" {lag = $0}
           g == "durable-write" && prev == "pending" {pending = $0} {prev = $0}
           END {exit !(lag == "0" && pending == "0")}'
  }
  wait_for "$LOAD_TIMEOUT" "$pid" "$plog" "the durable path to store $n_trail positions" drained
  t2=$(now_ns)
  stored=$(sql "SELECT count(*) FROM positions")
  [ "$stored" = "$n_trail" ] || log "warning: $stored positions stored, $n_trail published"
  live_read() { [ "$(metric processor_live_broadcast_records_total)" -ge "$n_trail" ]; }
  wait_for 120 "$pid" "$plog" "the live path to read $n_trail positions" live_read
  live_records=$(metric processor_live_broadcast_records_total)
  orphans=$(metric processor_live_broadcast_orphan_records_total)
  [ "$orphans" = 0 ] || log "warning: the live path counted $orphans orphan records (device map not loaded?)"
  echo "{\"mode\":\"trail_load\",\"positions\":$n_trail,\"devices\":$TRAIL_DEVICES,\"xadd_s\":$(secs "$t0" "$t1"),\"xadd_per_s\":$(awk -v n="$n_trail" -v t="$((t1 - t0))" 'BEGIN {printf "%.0f", n / (t / 1e9)}'),\"stored_s\":$(secs "$t0" "$t2"),\"stored\":$stored,\"live_records\":$live_records,\"orphan_records\":$orphans}"
  read -r replay_from replay_to < <(sql "SELECT floor(extract(epoch FROM min(ts)) * 1000)::int8 - 1, floor(extract(epoch FROM max(ts)) * 1000)::int8 FROM positions" | tr '|' ' ')
fi

# ---------------------------------------------------------------- trail snapshots
# trail_series COUNT LABEL [EXTRA FIELDS] [--each]
trail_series() {
  local count=$1 label=$2 extra=$3 c0 c1 m0 m1 t0 t1 out
  shift 3
  c0=$(cpu_ticks "$pid") m0=$(busy_ticks) t0=$(now_ns)
  run_load "$tmp/trail.out" "$LOADGEN" trail --url "$ws_url" --event "$trail_event" \
    --trail-s "$TRAIL_S" --count "$count" --label "$label" "$@"
  t1=$(now_ns) c1=$(cpu_ticks "$pid") m1=$(busy_ticks)
  out=$(cat "$tmp/trail.out")
  [[ $out == *"\"devices\":$TRAIL_DEVICES,"* ]] || log "warning: the $label snapshot does not hold $TRAIL_DEVICES devices: $out"
  merge "$out" "${extra}\"processor_cores\":$(cores "$c0" "$c1" "$t0" "$t1"),\"loadgen_cores\":$load_cores,\"machine_cores\":$(cores "$m0" "$m1" "$t0" "$t1")"
}
if [ "$want_trail" = 1 ]; then
  log "trail: $SUBSCRIBES subscribes with trail_s=$TRAIL_S"
  trail_series "$SUBSCRIBES" warm ""
  log "restarting the processor"
  t0=$(now_ns)
  stop "$pid"
  stop_s=$(secs "$t0" "$(now_ns)")
  start_processor
  log "trail: $RESTART_SUBSCRIBES subscribes right after the restart"
  trail_series "$RESTART_SUBSCRIBES" restarted "\"stop_s\":$stop_s,\"start_to_ready_s\":$start_to_ready_s," --each
fi

# ---------------------------------------------------------------- replays
# replay_run SPEED REPLAYS
replay_run() {
  local c0 c1 m0 m1 t0 t1
  c0=$(cpu_ticks "$pid") m0=$(busy_ticks) t0=$(now_ns)
  run_load "$tmp/replay.out" "$LOADGEN" replay --url "$ws_url" --event "$trail_event" \
    --from "$replay_from" --to "$replay_to" --speed "$1" --replays "$2" \
    --per-connection "$REPLAYS_PER_CONNECTION"
  t1=$(now_ns) c1=$(cpu_ticks "$pid") m1=$(busy_ticks)
  merge "$(cat "$tmp/replay.out")" "\"expected_positions_per_replay\":$stored,\"processor_cores\":$(cores "$c0" "$c1" "$t0" "$t1"),\"loadgen_cores\":$load_cores,\"machine_cores\":$(cores "$m0" "$m1" "$t0" "$t1")"
}
if [ "$want_replay" = 1 ]; then
  log "replay: 1 at speed $REPLAY_SPEED"
  replay_run "$REPLAY_SPEED" 1
  log "replay: $REPLAYS at once at speed $REPLAYS_SPEED"
  replay_run "$REPLAYS_SPEED" "$REPLAYS"
fi

# ---------------------------------------------------------------- live and durable beside replays
# mixed_run LABEL REPLAYS(0: none)
mixed_run() {
  local c0 c1 m0 m1 t0 t1 rows0 rows1 fleet_pid replays_pid="" extra=""
  rows0=$(metric processor_durable_rows_written_total)
  c0=$(cpu_ticks "$pid") m0=$(busy_ticks) t0=$(now_ns)
  "${load_pin[@]}" "$FLEET" --stream "$stream" --devices "$TRAIL_DEVICES" --seed 2 \
    --duplicate-rate 0 --late-rate 0 --null-island-rate 0 --no-fix-rate 0 \
    stream --rate "$TRAIL_DEVICES" --duration-s "$((MIXED_S + 15))" \
    >"$tmp/mixed-fleet.out" 2>"$tmp/mixed-fleet.err" &
  fleet_pid=$!
  if [ "$2" -gt 0 ]; then
    "${load_pin[@]}" "$LOADGEN" replay --url "$ws_url" --event "$trail_event" \
      --from "$replay_from" --to "$replay_to" --speed "$REPLAYS_SPEED" --replays "$2" \
      --per-connection "$REPLAYS_PER_CONNECTION" >"$tmp/mixed-replay.out" 2>"$tmp/mixed-replay.err" &
    replays_pid=$!
  fi
  run_load "$tmp/mixed.out" "$LOADGEN" --url "$ws_url" --event "$trail_event" \
    --clients "$MIXED_CLIENTS" --duration-s "$MIXED_S"
  t1=$(now_ns) c1=$(cpu_ticks "$pid") m1=$(busy_ticks)
  rows1=$(metric processor_durable_rows_written_total)
  if [ -n "$replays_pid" ]; then
    wait "$replays_pid" || { cat "$tmp/mixed-replay.err" >&2; die "the replays beside the live load failed"; }
    extra=",\"replays\":$2,\"replays_speed\":$REPLAYS_SPEED,\"replays_pace_min\":$(sed -n 's/.*"pace_min":\([0-9.]*\).*/\1/p' "$tmp/mixed-replay.out")"
  fi
  wait "$fleet_pid" || { cat "$tmp/mixed-fleet.err" >&2; die "fleet stream failed"; }
  merge "$(cat "$tmp/mixed.out")" "\"label\":\"$1\",\"stored_rows_per_s\":$(awk -v n="$((rows1 - rows0))" -v t="$((t1 - t0))" 'BEGIN {printf "%.0f", n / (t / 1e9)}')$extra,\"processor_cores\":$(cores "$c0" "$c1" "$t0" "$t1"),\"loadgen_cores\":$load_cores,\"machine_cores\":$(cores "$m0" "$m1" "$t0" "$t1")"
}
if [ "$want_mixed" = 1 ]; then
  log "mixed: $MIXED_CLIENTS live clients for $MIXED_S s, alone"
  mixed_run alone 0
  log "mixed: the same beside $REPLAYS replays at speed $REPLAYS_SPEED"
  mixed_run with_replays "$REPLAYS"
fi

# ---------------------------------------------------------------- export
if [ "$want_export" = 1 ]; then
  per_device=$(((EXPORT_N + EXPORT_DEVICES - 1) / EXPORT_DEVICES))
  # One fix a second per device, ending a day ago: far from the trail data's window.
  export_from=$((($(date +%s) - 86400 - per_device) * 1000))
  export_to=$((export_from + (per_device - 1) * 1000))
  log "export: inserting $EXPORT_N positions over $EXPORT_DEVICES devices"
  t0=$(now_ns)
  sql "INSERT INTO positions (device_id, ts, latitude, longitude, altitude, angle, speed,
         satellites, priority, event_io_id, faulty, received_at)
       SELECT ($export_first + g % $EXPORT_DEVICES)::text,
              to_timestamp(($export_from + (g / $EXPORT_DEVICES) * 1000) / 1000.0),
              round((54.6872 + 0.03 * sin(g / $EXPORT_DEVICES / 120.0 + g % $EXPORT_DEVICES))::numeric, 7),
              round((25.2797 + 0.05 * cos(g / $EXPORT_DEVICES / 120.0 + g % $EXPORT_DEVICES))::numeric, 7),
              120.5, 90.0, 42.5, 10, 0, 0, false, now()
       FROM generate_series(0, $EXPORT_N - 1) g" >/dev/null
  t1=$(now_ns)
  sql "VACUUM ANALYZE positions" >/dev/null
  t2=$(now_ns)
  echo "{\"mode\":\"export_load\",\"positions\":$EXPORT_N,\"devices\":$EXPORT_DEVICES,\"insert_s\":$(secs "$t0" "$t1"),\"vacuum_analyze_s\":$(secs "$t1" "$t2")}"

  rss0=$(rss_kib "$pid")
  (while [ -e "/proc/$pid/status" ]; do
    awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || break
    sleep "$RSS_EVERY"
  done) >"$tmp/rss" &
  sampler=$!
  pids+=("$sampler")
  log "export: GET /events/$export_event/tracks"
  c0=$(cpu_ticks "$pid") m0=$(busy_ticks) t0=$(now_ns)
  run_load "$tmp/export.out" "$LOADGEN" export \
    --url "http://127.0.0.1:$ws_port/events/$export_event/tracks?from=$export_from&to=$export_to"
  t1=$(now_ns) c1=$(cpu_ticks "$pid") m1=$(busy_ticks)
  stop "$sampler"
  rss1=$(rss_kib "$pid")
  rss_max=$(awk -v m="$rss0" '$1 > m {m = $1} END {print m}' "$tmp/rss")
  out=$(cat "$tmp/export.out")
  [[ $out == *"\"points\":$EXPORT_N,"* ]] || log "warning: the export does not hold $EXPORT_N points: $out"
  merge "$out" "\"expected_points\":$EXPORT_N,\"rss_before_kib\":$rss0,\"rss_max_kib\":$rss_max,\"rss_after_kib\":$rss1,\"rss_samples\":$(wc -l <"$tmp/rss"),\"processor_cores\":$(cores "$c0" "$c1" "$t0" "$t1"),\"loadgen_cores\":$load_cores,\"machine_cores\":$(cores "$m0" "$m1" "$t0" "$t1")"
fi

stop "$pid"
