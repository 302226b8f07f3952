#!/usr/bin/env bash
# Installs the Node packages the tests use: tests/node (official clients, reference servers, and the Admin UI that
# anysio serves with its icons: @socket.io/admin-ui, @mdi/font), tests/browser (playwright-core, which drives
# Debian's Chromium) and tests/cluster (Node servers on @socket.io/redis-adapter, the redis emitter). Idempotent
# per directory: runs `npm ci` only when node_modules is missing or older than package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for name in node browser cluster; do
    cd "$here/../tests/$name"
    # npm ci touches node_modules/.package-lock.json, which makes it the freshness marker.
    marker="node_modules/.package-lock.json"
    if [ ! -f "$marker" ] || [ "package-lock.json" -nt "$marker" ]; then
        npm ci --no-audit --no-fund
    else
        echo "tests/$name/node_modules is up to date"
    fi
done
