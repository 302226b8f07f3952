"""The application the msgpack worker test runs with ``anysio run --workers N``: Node's socket.io-msgpack-parser
on the wire, and what crosses workers (a broadcast to a room, acks gathered from every worker's clients)."""

from __future__ import annotations

import os
from typing import Any

import anysio

sio = anysio.Server(parser="msgpack")


@sio.on("connect")
async def connect(socket: anysio.Socket, auth: Any) -> None:
    socket.join("all")


@sio.on("whoami")
async def whoami(socket: anysio.Socket) -> int:
    return os.getpid()


@sio.on("bcast")
async def bcast(socket: anysio.Socket, *values: Any) -> int:
    await sio.to("all").emit("bcast", *values)
    return 1


@sio.on("ask_all")
async def ask_all(socket: anysio.Socket) -> list[Any]:
    return await sio.timeout(5).emit_with_ack("question")
