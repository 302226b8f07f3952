"""The application the worker tests run in N processes: acks, a room broadcast, and cluster-wide queries."""

from __future__ import annotations

import os
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
