"""What uvicorn itself carries: a bare ASGI WebSocket app, no Socket.IO, under the uvicorn of the ASGI servers.

It speaks just enough Engine.IO v4 / Socket.IO v5 for the load generator's echo scenario: it accepts the
WebSocket, sends the Engine.IO OPEN packet, answers the namespace CONNECT, and answers each event packet
``42<id>["echo",<arg>]`` with the ack ``43<id>[<arg>]`` cut out of the event's text by string slicing (no JSON
parsing). No heartbeats, no polling, no rooms: the physical limit of the uvicorn path, for the ratio
anysio-asgi / uvicorn-bare (bench/README.md). Usage: PORT=5000 python bench/servers/uvicorn_bare_server.py

``serve`` is the uvicorn configuration every ASGI server of the benchmark uses.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN = '","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
_ids = itertools.count(1)


async def app(scope: Message, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await _websocket(receive, send)
    elif kind == "http":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _websocket(receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    sid = f"bare{next(_ids)}"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '0{"sid":"' + sid + OPEN})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        text = message.get("text")
        if not text:
            continue
        if text.startswith("42"):  # 42<id>["echo",<arg>]  ->  43<id>[<arg>]
            open_at = text.find("[")
            comma = text.find(",", open_at)
            if open_at > 2 and comma > 0:
                await send({"type": "websocket.send", "text": "43" + text[2:open_at] + "[" + text[comma + 1 :]})
        elif text.startswith("40"):
            await send({"type": "websocket.send", "text": '40{"sid":"' + sid + '"}'})


def serve(asgi_app: Any) -> None:
    """Run ``asgi_app`` under uvicorn on 127.0.0.1:$PORT with uvloop and uvicorn's default HTTP and WebSocket
    implementations (httptools and websockets when installed), as every ASGI server of the benchmark."""
    import uvicorn

    port = int(os.environ.get("PORT", "5000"))
    uvicorn.run(asgi_app, host="127.0.0.1", port=port, loop="uvloop", log_level="warning")


if __name__ == "__main__":
    serve(app)
