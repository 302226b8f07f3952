"""anysio's Socket.IO server inside an ASGI server, beside a Starlette app.

Run:  uvicorn asgi_app:app --app-dir examples --port 8000
 or:  cd examples && hypercorn --worker-class trio --bind 127.0.0.1:8000 asgi_app:app
Then GET http://127.0.0.1:8000/hello is Starlette's, and Socket.IO clients connect to http://127.0.0.1:8000.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import anysio

sio = anysio.Server()


@dataclass
class Chat:
    room: str
    text: str


@sio.on("join")
async def join(socket: anysio.Socket, room: str) -> list[str]:
    socket.join(room)
    return sorted(socket.rooms)


@sio.on("chat")
async def chat(socket: anysio.Socket, msg: Chat) -> str:
    await socket.to(msg.room).emit("chat", msg)  # the room's other members
    return "delivered"


@sio.on("echo")
async def echo(socket: anysio.Socket, *args: object) -> tuple[object, ...]:
    return args  # binary arguments come back as bytes


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world", "sessions": sio.engine_count})


web = Starlette(routes=[Route("/hello", hello)])
app = anysio.ASGIApp(sio, other_app=web)
