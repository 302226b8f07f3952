#!/usr/bin/env bash
# Run the fuzz targets (fuzz/fuzz_targets; docs/fuzzing.md) one after the other with cargo-fuzz (libFuzzer), each
# for SECONDS (60 by default), or for FUZZ_RUNS executions when that is set (with SECONDS too: whichever comes
# first). Installs cargo-fuzz when it is missing and writes the seed corpora from the test vectors first
# (scripts/fuzz_seeds.py).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_RUNS=10000000 scripts/fuzz.sh http_request
# Each target's corpus grows in fuzz/corpus/TARGET and its log is fuzz/logs/TARGET.log (TARGET.runs.log with
# FUZZ_RUNS, so that a long run and a short one can go at once); a crash stops the script
# with libFuzzer's report, and the input is in fuzz/artifacts/TARGET/ (`cargo fuzz run --sanitizer none TARGET
# FILE` replays it). The last line of each run: executions, time, executions per second, coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi

if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.'; then
    echo "==> installing cargo-fuzz 0.13 (once)" >&2
    cargo install --locked cargo-fuzz --version '~0.13'
fi

# Stable Rust: no sanitizer (they need nightly); debug assertions on, so that an overflow is a crash too.
flags=(--sanitizer none --debug-assertions)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
python3 scripts/fuzz_seeds.py fuzz/seeds
cargo fuzz build "${flags[@]}"

limit=()
each=
if [ -n "${FUZZ_RUNS:-}" ]; then
    limit+=(-runs="$FUZZ_RUNS")
    each="$FUZZ_RUNS runs"
fi
if [ -n "$seconds" ] || [ -z "${FUZZ_RUNS:-}" ]; then
    limit+=(-max_total_time="${seconds:-60}")
    each="${each:+$each or }${seconds:-60} s"
fi
mkdir -p fuzz/logs
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/logs/$target${FUZZ_RUNS:+.runs}.log"
    echo "==> $target: $each" >&2
    start=$SECONDS
    status=0
    cargo fuzz run "${flags[@]}" "$target" "$root/fuzz/corpus/$target" "$root/fuzz/seeds/$target" -- \
        "${limit[@]}" -timeout=60 -print_final_stats=1 >"$log" 2>&1 || status=$?
    elapsed=$((SECONDS - start))
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "$target: crashed after $elapsed s (status $status); the input is in fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    echo "$target: $runs runs in $elapsed s ($speed exec/s), $coverage, no crash"
done
