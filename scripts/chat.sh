#!/usr/bin/env bash
# The chat demo in one command: makes (or reuses) .venv, installs anysio with the "chat" extra there (maturin
# builds the Rust extension: cargo must be on PATH), then runs the chat host with its terminal UI.
# Arguments go to `examples/chat/chat.py host` (defaults: 127.0.0.1:5000, asyncio), for example:
#   scripts/chat.sh --port 8000 --backend trio
# Reinstalls only when the sources changed since the last install (or with CHAT_REINSTALL=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.anysio-chat-installed
if [ "${CHAT_REINSTALL:-0}" = 1 ] || [ ! -f "$stamp" ] || ! python -c "import anysio, socketio, aiohttp" 2>/dev/null \
    || [ -n "$(find Cargo.toml Cargo.lock pyproject.toml rust -newer "$stamp" -type f -print -quit)" ]; then
    if ! command -v cargo >/dev/null; then
        echo "chat.sh: building anysio needs Rust's cargo on PATH (https://rustup.rs)" >&2
        exit 1
    fi
    echo "==> pip install -e '.[chat]' (builds the Rust extension with maturin; the first time takes minutes)" >&2
    pip install -q -e '.[chat]'
    touch "$stamp"
fi

exec python examples/chat/chat.py host "$@"
