#!/usr/bin/env bash
# Install everything the tests need, then run every check. The README's test command; .ci/run calls it.
#   scripts/test.sh [--quick] [PYTEST ARGS...]
# --quick: the inner loop: no lints, no Rust checks, no benchmark smoke run; only pytest (with its arguments),
# after making the environment current. The extension is rebuilt only when the Rust sources or the build files
# changed (scripts/venv.sh), with or without --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
# shellcheck source=scripts/venv.sh
. scripts/venv.sh

quick=0
if [ "${1:-}" = --quick ]; then
    quick=1
    shift
fi

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
scripts/setup-system-deps.sh

step "Python environment (.venv) and the extension, built by maturin when Rust or the build files changed"
anysio_venv test,docs

step "Node packages for the official clients"
scripts/setup-node-deps.sh

if [ "$quick" = 0 ]; then
    step "Rust: fmt, clippy, tests (no Python needed); the fuzz targets' crate too"
    cargo fmt --check
    cargo fmt --check --manifest-path fuzz/Cargo.toml
    cargo clippy --workspace --all-targets --features anysio/fuzzing -- -D warnings
    cargo clippy --all-targets --features abi3 -- -D warnings   # the Python binding, as the wheel builds it
    cargo clippy --manifest-path fuzz/Cargo.toml -- -D warnings
    cargo test --workspace --quiet

    step "fuzzing, the short run: every target for 15 s (docs/fuzzing.md; installs cargo-fuzz the first time)"
    scripts/fuzz.sh 15

    step "Python: ruff, mypy --strict, import layers (import-linter), stubtest"
    ruff check .
    ruff format --check .
    mypy
    lint-imports
    python -m mypy.stubtest anysio._native --allowlist tests/stubtest-allowlist.txt

    step "documentation site: mkdocs build --strict (warnings are errors)"
    # Not --quiet: it hides the warnings from --strict too (a page missing from the nav passed).
    NO_MKDOCS_2_WARNING=1 mkdocs build --strict   # into site/ (ignored by git)

    step "benchmark harness, smoke run (tiny loads: checks that the harness works; no figures are judged)"
    python bench/run.py --smoke
    python bench/client.py --smoke   # the Python clients' row: anysio.Client and python-socketio against Node
fi

step "pytest (every async test on asyncio and on trio)"
python -m pytest -q "$@"
