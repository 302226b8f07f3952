#!/usr/bin/env bash
# The release artefacts into dist/: the wheel and the sdist, and the wheel's size. The README's release command.
#   scripts/build-wheel.sh
# The wheel holds the extension built against CPython's stable ABI (abi3, pyproject.toml's [tool.maturin] features),
# so one wheel per platform serves CPython 3.11 and every later version; it is optimised (cargo's release profile)
# and stripped of debug info and symbols, which the release profile keeps for profilers (`maturin develop
# --release`). Needs Rust's cargo; the wheel it makes installs without it. dist/ keeps only this build's artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! command -v cargo >/dev/null; then
    echo "building anysio needs Rust's cargo on PATH (https://rustup.rs)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    python3 -m venv .venv
fi
# The maturin that pip would build with: pyproject.toml's build-system requirement.
maturin=$(.venv/bin/python -c '
import tomllib
requires = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
print(next(r for r in requires if r.startswith("maturin")))')
.venv/bin/python -m pip install -q "$maturin"

rm -f dist/anysio-*
.venv/bin/maturin build --release --strip --sdist --out dist

for artefact in dist/anysio-*; do
    printf '%s: %s\n' "$artefact" "$(numfmt --to=iec-i --suffix=B --format=%.1f "$(stat -c %s "$artefact")")"
done
