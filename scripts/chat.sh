#!/usr/bin/env bash
# The chat demo in one command, no activation needed: makes (or reuses) .venv, installs anysio there with the
# extras the command needs (maturin builds the Rust extension: cargo must be on PATH; it rebuilds only when the
# Rust sources or the build files changed, or with ANYSIO_REBUILD=1), then runs examples/chat/chat.py:
#   scripts/chat.sh [host] [--port 8000] [--backend asyncio|uvloop|trio] ...   the host (the default command)
#   scripts/chat.sh join --name NAME [--url http://127.0.0.1:5000]            a terminal participant
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
# shellcheck source=scripts/venv.sh
. scripts/venv.sh

command=host
case "${1:-}" in host | join) command=$1 && shift ;; esac
extras=chat
previous=
for arg in "$@"; do
    backend=
    case "$arg" in --backend=*) backend=${arg#--backend=} ;; esac
    [ "$previous" = --backend ] && backend=$arg
    case "$backend" in trio | uvloop) extras="chat,$backend" ;; esac
    previous=$arg
done

anysio_venv "$extras"
exec python examples/chat/chat.py "$command" "$@"
