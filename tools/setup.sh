#!/usr/bin/env bash
# Installs what building and testing g4 needs on a fresh Debian 12 machine
# (as root, or with sudo). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
for pkg in build-essential libjansson-dev libevent-dev python3 python3-jinja2 curl ca-certificates; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# Reference implementations the tests compare against (HF tokenizers, openai SDK).
if [ -f tests/node/package.json ]; then
    (cd tests/node && { [ -f package-lock.json ] && npm ci --no-audit --no-fund || npm install --no-audit --no-fund; })
fi
# Test data that is fetched, not committed (pinned and checksummed).
for fetch in tools/fetch_*.sh; do
    [ -e "$fetch" ] && bash "$fetch"
done
exit 0
