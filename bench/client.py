"""The client scenario: Python clients' echo with acks against the same Node server, in the same run.

    python bench/client.py [--reps 3] [--seconds 5] [--in-flight 16] [--smoke] [--no-pin]

One Node socket.io server (bench/servers/node_server.mjs: "echo" acked with its argument) on CPU 0; each client
in turn on CPU 1, in its own process: one connection over WebSocket, ``--in-flight`` tasks each sending the
benchmark's ~100-byte object with ``emit_with_ack`` (python-socketio: ``call``) and waiting for its ack, for a
1 s warm-up then ``--seconds`` measured. Every ack is checked against what was sent. Repetitions interleave the
clients, rotating their order; the table gives medians and the ratios the targets name: anysio.Client on asyncio
>= 5x python-socketio's AsyncClient, and anysio.Client on trio within 15% of asyncio (>= 0.85x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import socketio

import anysio

BENCH = Path(__file__).resolve().parent
NODE_SERVER = BENCH / "servers" / "node_server.mjs"
SERVER_CPU, CLIENT_CPU = "0", "1"
CLIENTS = ["anysio-asyncio", "anysio-trio", "python-socketio"]
TEXT = "x" * 60


def payload(n: int) -> dict[str, Any]:
    return {"id": n, "text": TEXT, "ts": time.time()}


async def anysio_loop(url: str, in_flight: int, warmup: float, seconds: float) -> dict[str, Any]:
    async with anysio.Client(url, transports=["websocket"], reconnection=False) as client:

        async def call(n: int) -> Any:
            return await client.emit_with_ack("echo", payload(n), timeout=10)

        return await measure(call, in_flight, warmup, seconds)


async def python_socketio_loop(url: str, in_flight: int, warmup: float, seconds: float) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"])
    try:

        async def call(n: int) -> Any:
            return await client.call("echo", payload(n), timeout=10)

        return await measure(call, in_flight, warmup, seconds)
    finally:
        await client.disconnect()


async def measure(call: Any, in_flight: int, warmup: float, seconds: float) -> dict[str, Any]:
    """``in_flight`` tasks calling in a loop; acks and latencies counted inside the measured window only."""
    start = anyio.current_time() + warmup
    end = start + seconds
    latencies: list[float] = []
    bad = 0
    counter = iter(range(10**12))

    async def worker() -> None:
        nonlocal bad
        while (now := anyio.current_time()) < end:
            n = next(counter)
            reply = await call(n)
            done = anyio.current_time()
            if not (isinstance(reply, dict) and reply.get("id") == n and reply.get("text") == TEXT):
                bad += 1
            if now >= start and done <= end:
                latencies.append(done - now)

    cpu: list[float] = []

    async def clock() -> None:
        """The process's CPU time over the measured window: per ack, a figure the machine's load moves less."""
        await anyio.sleep(max(0.0, start - anyio.current_time()))
        first = time.process_time()
        await anyio.sleep(max(0.0, end - anyio.current_time()))
        cpu.append(time.process_time() - first)

    with anyio.fail_after(warmup + seconds + 30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock)
            for _ in range(in_flight):
                tg.start_soon(worker)
    latencies.sort()
    pick = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000) if latencies else None
    return {
        "acks_per_s": len(latencies) / seconds,
        "p50_ms": pick(0.5) if pick else None,
        "p99_ms": pick(0.99) if pick else None,
        "bad_acks": bad,
        "cpu_us_per_ack": cpu[0] / len(latencies) * 1e6 if latencies and cpu else None,
    }


def client_main(args: argparse.Namespace) -> int:
    """One measurement, in this process: the JSON result on stdout."""
    url = f"http://127.0.0.1:{args.port}"
    loop_args = (url, args.in_flight, args.warmup, args.seconds)
    if args.client == "python-socketio":
        result = anyio.run(python_socketio_loop, *loop_args, backend="asyncio")
    else:
        result = anyio.run(anysio_loop, *loop_args, backend=args.client.removeprefix("anysio-"))
    print(json.dumps(result))
    return 0


def start_node(pin: bool, port: int, log: Path) -> subprocess.Popen[bytes]:
    if not (BENCH / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--silent"], cwd=BENCH, check=True)
    prefix = ["taskset", "-c", SERVER_CPU] if pin else []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*prefix, "node", str(NODE_SERVER)],
            cwd=BENCH,
            env={**os.environ, "PORT": str(port)},
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 15
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the Node server did not start (see {log})")
        time.sleep(0.05)
    return proc


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one(client: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    prefix = ["taskset", "-c", CLIENT_CPU] if args.pin else []
    argv = [*prefix, sys.executable, __file__, "--run", client, "--port", str(port)]
    argv += ["--in-flight", str(args.in_flight), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + args.warmup + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{client} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def report(medians: dict[str, dict[str, Any]], load: tuple[float, float], args: argparse.Namespace) -> str:
    def fmt(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, int | float) else "n/a"

    def ratio(a: str, b: str) -> float | None:
        x, y = medians[a]["acks_per_s"], medians[b]["acks_per_s"]
        return x / y if x and y else None

    lines = [
        f"client echo with acks against Node socket.io, 1 connection, {args.in_flight} in flight, "
        f"{args.seconds:g} s x {args.reps} reps (medians); load average {load[0]:.2f} before, {load[1]:.2f} after",
        f"{'client':18} {'acks/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/ack':>11} {'bad':>5} {'vs pysio':>9}",
    ]
    for name in CLIENTS:
        m = medians[name]
        vs = ratio(name, "python-socketio")
        lines.append(
            f"{name:18} {fmt(m['acks_per_s'], ',.0f'):>10} {fmt(m['p50_ms'], '.2f'):>8} "
            f"{fmt(m['p99_ms'], '.2f'):>8} {fmt(m['cpu_us_per_ack'], '.1f'):>11} {m['bad_acks']:>5} "
            f"{fmt(vs, '.2f') + 'x':>9}"
        )
    speed, trio = ratio("anysio-asyncio", "python-socketio"), ratio("anysio-trio", "anysio-asyncio")
    if not args.smoke:
        verdict = "n/a" if speed is None else ("PASS" if speed >= 5 else "MISS")
        lines.append(f"target anysio.Client (asyncio) >= 5x python-socketio: {fmt(speed, '.2f')}x {verdict}")
        verdict = "n/a" if trio is None else ("PASS" if trio >= 0.85 else "MISS")
        lines.append(f"target trio within 15% of asyncio (>= 0.85x): {fmt(trio, '.2f')}x {verdict}")
    return "\n".join(lines)


def bench_main(args: argparse.Namespace) -> int:
    if args.pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        print("taskset or a second core is missing: running unpinned", file=sys.stderr)
        args.pin = False
    port = free_port()
    logs = BENCH / "results"
    logs.mkdir(exist_ok=True)
    load_before = load_average()
    server = start_node(args.pin, port, logs / "client-node.log")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CLIENTS}
    try:
        for rep in range(args.reps):
            order = CLIENTS[rep % len(CLIENTS) :] + CLIENTS[: rep % len(CLIENTS)]
            for name in order:
                result = one(name, port, args)
                runs[name].append(result)
                print(f"  {name} rep {rep + 1}: {result['acks_per_s']:,.0f} acks/s", file=sys.stderr)
    finally:
        server.kill()
        server.wait()
    medians = {
        name: {
            key: statistics.median(r[key] for r in results) if all(r[key] is not None for r in results) else None
            for key in ("acks_per_s", "p50_ms", "p99_ms", "cpu_us_per_ack")
        }
        | {"bad_acks": sum(r["bad_acks"] for r in results)}
        for name, results in runs.items()
    }
    print(report(medians, (load_before, load_average()), args))
    return 1 if any(m["bad_acks"] for m in medians.values()) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Python clients' echo with acks against Node (see bench/README.md)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --smoke)")
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per run (default 5; 0.5 smoke)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 1; 0.2 smoke)")
    p.add_argument("--in-flight", type=int, default=16, help="acks in flight on the one connection (default 16)")
    p.add_argument("--smoke", action="store_true", help="tiny runs: checks the harness, judges nothing")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the server and the clients")
    p.add_argument("--run", dest="client", choices=CLIENTS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.smoke else 3)
    args.seconds = args.seconds or (0.5 if args.smoke else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if args.smoke else 1.0)
    return client_main(args) if args.client else bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
