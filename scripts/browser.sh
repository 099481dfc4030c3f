#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver are installed for the browser test
# (tests/browser.rs), installing Debian's `chromium` and `chromium-driver` when missing.
# Prints the chromedriver path on stdout; everything else goes to stderr.
#
#   bash scripts/browser.sh
set -euo pipefail

log() { printf 'browser.sh: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

if ! have chromium || ! have chromedriver; then
    log "installing Debian packages: chromium chromium-driver"
    if [[ $EUID -eq 0 ]]; then
        sudo=()
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        log "error: need root to install chromium and chromium-driver"
        exit 1
    fi
    "${sudo[@]}" apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2
fi
have chromedriver || { log "error: chromedriver is not on PATH after installing"; exit 1; }
command -v chromedriver
