"""The benchmark contract on anysio's standalone server.

PORT from the environment; "echo" is acknowledged with its payload; every socket joins room "bench" on connect;
"bcast" is broadcast to the room, sender included. Default options, as every peer.
Usage: PORT=5000 python bench/servers/anysio_server.py --backend asyncio|uvloop|trio [--workers N]

With ``--workers N`` (N > 1) anysio's master process runs N workers on the port (``anysio.workers``); bench/run.py
measures one process on one core and does not use it: the PID it watches would be the master's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

import anyio

from anysio import Server, Socket


def make_server() -> Server:
    sio = Server()

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        socket.join("bench")

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args  # the ack carries the same arguments

    @sio.on("bcast")
    async def bcast(socket: Socket, *args: Any) -> None:
        await sio.to("bench").emit("bcast", *args)

    return sio


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    args = parser.parse_args()
    port = int(os.environ.get("PORT", "5000"))
    if args.workers > 1:
        from anysio import workers

        # The workers import this file as a module, from its own directory.
        here = os.path.dirname(os.path.abspath(__file__))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        target = "anysio_server:make_server"
        raise SystemExit(workers.run(target, workers=args.workers, host="127.0.0.1", port=port, backend=args.backend))
    backend, options = ("asyncio", {"use_uvloop": True}) if args.backend == "uvloop" else (args.backend, {})
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(make_server().serve, "127.0.0.1", port, backend=backend, backend_options=options)


if __name__ == "__main__":
    main()
