"""Socket.IO server with exactly the configuration of the protocol test suite.

pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6, connectTimeout 1000 ms, CORS for any origin; namespaces
"/" and "/custom"; on connect the client's auth is emitted back as "auth"; "message" is answered by "message-back"
with the same arguments; "message-with-ack" is acknowledged with them. ``--parser msgpack`` runs the same with
socket.io-msgpack-parser's packets (the test suite's clients then need ``parser: require("socket.io-msgpack-parser")``).
Usage: python examples/conformance/socketio_server.py [--port 3000] [--backend asyncio|uvloop|trio] [--workers N]
                                                       [--parser default|msgpack]
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Literal

from anysio import Ack, Server, Socket, workers


def make_server(parser: Literal["default", "msgpack"] = "default") -> Server:
    sio = Server(
        ping_interval=0.3,
        ping_timeout=0.2,
        max_payload=1_000_000,
        connect_timeout=1.0,
        cors_allowed_origins="*",
        parser=parser,
    )
    for nsp in (sio, sio.of("/custom")):

        @nsp.on("connect")
        async def connect(socket: Socket, auth: Any) -> None:
            await socket.emit("auth", auth)

        @nsp.on("message")
        async def message(socket: Socket, *args: Any) -> None:
            await socket.emit("message-back", *args)

        @nsp.on("message-with-ack")
        def message_with_ack(socket: Socket, ack: Ack, *args: Any) -> None:
            ack(*args)

    return sio


def make_msgpack_server() -> Server:
    """The factory the workers call for ``--parser msgpack``."""
    return make_server("msgpack")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument("--parser", choices=["default", "msgpack"], default="default", help="Node's parser option")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.workers > 1:
        # The workers import this file as a module, from its own directory.
        here = os.path.dirname(os.path.abspath(__file__))
        raise SystemExit(
            workers.run(
                "socketio_server:make_msgpack_server" if args.parser == "msgpack" else "socketio_server:make_server",
                workers=args.workers,
                host=args.host,
                port=args.port,
                backend=args.backend,
                app_dir=here,
                factory=True,
            )
        )
    make_server(args.parser).run(args.host, args.port, backend=args.backend)


if __name__ == "__main__":
    main()
