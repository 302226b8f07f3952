#!/usr/bin/env bash
# Profile one anysio server under one load: a flame graph with Python and native (Rust, C) frames, the cost of
# each stage of an event in microseconds, where the CPU goes by library (perf) and the syscalls per second.
#
#   bench/profile.sh [echo|bcast] [asyncio|uvloop|trio] [typed|model|untyped]     # default: echo asyncio typed
#
#   echo:  100 clients x 8 acknowledged echoes in flight (the typed echo path: bytes -> handler -> ack -> bytes)
#   bcast: one client keeps 16 broadcasts to a room of 1000 in flight
#
# Needs py-spy (`pip install py-spy`; run as root, or with ptrace allowed), the load generator
# (`cargo build --release -p anysio-loadgen`) and anysio built with `maturin develop --release`; perf
# (`apt-get install linux-perf`) is optional (NO_PERF=1 skips it). Environment: PYTHON, PYSPY, LOADGEN,
# PROFILE_SECONDS (py-spy's window, 10), RATE (py-spy samples/s, 200).
#
# Two runs against the same server (pinned to CPU 0; load generator and profilers on CPU 1):
#   1. measure: 5 s of load without any profiler -> the server's CPU time per event (measure.json);
#   2. profile: the same load, py-spy --native samples the server (profile.txt, flame.svg), then perf.
# bench/profile_stages.py splits the samples into stages and multiplies each stage's share by the CPU time per
# event of run 1 (py-spy stops the server for each sample, so run 2 is slower). Output in
# bench/results/profile-<scenario>-<backend>-<handler>/: stages.txt (the table, and CPU by library from perf as a
# check on what py-spy could not unwind), stages.json, flame.svg, profile.txt (py-spy raw), measure.json,
# load.json, perf.data, perf-dso.txt, syscalls.txt, summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-echo}
backend=${2:-asyncio}
handler=${3:-typed}
case $scenario in
  echo) load=(echo --clients 100 --depth 8) ;;
  bcast) load=(bcast --clients 1000 --window 16) ;;
  *) echo "scenario: echo or bcast" >&2; exit 2 ;;
esac
py=${PYTHON:-.venv/bin/python}
pyspy=${PYSPY:-$(command -v py-spy || echo "$(dirname "$py")/py-spy")}
loadgen=${LOADGEN:-${CARGO_TARGET_DIR:-target}/release/loadgen}
seconds=${PROFILE_SECONDS:-10}
rate=${RATE:-200}
perf_ok=$([ -z "${NO_PERF:-}" ] && command -v perf >/dev/null && echo 1 || true)
[ -x "$pyspy" ] || { echo "py-spy not found (pip install py-spy, or PYSPY=...)" >&2; exit 2; }
[ -x "$loadgen" ] || { echo "no load generator at $loadgen (cargo build --release -p anysio-loadgen)" >&2; exit 2; }
out=bench/results/profile-$scenario-$backend-$handler
rm -rf "$out" && mkdir -p "$out"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

PORT=$port taskset -c 0 "$py" bench/servers/anysio_server.py --backend "$backend" --handler "$handler" \
  >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

echo "== 1. measure: $scenario on anysio $backend/$handler, no profiler (7 s)" >&2
taskset -c 1 "$loadgen" "${load[@]}" --port "$port" --duration 5 --warmup 2 --timeout 60 --server-pid $server \
  >"$out/measure.json"

# The load runs past both profilers, bounded; py-spy samples from its second second on.
perf_s=$([ -n "$perf_ok" ] && echo 8 || echo 0)
echo "== 2. profile: py-spy --native ${seconds} s at ${rate}/s${perf_ok:+, then perf 5 s and perf stat 3 s}" >&2
taskset -c 1 "$loadgen" "${load[@]}" --port "$port" --duration $((seconds + perf_s + 2)) --warmup 1 \
  --timeout $((seconds + perf_s + 60)) --server-pid $server >"$out/load.json" &
load_pid=$!
sleep 2
taskset -c 1 "$pyspy" record -p $server --native -d "$seconds" -r "$rate" -f raw -o "$out/profile.txt" \
  >"$out/pyspy.log" 2>&1 || { echo "py-spy failed:" >&2; cat "$out/pyspy.log" >&2; }
if [ -n "$perf_ok" ]; then
  taskset -c 1 perf record -F 999 -g -p $server -o "$out/perf.data" -- sleep 5 >"$out/perf.log" 2>&1 || true
  taskset -c 1 perf stat -p $server -e 'raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_getpid' \
    -- sleep 3 2>"$out/syscalls.txt" || true
fi
wait $load_pid || true
perf_dso=()
if [ -s "$out/perf.data" ]; then
  perf report -i "$out/perf.data" --sort dso --no-children -g none --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$out/perf-dso.txt"
  perf_dso=(--perf-dso "$out/perf-dso.txt")
fi

"$py" bench/profile_stages.py "$out/profile.txt" "$out/measure.json" --svg "$out/flame.svg" --json "$out/stages.json" \
  --pyspy-log "$out/pyspy.log" "${perf_dso[@]}" \
  --title "anysio $scenario, $backend, $handler handler (py-spy --native)" >"$out/stages.txt"

set +e +o pipefail  # the report's pipes end early (head) on purpose
{
  echo "== load without the profiler (measure.json)"
  cat "$out/measure.json"
  echo
  echo "== stages: share of the server's samples x its CPU time per event (bench/profile_stages.py)"
  cat "$out/stages.txt"
  echo "   flame graph: $out/flame.svg"
  if [ -s "$out/perf.data" ]; then
    echo "== hottest symbols (perf)"
    perf report -i "$out/perf.data" --sort sym --no-children -g none --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
    echo "== syscalls in 3 s (perf stat)"
    grep -E 'syscalls|elapsed' "$out/syscalls.txt"
  fi
} | tee "$out/summary.txt"
