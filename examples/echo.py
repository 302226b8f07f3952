"""The smallest typed anysio server: the one the README shows. `.venv/bin/python examples/echo.py` serves it on
http://127.0.0.1:5000 until Ctrl-C; `.venv/bin/anysio run echo:sio --app-dir examples` does too, with options."""

from dataclasses import dataclass

import anysio

sio = anysio.Server(cors_allowed_origins="*")  # defaults as socket.io 4.x: pingInterval 25 s, pingTimeout 20 s


@dataclass
class Message:
    room: str
    text: str


@sio.on("connect")
async def connect(socket: anysio.Socket, auth: dict[str, str] | None) -> None:
    if auth and auth.get("token") == "wrong":
        raise anysio.ConnectionRefused("login first", {"hint": "send a token"})  # client: connect_error


@sio.on("join")
async def join(socket: anysio.Socket, room: str) -> list[str]:
    socket.join(room)
    return sorted(socket.rooms)  # a handler's return value is the ack: the client's callback receives it


@sio.on("chat")
async def chat(socket: anysio.Socket, msg: Message) -> str:  # JSON is coerced into Message from the hint
    await socket.to(msg.room).emit("chat", msg)  # everyone in the room but the sender
    return "delivered"


@sio.on("echo")
async def echo(socket: anysio.Socket, *args: object) -> tuple[object, ...]:
    return args  # acknowledged with the same arguments, binary included


if __name__ == "__main__":
    sio.run("127.0.0.1", 5000)  # prints where it listens; Ctrl-C stops it. backend="trio" runs it on trio
