# Process bookkeeping for the benchmark scripts, sourced by bench-live.sh and
# bench-history.sh after they define log, die and the array pids (the processes to stop).

alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Drops $1 from the processes still to stop (once reaped, its pid may be reused).
forget() {
  local keep=() q
  for q in "${pids[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
  pids=("${keep[@]}")
}

# SIGTERM, up to 30 s to exit, then SIGKILL; reaps it and forgets it.
stop() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    alive "$p" || break
    sleep 0.1
  done
  if alive "$p"; then
    log "warning: process $p did not exit within 30 s of SIGTERM; killing it"
    kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
  forget "$p"
}

# wait_for SECONDS PID LOG WHAT COMMAND...: until COMMAND succeeds; fails when PID exits
# first or time runs out, showing the end of LOG (PID's output).
wait_for() {
  local deadline=$((SECONDS + $1)) pid=$2 errlog=$3 what=$4 why=""
  shift 4
  until "$@"; do
    alive "$pid" || why="process $pid exited"
    [ "$SECONDS" -lt "$deadline" ] || why="timed out"
    if [ -n "$why" ]; then
      if [ -s "$errlog" ]; then tail -n 20 "$errlog" >&2; fi
      die "waiting for $what: $why"
    fi
    sleep 0.05
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, all threads
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
now_ns() { date +%s%N; }
