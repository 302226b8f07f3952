#!/usr/bin/env bash
# Installs the Node test clients / reference servers' dependencies (tests/node).
# Idempotent: runs `npm ci` only when node_modules is missing or older than package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$here/../tests/node"
cd "$dir"
# npm ci touches node_modules/.package-lock.json, which makes it the freshness marker.
marker="node_modules/.package-lock.json"
if [ ! -f "$marker" ] || [ "package-lock.json" -nt "$marker" ]; then
    npm ci --no-audit --no-fund
else
    echo "tests/node/node_modules is up to date"
fi
