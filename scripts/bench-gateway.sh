#!/usr/bin/env bash
# The gateway (contract §8): three measurements, each printed as one JSON line.
#
#   scripts/bench-gateway.sh                 # all three
#   PHASES="idle load" scripts/bench-gateway.sh
#
# idle        N=10000 trackers connect and hand-shake, then stay silent: the gateway's RSS
#             before and after, per connection.
# load        N=10000 trackers, each sending a codec 8E packet of 1 to 5 records every 1 to 5 s
#             for DURATION=60 s: packets acknowledged and not, the trackers' ACK latency
#             (from the packet's last byte written to its ACK read) and the gateway's CPU.
# throughput  records/s through one gateway pinned to one core (SERVICE_CPUS, default 1),
#             FLOOD=200 trackers sending packets of 1 to 5 records back to back (LOAD_CPUS, default
#             0), beside a plain pipelined XADD client (`fleet preload`, batches of 1,000) on
#             the same core against the same Redis in the same run.
#
# Everything goes to its own stream bench:gateway:<pid>, deleted at exit. BUILD=0 skips the
# release build. Needs `ulimit -n` above 2 x N (the script raises the soft limit to the hard).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
DURATION=${DURATION:-60}
FLOOD=${FLOOD:-200}
FLOOD_S=${FLOOD_S:-20}
PRELOAD=${PRELOAD:-400000}
PHASES=${PHASES:-idle load throughput}
SERVICE_CPUS=${SERVICE_CPUS:-1}
LOAD_CPUS=${LOAD_CPUS:-0}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
STREAM=bench:gateway:$$
TCP=127.0.0.1:${GATEWAY_PORT:-25027}
METRICS=127.0.0.1:${GATEWAY_METRICS_PORT:-29091}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# release; `profiling` (the release settings with debug information) for perf.
BUILD_PROFILE=${BUILD_PROFILE:-release}

ulimit -n "$(ulimit -Hn)"
if [[ ${BUILD:-1} == 1 ]]; then
    cargo build --profile "$BUILD_PROFILE" -q -p processor-shell --bin processor --bin fleet
fi
PROCESSOR=${PROCESSOR:-$TARGET_DIR/$BUILD_PROFILE/processor}
FLEET=${FLEET:-$TARGET_DIR/$BUILD_PROFILE/fleet}

gateway_pid=
cleanup() {
    [[ -n $gateway_pid ]] && kill -TERM "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null
    redis-cli -u "$REDIS_URL" DEL "$STREAM" "$STREAM:plain" >/dev/null 2>&1 || true
}
trap cleanup EXIT

metric() {
    curl -s "http://$METRICS/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_gateway() {
    local pin=()
    [[ ${1:-} == pinned ]] && pin=(taskset -c "$SERVICE_CPUS")
    GATEWAY_TCP_ADDR=$TCP METRICS_ADDR=$METRICS REDIS_TELEMETRY_STREAM=$STREAM \
        LOG_LEVEL=warn GATEWAY_MAX_CONNECTIONS=$((N + 100)) \
        "${pin[@]}" "$PROCESSOR" gateway &
    gateway_pid=$!
    until curl -sf "http://$METRICS/readyz" >/dev/null; do sleep 0.1; done
}

stop_gateway() {
    kill -TERM "$gateway_pid"
    wait "$gateway_pid" || true
    gateway_pid=
    redis-cli -u "$REDIS_URL" DEL "$STREAM" >/dev/null
}

for phase in $PHASES; do
    case $phase in
    idle)
        start_gateway
        before=$(rss_kib "$gateway_pid")
        "$FLEET" --devices "$N" trackers --gateway "$TCP" --idle --duration-s 3600 >/dev/null &
        fleet_pid=$!
        until [[ $(metric processor_gateway_connections) == "$N" ]]; do sleep 0.5; done
        sleep 2
        after=$(rss_kib "$gateway_pid")
        kill -INT "$fleet_pid"; wait "$fleet_pid" || true
        echo "{\"phase\":\"idle\",\"connections\":$N,\"rss_before_kib\":$before,\"rss_after_kib\":$after,\"bytes_per_connection\":$(( (after - before) * 1024 / N ))}"
        stop_gateway
        ;;
    load)
        start_gateway
        t0=$(cpu_ticks "$gateway_pid")
        out=$("$FLEET" --devices "$N" trackers --gateway "$TCP" --duration-s "$DURATION" --connects-per-s 2000)
        t1=$(cpu_ticks "$gateway_pid")
        hz=$(getconf CLK_TCK)
        echo "{\"phase\":\"load\",\"fleet\":$out,\"gateway_packets\":$(metric 'processor_gateway_packets_total{transport="tcp"}'),\"gateway_redis_errors\":$(metric processor_gateway_redis_errors_total),\"gateway_cores\":$(echo "scale=2; ($t1 - $t0) / $hz / $DURATION" | bc),\"gateway_rss_kib\":$(rss_kib "$gateway_pid")}"
        stop_gateway
        ;;
    throughput)
        plain=$(taskset -c "$SERVICE_CPUS" "$FLEET" --stream "$STREAM:plain" --devices 1000 \
            --duplicate-rate 0 --late-rate 0 preload --count "$PRELOAD")
        redis-cli -u "$REDIS_URL" DEL "$STREAM:plain" >/dev/null
        start_gateway pinned
        through=$(taskset -c "$LOAD_CPUS" "$FLEET" --devices "$FLOOD" --duplicate-rate 0 \
            --late-rate 0 trackers --gateway "$TCP" --flood --max-records 5 --duration-s "$FLOOD_S")
        plain_rate=$(sed 's/.*"entries_per_s":\([0-9]*\).*/\1/' <<<"$plain")
        gateway_rate=$(sed 's/.*"records_per_s":\([0-9]*\).*/\1/' <<<"$through")
        echo "{\"phase\":\"throughput\",\"plain_xadd\":$plain,\"gateway\":$through,\"ratio\":$(echo "scale=3; $gateway_rate / $plain_rate" | bc)}"
        stop_gateway
        ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
    esac
done
