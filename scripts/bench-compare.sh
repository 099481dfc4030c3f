#!/usr/bin/env bash
# The live path side by side with its peers: the processor, minimal-fanout (the floor) and
# node-baseline (the design it replaces), each measured by scripts/bench-live.sh with the
# same loadgen, fleet, devices, events and pinning.
#
#   scripts/bench-compare.sh
#   POINTS="500 1000 2000" RUNS=5 scripts/bench-compare.sh
#
# For each rate R in POINTS (default "500 1000"), RUNS rounds (default 3), each round running
# the TARGETS (default "processor minimal node") one after the other, so slow drifts of the
# machine spread over all of them. Prints bench-live.sh's JSON line for every run (a failed
# run prints {"target":...,"R":...,"error":...} and the comparison goes on), then a table of
# medians per R and target: delivered messages/s, client p50 and p99, the service's cores,
# and how many runs passed (the SEARCH criterion below).
#
#   SEARCH=1 scripts/bench-compare.sh
#
# For each target, the highest R with no loss and p99 <= P99_MAX_MS (default 100), on a fixed
# ladder of rates climbed with SEARCH_DURATION-second runs (default 10). The targets take
# turns on each rung; a target leaves the climb at its first failed rung, after one rerun of
# that rung (SEARCH_CONFIRM=0: no rerun) so that one noisy run does not end it. The default
# ladder, LADDER="250 320 400 500 625 800 1000 1250 1600 2000 2500 3125 4000 5000 6250 8000
# 10000", steps by about 25 % and, with D=1000, only holds rates whose report interval
# 1000 * D / R is a whole number of milliseconds, so the fleet publishes exactly R. Prints
# every run's line, one {"mode":"search",...} line per target and a table: highest R passed
# (with its delivered/s, p99 and cores) and the first rung failed and why ("error": the run
# itself failed, e.g. the clients were not all subscribed within SUBSCRIBE_TIMEOUT, 60 s here:
# a target far past its limit falls behind while they subscribe).
#
# No loss: loadgen prints only `delivered` and `closed` (clients whose connection ended), no
# lost count, and it counts what arrives inside its window. bench-live.sh keeps the fleet
# publishing from before that window to after it, so a lossless service's `delivered_ratio`
# (delivered/s over expected/s) is 1 up to two kinds of noise: latency jitter at the window's
# edges, and which devices happen to report once more than the others inside the window
# (each device reports every 1000 * D / R ms at its own phase; the share of that noise is at
# most 0.5 / (sqrt(D) x reports per device in the window): 0.6 % at R=250 over 10 s with
# D=1000, 0.16 % at R=1000, 0.03 % at R=5000). A run passes when closed == 0, p99_ms <=
# P99_MAX_MS and delivered_ratio >= 1 - LOSS_TOL - 3 x that bound (LOSS_TOL default 0.002,
# for the edges); the verdict says what was allowed. Longer runs tighten it.
#
# Settings (environment), with defaults: C=1000 E=10 D=1000 DURATION=20 PIN=1 (service on
# CPU 1, loadgen and fleet on CPU 0), TARGETS, POINTS, RUNS, SEARCH, LADDER, SEARCH_DURATION,
# SEARCH_CONFIRM, P99_MAX_MS, LOSS_TOL; PEERS_DIR, PEERS_BUILD_DIR, PROCESSOR, LOADGEN, FLEET
# SUBSCRIBE_TIMEOUT and BUILD_PROFILE are passed to bench-live.sh. The project is built once here (BUILD=0: not at all, use target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

export C=${C:-1000} E=${E:-10} D=${D:-1000} DURATION=${DURATION:-20} PIN=${PIN:-1}
TARGETS=${TARGETS:-processor minimal node}
POINTS=${POINTS:-500 1000}
RUNS=${RUNS:-3}
SEARCH=${SEARCH:-0}
LADDER=${LADDER:-250 320 400 500 625 800 1000 1250 1600 2000 2500 3125 4000 5000 6250 8000 10000}
SEARCH_DURATION=${SEARCH_DURATION:-10}
SEARCH_CONFIRM=${SEARCH_CONFIRM:-1}
P99_MAX_MS=${P99_MAX_MS:-100}
LOSS_TOL=${LOSS_TOL:-0.002}
BUILD=${BUILD:-1}

if [ "${FLEET_FIRST:-1}" != 1 ]; then
  echo "bench-compare: FLEET_FIRST=0 undercounts deliveries; the loss check needs FLEET_FIRST=1" >&2
  exit 1
fi
# The peers are not in this repository: say so once, before any run (bench-live.sh builds them).
peers=${PEERS_DIR:-$PWD/../shared/peers}
for t in $TARGETS; do
  case $t in
    processor) continue ;;
    minimal) peer=minimal-fanout ;;
    node) peer=node-baseline ;;
    *) echo "bench-compare: unknown target '$t' in TARGETS (processor, minimal, node)" >&2 && exit 1 ;;
  esac
  if [ ! -d "$peers/$peer" ]; then
    echo "bench-compare: target $t needs the peer $peer, not found at $peers/$peer; the peers are" >&2
    echo "bench-compare: not part of this repository: set PEERS_DIR, or leave $t out of TARGETS" >&2
    exit 2
  fi
done
export BUILD_PROFILE=${BUILD_PROFILE:-release}
if [ "$BUILD" = 1 ]; then
  cargo build --profile "$BUILD_PROFILE" -q -p processor-shell --bins
fi
export BUILD=0

results=$(mktemp)
trap 'rm -f "$results"' EXIT
trap 'exit 130' INT # bench-live.sh cleans up after itself; stop the whole comparison
trap 'exit 143' TERM

# field NAME LINE: the value of "NAME" in a bench-live line (number, "string" or null).
field() { sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[-0-9.]*\|null\).*/\1/p" <<<"$2" | tr -d '"'; }

# run TARGET R SECONDS: one bench-live.sh run; prints its line and appends it to $results.
run() {
  local line
  if line=$(TARGET=$1 R=$2 DURATION=$3 bash scripts/bench-live.sh) && [ -n "$line" ]; then
    :
  else
    line="{\"target\":\"$1\",\"R\":$2,\"error\":\"bench-live.sh failed (see stderr)\"}"
  fi
  echo "$line" | tee -a "$results"
}

# verdict LINE: "ok", or why the run does not pass ("closed=N loss=X% p99=Nms", the ones that apply).
verdict() {
  local line=$1
  if [ -n "$(field error "$line")" ]; then
    echo "error"
    return
  fi
  awk -v closed="$(field closed "$line")" -v ratio="$(field delivered_ratio "$line")" \
    -v p99="$(field p99_ms "$line")" -v tol="$LOSS_TOL" -v max="$P99_MAX_MS" \
    -v secs="$(field seconds "$line")" -v d="$(field D "$line")" -v r="$(field R "$line")" 'BEGIN {
      iv = int(d / r * 1000); if (iv < 1) iv = 1  # fleet: ms between two reports of a device
      tol += 1.5 / (sqrt(d) * secs * 1000 / iv)   # 3 sigma of the window sampling noise
      if (closed > 0) why = why " closed=" closed
      if (ratio < 1 - tol) why = why sprintf(" loss=%.2f%%(allowed %.2f%%)", (1 - ratio) * 100, tol * 100)
      if (p99 > max) why = why " p99=" p99 "ms"
      print (why == "") ? "ok" : substr(why, 2) }'
}

if [ "$SEARCH" != 1 ]; then
  for r in $POINTS; do
    for ((i = 1; i <= RUNS; i++)); do
      for t in $TARGETS; do run "$t" "$r" "$DURATION"; done
    done
  done
  # Medians per (R, target), in the order the targets and points were given.
  echo
  printf '%-7s %-10s %5s %13s %13s %8s %8s %7s %7s\n' R target runs delivered/s expected/s p50_ms p99_ms cores passed
  for r in $POINTS; do
    for t in $TARGETS; do
      ok=0
      n=0
      vals=""
      while IFS= read -r line; do
        if [ "$(field target "$line")" != "$t" ] || [ "$(field R "$line")" != "$r" ]; then continue; fi
        n=$((n + 1))
        [ "$(verdict "$line")" != ok ] || ok=$((ok + 1))
        [ -z "$(field error "$line")" ] || continue
        vals+="$(field delivered_per_s "$line") $(field expected_per_s "$line") $(field p50_ms "$line") $(field p99_ms "$line") $(field processor_cores "$line")"$'\n'
      done <"$results"
      printf '%s' "$vals" | awk -v r="$r" -v t="$t" -v n="$n" -v ok="$ok" '
        function median(col,   m, i, j, v, tmp) {
          m = 0; for (i = 1; i <= NR; i++) { m++; v[m] = row[i, col] }
          for (i = 2; i <= m; i++) { tmp = v[i]; for (j = i - 1; j >= 1 && v[j] > tmp; j--) v[j + 1] = v[j]; v[j + 1] = tmp }
          return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
        { for (c = 1; c <= 5; c++) row[NR, c] = $c }
        END {
          if (NR == 0) { printf "%-7s %-10s %5d %13s %13s %8s %8s %7s %4d/%d\n", r, t, n, "-", "-", "-", "-", "-", ok, n; exit }
          printf "%-7s %-10s %5d %13.0f %13.0f %8.1f %8.1f %7.2f %4d/%d\n", r, t, n, median(1), median(2), median(3), median(4), median(5), ok, n }'
    done
  done
  exit 0
fi

# SEARCH=1: climb the ladder, the targets taking turns on each rung. A target that cannot
# hold a rung subscribes its clients under a growing backlog; past SUBSCRIBE_TIMEOUT the run
# fails ("error"), which fails the rung.
export SUBSCRIBE_TIMEOUT=${SUBSCRIBE_TIMEOUT:-60}
declare -A best=() best_line=() failed=() why=()
active=$TARGETS
for r in $LADDER; do
  [ -n "$active" ] || break
  still=""
  for t in $active; do
    line=$(run "$t" "$r" "$SEARCH_DURATION")
    echo "$line"
    v=$(verdict "$line")
    if [ "$v" != ok ] && [ "$SEARCH_CONFIRM" = 1 ]; then
      echo "bench-compare: $t at R=$r: $v; running it again" >&2
      line=$(run "$t" "$r" "$SEARCH_DURATION")
      echo "$line"
      v=$(verdict "$line")
    fi
    if [ "$v" = ok ]; then
      best[$t]=$r
      best_line[$t]=$line
      still+=" $t"
    else
      failed[$t]=$r
      why[$t]=$v
    fi
  done
  active=$still
done

# One line per target, then the table.
num() { field "$1" "$2" | grep . || echo "${3:-null}"; }
for t in $TARGETS; do
  line=${best_line[$t]:-}
  w=${why[$t]:-passed the whole ladder}
  echo "{\"mode\":\"search\",\"target\":\"$t\",\"max_R\":${best[$t]:-null},\"delivered_per_s\":$(num delivered_per_s "$line"),\"p99_ms\":$(num p99_ms "$line"),\"processor_cores\":$(num processor_cores "$line"),\"failed_R\":${failed[$t]:-null},\"why\":\"$w\",\"p99_max_ms\":$P99_MAX_MS,\"loss_tol\":$LOSS_TOL,\"seconds\":$SEARCH_DURATION,\"C\":$C,\"E\":$E,\"D\":$D,\"pin\":$PIN}"
done
echo
printf '%-10s %8s %13s %8s %7s %9s %s\n' target max_R delivered/s p99_ms cores failed_R why
for t in $TARGETS; do
  line=${best_line[$t]:-}
  printf '%-10s %8s %13s %8s %7s %9s %s\n' "$t" "${best[$t]:--}" "$(num delivered_per_s "$line" -)" \
    "$(num p99_ms "$line" -)" "$(num processor_cores "$line" -)" "${failed[$t]:--}" "${why[$t]:-passed the whole ladder}"
done
