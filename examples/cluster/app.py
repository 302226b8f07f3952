"""One machine of a cluster on Redis, the README's worked example ("Deployment across machines"):

    env REDIS_URL=redis://127.0.0.1:6379 .venv/bin/anysio run app:sio --app-dir examples/cluster --workers 2

A client joins the room of its auth (``{"room": "lobby"}`` by default); ``say`` (room, text) sends ``said`` (text)
to that room on every machine and acknowledges with the number of servers in the cluster (one per machine).
"""

from __future__ import annotations

import os

import anysio

cluster = anysio.RedisCluster(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
sio = anysio.Server(adapter=cluster.adapter)  # `anysio run` connects it to Redis (with workers: once per machine)


@sio.on("connect")
async def connect(socket: anysio.Socket, auth: dict[str, str] | None) -> None:
    socket.join((auth or {}).get("room", "lobby"))


@sio.on("say")
async def say(socket: anysio.Socket, room: str, text: str) -> int:
    await sio.to(room).emit("said", text)  # every client in the room, on every machine
    return await sio.server_count()
