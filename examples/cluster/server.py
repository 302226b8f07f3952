"""The cluster contract (issue 11): one server of a cluster joined through Redis, wire-compatible with Node's
``@socket.io/redis-adapter`` (tests/cluster/node_server.mjs is the same contract on Node).

    PORT=5001 REDIS_URL=redis://127.0.0.1:6379 NAME=a python examples/cluster/server.py [--backend trio] [--sharded]
    PORT=5001 REDIS_URL=redis://127.0.0.1:6379 NAME=a python examples/cluster/server.py --workers 2

(``--sharded`` or ``ADAPTER=sharded``: the sharded adapter, Redis 7 sharded pub/sub, with ``SUBSCRIPTION_MODE``
"static", "dynamic" (the default) or "dynamic-private", and ``ROOM_SWEEP_INTERVAL`` in seconds (5). ``--workers
N``: N worker processes on the port, ``anysio run server:app --factory --workers N``, of which worker 0 holds the
Redis link for the machine: one server of the cluster.)

Namespaces "/" and "/chat" each answer:

- on connect: ``socket.data = {"name": auth["name"]}``, join every room of ``auth["rooms"]``, emit ``welcome``
  with NAME;
- ``to`` {rooms, except, event, args}: ``nsp.to(rooms).except_(except).emit(event, *args)``; ack ``true``;
- ``ask`` {rooms, timeout_ms}: ack the sorted replies of ``nsp.to(rooms).timeout(t).emit_with_ack("question")``;
- ``fetch`` {rooms}: ack ``[{id, name, rooms (sorted)}]`` sorted by id, from ``nsp.in_(rooms).fetch_sockets()``;
- ``join_all`` / ``leave_all`` {rooms, room}: ``nsp.in_(rooms).sockets_join(room)`` / ``sockets_leave``; ack ``true``;
- ``kick`` {rooms}: ``nsp.in_(rooms).disconnect_sockets(close=True)``; ack ``true`` (first);
- ``sse`` {event, args}: ``nsp.server_side_emit(event, *args)``; ack ``true``;
- ``seen`` {}: ack the list of ``[event, args]`` this server heard server-side, in order;
- ``sse_ack`` {timeout_ms}: ack the sorted replies of ``server_side_emit_with_ack("who")``; each server answers
  ``who`` with NAME (on an error, ``{"error", "replies"}``);
- ``rooms`` {}: ack the sorted ``all_rooms()`` of the namespace's adapter (Node's ``adapter.allRooms()``);
- ``whoami`` {}: ack ``{"pid", "holds_link"}``: the process that serves the socket, and whether it holds the
  machine's Redis link (with workers, the tests tell the workers apart by it).

It prints ``{"event": "listening", "port": N, "uids": {...}}`` once it serves (with workers, the master prints
``anysio: N workers listening on http://HOST:PORT``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import anyio

import anysio
from anysio.adapters.bus import BusAdapter
from anysio.adapters.redis import LinkedAdapter, RedisCluster
from anysio.workers import run as run_workers


def _sorted(values: list[Any]) -> list[Any]:
    return sorted(values, key=lambda v: json.dumps(v, sort_keys=True))


def contract(nsp: anysio.Namespace, name: str) -> None:
    seen: list[list[Any]] = []
    receive = nsp.receive_server_side

    async def record(args: list[Any]) -> Any:
        # Every server-side event this namespace hears (from another server or an emitter), in order.
        seen.append([args[0] if args else None, list(args[1:])])
        return await receive(args)

    setattr(nsp, "receive_server_side", record)  # noqa: B010 - the contract's "seen" needs every event

    @nsp.on_server_side("who")
    def who() -> str:
        return name

    @nsp.on("connect")
    async def connect(socket: anysio.Socket, auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        socket.data = {"name": auth.get("name")}
        socket.join(list(auth.get("rooms") or []))
        await socket.emit("welcome", name)

    @nsp.on("to")
    async def to(socket: anysio.Socket, msg: dict[str, Any]) -> bool:
        op = nsp.to(msg.get("rooms") or []).except_(msg.get("except") or [])
        await op.emit(msg["event"], *(msg.get("args") or []))
        return True

    @nsp.on("ask")
    async def ask(socket: anysio.Socket, msg: dict[str, Any]) -> Any:
        op = nsp.to(msg.get("rooms") or []).timeout(msg.get("timeout_ms", 5000) / 1000)
        try:
            return _sorted(await op.emit_with_ack("question"))
        except anysio.AckTimeout as e:
            return {"error": str(e), "replies": _sorted(e.replies)}

    @nsp.on("fetch")
    async def fetch(socket: anysio.Socket, msg: dict[str, Any]) -> list[dict[str, Any]]:
        sockets = await nsp.in_(msg.get("rooms") or []).fetch_sockets()
        rows = [{"id": s.id, "name": (s.data or {}).get("name"), "rooms": sorted(s.rooms)} for s in sockets]
        return sorted(rows, key=lambda r: r["id"])

    @nsp.on("join_all")
    async def join_all(socket: anysio.Socket, msg: dict[str, Any]) -> bool:
        await nsp.in_(msg.get("rooms") or []).sockets_join(msg["room"])
        return True

    @nsp.on("leave_all")
    async def leave_all(socket: anysio.Socket, msg: dict[str, Any]) -> bool:
        await nsp.in_(msg.get("rooms") or []).sockets_leave(msg["room"])
        return True

    @nsp.on("kick")
    async def kick(socket: anysio.Socket, msg: dict[str, Any], ack: anysio.Ack) -> None:
        ack(True)  # first: the asking socket may be one of those kicked
        await nsp.in_(msg.get("rooms") or []).disconnect_sockets(close=True)

    @nsp.on("sse")
    async def sse(socket: anysio.Socket, msg: dict[str, Any]) -> bool:
        await nsp.server_side_emit(msg["event"], *(msg.get("args") or []))
        return True

    @nsp.on("seen")
    def seen_(socket: anysio.Socket, msg: Any = None) -> list[list[Any]]:
        return seen

    @nsp.on("sse_ack")
    async def sse_ack(socket: anysio.Socket, msg: Any = None) -> Any:
        timeout = (msg or {}).get("timeout_ms", 5000) / 1000 if isinstance(msg, dict) else 5.0
        try:
            return _sorted(await nsp.server_side_emit_with_ack("who", timeout=timeout))
        except anysio.AckTimeout as e:
            return {"error": str(e), "replies": _sorted(e.replies)}
        except anysio.ClusterError as e:  # Redis unreachable, say
            return {"error": str(e), "replies": []}

    @nsp.on("rooms")
    async def rooms(socket: anysio.Socket, msg: Any = None) -> list[str]:
        return sorted(await nsp.adapter.all_rooms())

    @nsp.on("whoami")
    def whoami(socket: anysio.Socket, msg: Any = None) -> dict[str, Any]:
        adapter = nsp.adapter
        holds = isinstance(adapter, LinkedAdapter) or (
            isinstance(adapter, BusAdapter) and isinstance(adapter.uplink, LinkedAdapter)
        )
        return {"pid": os.getpid(), "holds_link": holds}


def build(name: str, cluster: RedisCluster) -> anysio.Server:
    sio = anysio.Server(cors_allowed_origins="*", adapter=cluster.adapter)
    for path in ("/", "/chat"):
        contract(sio.of(path), name)
    return sio


def cluster_of(env: Mapping[str, str]) -> RedisCluster:
    return RedisCluster(
        env.get("REDIS_URL", "redis://127.0.0.1:6379"),
        sharded=env.get("ADAPTER") == "sharded",
        subscription_mode=env.get("SUBSCRIPTION_MODE", "dynamic"),
        room_sweep_interval=float(env.get("ROOM_SWEEP_INTERVAL", "5")),
    )


def app() -> anysio.Server:
    """The server of one worker (``anysio run server:app --factory``), configured from the environment."""
    return build(os.environ.get("NAME", "anysio"), cluster_of(os.environ))


async def main(host: str, port: int, name: str) -> None:
    cluster = cluster_of(os.environ)
    sio = build(name, cluster)
    async with cluster, anyio.create_task_group() as tg:
        bound = await tg.start(sio.serve, host, port)
        uids = {p: a.uid for p, a in cluster.adapters.items()}
        print(json.dumps({"event": "listening", "port": bound[1], "uids": uids}), flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sharded", action="store_true", help="Redis 7 sharded pub/sub (createShardedAdapter)")
    args = parser.parse_args()
    env = os.environ
    if args.sharded:
        os.environ["ADAPTER"] = "sharded"
    if args.workers != 1:
        here = os.path.dirname(os.path.abspath(__file__))
        host, port = env.get("HOST", "127.0.0.1"), int(env.get("PORT", "5000"))
        sys.exit(
            run_workers(
                "server:app",
                factory=True,
                app_dir=here,
                workers=args.workers,
                host=host,
                port=port,
                backend=args.backend,
            )
        )
    host = env.get("HOST", "127.0.0.1")
    anyio.run(main, host, int(env.get("PORT", "5000")), env.get("NAME", "anysio"), backend=args.backend)


if __name__ == "__main__":
    cli()
