#!/usr/bin/env bash
# The main job, for a newcomer: Redis and Postgres up (installed if missing), a processor with
# its migrations, a public and a private demo event, a Teltonika gateway, and a simulated
# fleet of trackers talking to it; open the printed URL for the live map. The whole chain:
# trackers -> gateway -> stream -> processor -> map. Ctrl-C stops everything.
#
#   scripts/demo.sh                      # 100 trackers, a packet of 1-5 records every 1-5 s
#   DEVICES=1000 scripts/demo.sh
#   SOURCE=stream RATE=2000 scripts/demo.sh   # no gateway: the fleet XADDs JSON itself
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-100}
RATE=${RATE:-100}
SOURCE=${SOURCE:-trackers}
GATEWAY_TCP_ADDR=${GATEWAY_TCP_ADDR:-127.0.0.1:5027}
GATEWAY_METRICS_ADDR=${GATEWAY_METRICS_ADDR:-127.0.0.1:9091}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9090}
export LIVE_WS_ADDR=${LIVE_WS_ADDR:-127.0.0.1:8080}
# A demo secret: tokens for the private event are signed with it. Set your own in production.
export LIVE_AUTH_JWT_SECRET=${LIVE_AUTH_JWT_SECRET:-demo-secret-for-the-processor-demo-only}
# The demo seeds its events while running: pick up new entries within a second.
export LIVE_DEVICE_EVENT_REFRESH_MS=${LIVE_DEVICE_EVENT_REFRESH_MS:-1000}

bash scripts/services.sh
# `-p processor-shell`: the processor's own features (none of the simulation's test
# features), the same build as the README's `cargo run -p processor-shell --release`.
cargo build --release -q -p processor-shell --bin processor --bin fleet
bin="${CARGO_TARGET_DIR:-target}/release"

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo stopped"
}
trap stop INT TERM EXIT

"$bin/processor" migrate
seeded=$("$bin/fleet" --devices "$DEVICES" seed)
PUBLIC_EVENT=$(sed -n 's/^PUBLIC_EVENT=//p' <<<"$seeded")
PRIVATE_EVENT=$(sed -n 's/^PRIVATE_EVENT=//p' <<<"$seeded")
ORPHAN_DEVICE=$(sed -n 's/^ORPHAN_DEVICE=//p' <<<"$seeded")
DEMO_TOKEN=$(sed -n 's/^DEMO_TOKEN=//p' <<<"$seeded")

MIGRATE_ON_START=false "$bin/processor" &
pids+=($!)
# GET /readyz on $1 without curl, which a fresh machine may lack.
ready() (
    { exec 3<>"/dev/tcp/${1%:*}/${1##*:}"; } 2>/dev/null || exit 1
    printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
    IFS= read -r status <&3 && [[ $status == *" 200 "* ]]
)
until ready "$METRICS_ADDR"; do
    kill -0 "${pids[0]}" 2>/dev/null || { echo "the processor stopped; see its log above"; exit 1; }
    sleep 0.2
done
if [[ $SOURCE == trackers ]]; then
    GATEWAY_TCP_ADDR=$GATEWAY_TCP_ADDR METRICS_ADDR=$GATEWAY_METRICS_ADDR \
        "$bin/processor" gateway &
    pids+=($!)
    until ready "$GATEWAY_METRICS_ADDR"; do
        kill -0 "${pids[1]}" 2>/dev/null || { echo "the gateway stopped; see its log above"; exit 1; }
        sleep 0.2
    done
    "$bin/fleet" --devices "$DEVICES" trackers --gateway "$GATEWAY_TCP_ADDR" &
    source_text="$DEVICES Teltonika trackers (codec 8E over TCP) send packets to the gateway at
$GATEWAY_TCP_ADDR (metrics: http://$GATEWAY_METRICS_ADDR/metrics), with resends after a lost
ACK, late uploads (newest first) and no-fix records"
else
    "$bin/fleet" --devices "$DEVICES" stream --rate "$RATE" &
    source_text="the fleet publishes $RATE positions/s from $DEVICES devices straight to the stream,
with duplicates, late uploads, (0,0) and no-fix records"
fi
pids+=($!)

page="http://$LIVE_WS_ADDR/"
cat <<MSG

Processor running; $source_text.
Device $ORPHAN_DEVICE is in no event.

  live map, public event:   ${page}?event=$PUBLIC_EVENT
  live map, private event:  ${page}?event=$PRIVATE_EVENT&token=$DEMO_TOKEN
  demo token (private event, valid 24 h):
    $DEMO_TOKEN
  metrics:    http://$METRICS_ADDR/metrics
  readiness:  http://$METRICS_ADDR/readyz
  stored:     psql "$DATABASE_URL" -c 'SELECT count(*) FROM positions'

Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
