#!/usr/bin/env bash
# The project's one test command: formatting, lints, then every test of the workspace
# against real Redis and PostgreSQL (started by scripts/services.sh when they are down) and,
# for the map page, headless Chromium (installed by scripts/browser.sh when missing).
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p sim` or `scripts/test.sh -- --nocapture`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh
bash scripts/browser.sh >/dev/null

# A CI checkout is built once: incremental state would only take disk.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# The shipped binary must carry no test features. Built on its own (`-p processor-shell`, as
# the README, scripts/demo.sh and the Dockerfile build it) tokio has no `test-util`; a build
# of the whole workspace would unify features with the simulation's, which needs it.
if cargo tree -q -p processor-shell -e features,normal -i tokio | grep 'tokio feature "test-util"'; then
    echo "test.sh: tokio's test-util reaches the processor's own build" \
        "(cargo tree -p processor-shell -e features,normal -i tokio)" >&2
    exit 1
fi

# Packaging: hadolint on the Dockerfile, systemd-analyze on the unit, then the image built and
# run (with Docker), or without Docker the same build steps and run. About a minute once the
# release dependencies are built (six the first time); PACKAGING_BUILD=0 lints only.
PACKAGING_BUILD=${PACKAGING_BUILD:-1} bash scripts/check-packaging.sh
cargo test --workspace "$@"
