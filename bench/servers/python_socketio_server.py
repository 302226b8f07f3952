"""The benchmark contract on python-socketio (ASGI) under uvicorn with uvloop, default options.

PORT from the environment; every socket joins room "bench" on connect; "echo" is acknowledged with its argument
(the load generator's object, {"id", "text", "ts"}), returned as it came, python-socketio's idiomatic form;
"bcast" is broadcast to the room, sender included.
"""

from __future__ import annotations

import os
from typing import Any

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi")
app = socketio.ASGIApp(sio)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    await sio.enter_room(sid, "bench")


@sio.event
async def echo(sid: str, payload: Any = None) -> Any:
    return payload


@sio.event
async def bcast(sid: str, payload: Any = None) -> None:
    await sio.emit("bcast", payload, room="bench")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), loop="uvloop", log_level="warning")
