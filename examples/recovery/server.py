"""The recovery contract (issue 12): connection state recovery as Node's, driven by the official client.

    PORT=5000 MAX_DISC_MS=120000 python examples/recovery/server.py [--backend asyncio|trio] [--workers N]

``MAX_DISC_MS`` is ``max_disconnection_duration`` in milliseconds (default 120000, Node's); middlewares are
skipped on recovery (``skip_middlewares`` true). ``--workers N``: N worker processes on the port (``anysio run
server:app --factory --workers N``); a client that comes back to another worker is recovered over the bus.

The main namespace answers:

- a connect middleware counts its runs per ``auth["name"]``;
- on connect: if not recovered, join ``auth["room"]`` and set ``socket.data["name"] = auth["name"]``; then emit
  ``hello`` {id, recovered, middleware_runs (for that name)};
- ``send`` {room, event, args}: ``sio.to(room).emit(event, *args)``, ack ``true``;
- ``self`` {event, args}: ``socket.emit(event, *args)``, ack ``true``;
- ``state`` {}: ack {id, rooms (sorted), name}.

It prints ``anysio: listening on http://HOST:PORT`` once it serves (with workers, the master prints ``anysio: N
workers listening on http://HOST:PORT``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import Any

import anysio
from anysio.workers import run as run_workers


def build(max_disc_ms: float = 120_000, skip_middlewares: bool = True) -> anysio.Server:
    recovery = anysio.ConnectionStateRecovery(max_disc_ms / 1000, skip_middlewares)
    sio = anysio.Server(cors_allowed_origins="*", connection_state_recovery=recovery)
    runs: Counter[Any] = Counter()

    @sio.use
    def count(socket: anysio.Socket) -> None:
        runs[_auth(socket).get("name")] += 1

    @sio.on("connect")
    async def connect(socket: anysio.Socket, auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        if not socket.recovered:
            socket.join(auth.get("room") or [])
            socket.data["name"] = auth.get("name")
        hello = {"id": socket.id, "recovered": socket.recovered, "middleware_runs": runs[auth.get("name")]}
        await socket.emit("hello", hello)

    @sio.on("send")
    async def send(socket: anysio.Socket, msg: dict[str, Any]) -> bool:
        await sio.to(msg["room"]).emit(msg["event"], *(msg.get("args") or []))
        return True

    @sio.on("self")
    async def self_(socket: anysio.Socket, msg: dict[str, Any]) -> bool:
        await socket.emit(msg["event"], *(msg.get("args") or []))
        return True

    @sio.on("state")
    def state(socket: anysio.Socket, msg: Any = None) -> dict[str, Any]:
        return {"id": socket.id, "rooms": sorted(socket.rooms), "name": socket.data.get("name")}

    return sio


def _auth(socket: anysio.Socket) -> dict[str, Any]:
    auth = socket.handshake.auth
    return auth if isinstance(auth, dict) else {}


def app() -> anysio.Server:
    """The server of one worker (``anysio run server:app --factory``), configured from the environment."""
    return build(float(os.environ.get("MAX_DISC_MS", "120000")))


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5000"))
    if args.workers != 1:
        here = os.path.dirname(os.path.abspath(__file__))
        status = run_workers(
            "server:app", factory=True, app_dir=here, workers=args.workers, host=host, port=port, backend=args.backend
        )
        sys.exit(status)
    app().run(host, port, backend=args.backend)


if __name__ == "__main__":
    cli()
