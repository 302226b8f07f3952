"""The application the worker tests run in N processes: acks, a room broadcast, cluster-wide queries, and the
faults the fault tests inject (a handler that hangs, a flood of bus traffic)."""

from __future__ import annotations

import os
import time
from typing import Any

import anysio

sio = anysio.Server()


@sio.on("connect")
async def connect(socket: anysio.Socket, auth: Any) -> None:
    socket.join("all")


@sio.on("echo")
async def echo(socket: anysio.Socket, value: Any) -> Any:
    return value


@sio.on("whoami")
async def whoami(socket: anysio.Socket) -> int:
    return os.getpid()


@sio.on("bcast")
async def bcast(socket: anysio.Socket, value: Any) -> int:
    await sio.to("all").emit("bcast", value)
    return 1


@sio.on("count")
async def count(socket: anysio.Socket) -> int:
    return len(await sio.fetch_sockets())


@sio.on("ask_all")
async def ask_all(socket: anysio.Socket) -> int:
    replies = await sio.timeout(5).emit_with_ack("question")
    return len(replies)


@sio.on("hang")
def hang(socket: anysio.Socket, seconds: float) -> int:
    """Blocks this worker's event loop for ``seconds``: the fault the worker tests inject (a handler that hangs)."""
    time.sleep(seconds)
    return 1


@sio.on("flood")
async def flood(socket: anysio.Socket, count: int, size: int) -> int:
    """``count`` broadcasts of ``size`` bytes to a room nobody is in: traffic on the bus only, which a worker that
    reads nothing leaves in its sockets until the others cut it off."""
    blob = "x" * size
    for _ in range(count):
        await sio.to("nobody").emit("flood", blob)
    return count
