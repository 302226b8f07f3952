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
async def ask_all(socket: anysio.Socket) -> list[Any]:
    """How many sockets answered "question", and the shapes of their answers as this worker sees them: every
    client answers with two values (its index and a byte), which must be a tuple of int and bytes whichever
    worker its socket is on."""
    replies = await sio.timeout(5).emit_with_ack("question")
    shapes = {type(r).__name__ + "".join(f" {type(v).__name__}" for v in r) for r in replies}
    return [len(replies), sorted(shapes)]


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
