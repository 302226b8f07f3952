#!/usr/bin/env bash
# Profile one anysio server under one load: where its CPU goes by library (perf: Python interpreter, anysio's
# Rust extension, kernel), by Python function (py-spy), and its syscalls per second (perf stat).
#
#   bench/profile.sh echo  [asyncio|uvloop|trio]     # 100 clients x 8 acknowledged echoes in flight
#   bench/profile.sh bcast [asyncio|uvloop|trio]     # broadcast to 1000
#
# Needs perf (`apt-get install linux-perf`) and py-spy (`pip install py-spy`, any environment), the load
# generator (`cargo build --release -p anysio-loadgen`) and anysio built with `maturin develop --release`.
# Output: bench/results/profile-<scenario>-<backend>/ (perf.data, pyspy.txt, summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-echo}
backend=${2:-asyncio}
case $scenario in
  echo) load=(echo --clients 100 --depth 8) ;;
  bcast) load=(bcast --clients 1000 --window 16) ;;
  *) echo "scenario: echo or bcast" >&2; exit 2 ;;
esac
py=${PYTHON:-.venv/bin/python}
pyspy=${PYSPY:-$(command -v py-spy || true)}
loadgen=${LOADGEN:-target/release/loadgen}
out=bench/results/profile-$scenario-$backend
mkdir -p "$out"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

PORT=$port taskset -c 0 "$py" bench/servers/anysio_server.py --backend "$backend" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

# 16 s of load, bounded; the profilers sample 5 s each from the third second on.
taskset -c 1 "$loadgen" "${load[@]}" --port "$port" --duration 14 --warmup 1 --server-pid $server >"$out/load.json" &
load_pid=$!
sleep 3
perf record -F 999 -g -p $server -o "$out/perf.data" -- sleep 5 2>"$out/perf.log"
perf stat -p $server -e 'raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_getpid' \
  -- sleep 3 2>"$out/syscalls.txt"
if [ -n "$pyspy" ]; then
  "$pyspy" record -p $server -d 4 -r 200 -f raw -o "$out/pyspy.txt" --nonblocking >"$out/pyspy.log" 2>&1 || true
fi
wait $load_pid || true

set +e +o pipefail  # the report's pipes end early (head) on purpose
{
  echo "== load"
  cat "$out/load.json"
  echo
  echo "== CPU by library (perf)"
  perf report -i "$out/perf.data" --sort dso --no-children -g none --stdio 2>/dev/null | grep -E '^ +[0-9]'
  echo "== hottest symbols (perf)"
  perf report -i "$out/perf.data" --sort sym --no-children -g none --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
  echo "== syscalls in 3 s (perf stat)"
  grep -E 'syscalls|elapsed' "$out/syscalls.txt"
  if [ -s "$out/pyspy.txt" ]; then
    echo "== Python functions, inclusive share of samples (py-spy)"
    "$py" - "$out/pyspy.txt" <<'EOF'
import collections, re, sys
incl, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    if not stack:
        continue
    total += int(n)
    for frame in {re.sub(r":\d+\)", ")", f) for f in stack.split(";")}:
        incl[frame] += int(n)
for frame, n in incl.most_common(30):
    print(f"{100 * n / total:5.1f}%  {frame}")
EOF
  fi
} | tee "$out/summary.txt"
