"""What a long-polling client that never polls costs the server: the server's RSS while it emits to such a client.

    .venv/bin/python bench/polling_backlog.py                      # with max_buffered at its default, 16 MiB
    .venv/bin/python bench/polling_backlog.py --max-buffered 0     # 0: no bound (what issue 17 measured)

A server (a subprocess, so its RSS is its own) emits 4 KiB events to every socket, one each millisecond, for at
most --seconds. The client, raw HTTP on 127.0.0.1, opens a polling session and connects to "/", then never sends
a GET: it only POSTs a pong every 0.5 s, which keeps its session alive through the heartbeat (ping every 1 s),
so nothing but a bound on what waits for the GET ends it. Printed: the server's RSS at the start, its peak, at
the end, and when and why the session closed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import anyio

import anysio

EVENT = "x" * 4096


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def serve(port: int, max_buffered: int, seconds: float) -> None:
    # No bound is a bound no run reaches.
    sio = anysio.Server(ping_interval=1.0, ping_timeout=2.0, max_buffered=max_buffered or 1 << 62)

    @sio.on("disconnect")
    def gone(socket: anysio.Socket, reason: str) -> None:
        print(json.dumps({"disconnect": reason}), flush=True)

    async def flood() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await sio.emit("data", EVENT)
            await anyio.sleep(0.001)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(sio.serve, "127.0.0.1", port)
            tg.start_soon(flood)

    anyio.run(run)


async def request(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head.encode() + body)
        data = b""
        with anyio.fail_after(10):
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def client(port: int, server_pid: int, seconds: float) -> dict[str, Any]:
    base = "/socket.io/?EIO=4&transport=polling"
    for _ in range(100):  # the server starts
        try:
            status, body = await request(port, "GET", base)
            break
        except OSError:
            await anyio.sleep(0.1)
    sid = json.loads(body[1:])["sid"]
    target = f"{base}&sid={sid}"
    start = rss_kib(server_pid)
    peak, started = start, time.monotonic()
    status, _ = await request(port, "POST", target, b"40")
    closed_after = None
    while time.monotonic() - started < seconds:
        status, _ = await request(port, "POST", target, b"3")
        peak = max(peak, rss_kib(server_pid))
        if status != 200:  # the session is gone
            closed_after = time.monotonic() - started
            break
        await anyio.sleep(0.5)
    return {
        "rss_start_kib": start,
        "rss_peak_kib": peak,
        "rss_end_kib": rss_kib(server_pid),
        "closed_after_s": closed_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-buffered", type=int, default=16 * 1024 * 1024, help="0 for no bound")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=5391)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.max_buffered, args.seconds)
        return
    argv = [sys.executable, __file__, "--serve", "--port", str(args.port), "--max-buffered", str(args.max_buffered)]
    argv += ["--seconds", str(args.seconds)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        result = anyio.run(client, args.port, server.pid, args.seconds)
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=10)
    reasons = [json.loads(line)["disconnect"] for line in out.splitlines() if line.startswith("{")]
    result["server_disconnect_reason"] = reasons[0] if reasons else None
    result["max_buffered"] = args.max_buffered or None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
