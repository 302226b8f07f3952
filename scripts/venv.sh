# Sourced by scripts/chat.sh and scripts/test.sh: `anysio_venv EXTRA,...` makes (or reuses) .venv, activates it,
# and makes anysio's editable install there current:
# - it builds (pip install -e '.[EXTRAS]', maturin compiling the Rust extension) only when the build inputs changed
#   since the last build (Cargo.toml, Cargo.lock, pyproject.toml, rust/**: their hash is kept in .venv), when the
#   extension is missing, or with ANYSIO_REBUILD=1;
# - otherwise it installs only the requirements of EXTRAS (pip does nothing when they are already there).
# Python sources need no rebuild: the install is editable.

anysio_build_hash() {
    { find Cargo.toml Cargo.lock pyproject.toml rust -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum |
        cut -d' ' -f1
}

anysio_venv() {
    local extras=$1 stamp=.venv/.anysio-build want
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating .venv" >&2
        python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
    want="$(anysio_build_hash)"
    if [ "${ANYSIO_REBUILD:-0}" = 1 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
        || ! python -c "import anysio._native" 2>/dev/null; then
        if ! command -v cargo >/dev/null; then
            echo "building anysio needs Rust's cargo on PATH (https://rustup.rs)" >&2
            return 1
        fi
        echo "==> pip install -e '.[$extras]' (maturin builds the Rust extension; the first time takes minutes)" >&2
        pip install -q --upgrade pip maturin
        # An extension built for one interpreter (_native.cpython-311-*.so, as before abi3, or by `maturin develop
        # --features python`) would be imported before the abi3 one this build writes: start from none.
        rm -f python/anysio/_native.*.so
        pip install -q -e ".[$extras]"
        echo "$want" >"$stamp"
    else
        local requirements=()
        mapfile -t requirements < <(python - "$extras" <<'PY'
import sys, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
for name in sys.argv[1].split(","):
    for requirement in extras[name]:  # an extra may list nothing (chat)
        print(requirement)
PY
)
        [ ${#requirements[@]} -eq 0 ] || pip install -q "${requirements[@]}"
    fi
}
