#!/usr/bin/env bash
# Whether the stable-ABI build (abi3, what the wheel ships) costs the hot path anything against a build for one
# interpreter: the typed echo's server CPU time per ack (from /proc, so a busy machine moves it less than it moves
# acks/s), the two builds interleaved, 100 clients x 8 in flight for 4 s after 1 s of warm-up per run.
#
#   bench/abi3.sh VENV_PER_VERSION VENV_ABI3 [REPS]     # REPS: 6 by default
#
# The two virtual environments, each with its wheel and pydantic (the bench server's handlers use it):
#   maturin build --release -o wheels-abi3                     # pyproject.toml's features: abi3
#   (a copy of the checkout with features = ["python"] in pyproject.toml) maturin build --release -o wheels-pv
#   python3.11 -m venv V && V/bin/pip install wheels-.../*.whl pydantic
# The load generator: cargo build --release -p anysio-loadgen (LOADGEN to use another).
set -euo pipefail
cd "$(dirname "$0")/.."
pv=$1 abi3=$2 reps=${3:-6}
loadgen=${LOADGEN:-${CARGO_TARGET_DIR:-target}/release/loadgen}
out=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for rep in $(seq "$reps"); do
  for v in pv abi3; do
    venv=$([ $v = pv ] && echo "$pv" || echo "$abi3")
    PORT=$port "$venv/bin/python" bench/servers/anysio_server.py >"$out/server-$v.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
    "$loadgen" echo --port "$port" --clients 100 --depth 8 --duration 4 --warmup 1 --timeout 60 --server-pid $pid \
      >"$out/$v-$rep.json"
    kill $pid && wait $pid 2>/dev/null || true
  done
done
python3 - "$out" "$reps" <<'PY'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
us = {}
for v in ("pv", "abi3"):
    runs = [json.load(open(f"{out}/{v}-{r}.json")) for r in range(1, reps + 1)]
    us[v] = statistics.median(d["server_cpu"] * d["duration_s"] / d["acks_in_window"] * 1e6 for d in runs)
    rate = statistics.median(d["echo_per_s"] for d in runs)
    print(f"{v:5} median of {reps}: {us[v]:.2f} us of server CPU per ack, {rate:,.0f} acks/s")
print(f"abi3 / per-version CPU per ack: {us['abi3'] / us['pv']:.2f}x")
PY
