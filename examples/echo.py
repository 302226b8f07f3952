"""The smallest typed anysio server: the one the README shows.

Run: python examples/echo.py [--backend asyncio|trio]   (then connect any Socket.IO client to :5000)
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

import anyio

import anysio

sio = anysio.Server(cors_allowed_origins="*")


@dataclass
class Message:
    room: str
    text: str


@sio.on("connect")
async def connect(socket: anysio.Socket, auth: dict[str, str] | None) -> None:
    if auth and auth.get("token") == "wrong":
        raise anysio.ConnectionRefused("login first", {"hint": "send a token"})


@sio.on("join")
async def join(socket: anysio.Socket, room: str) -> list[str]:
    socket.join(room)
    return sorted(socket.rooms)


@sio.on("chat")
async def chat(socket: anysio.Socket, msg: Message) -> str:
    await socket.to(msg.room).emit("chat", msg)  # everyone in the room but the sender
    return "delivered"  # the client's ack callback receives this


@sio.on("echo")
async def echo(socket: anysio.Socket, *args: object) -> tuple[object, ...]:
    return args  # acknowledged with the same arguments, binary included


def main() -> None:
    parser = argparse.ArgumentParser(description="anysio echo server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(sio.serve, args.host, args.port, backend=args.backend)


if __name__ == "__main__":
    main()
