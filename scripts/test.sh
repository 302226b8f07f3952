#!/usr/bin/env bash
# Install everything the tests need, then run every check. The README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
scripts/setup-system-deps.sh

step "Python environment (.venv) and the extension, built by maturin"
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
pip install -q --upgrade pip maturin
pip install -q -e '.[test]'

step "Node packages for the official clients"
scripts/setup-node-deps.sh

step "Rust: fmt, clippy, tests (no Python needed)"
cargo fmt --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --all-targets --features python -- -D warnings
cargo test --workspace --quiet

step "Python: ruff, mypy --strict, import layers (import-linter), stubtest"
ruff check .
ruff format --check .
mypy
lint-imports
python -m mypy.stubtest anysio._native --allowlist tests/stubtest-allowlist.txt

step "benchmark harness, smoke run (tiny loads: checks that the harness works; no figures are judged)"
python bench/run.py --smoke

step "pytest (every async test on asyncio and on trio)"
python -m pytest -q "$@"
