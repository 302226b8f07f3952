"""anysio and Node servers on one Redis are one cluster (issue 11): a real redis-server, a Node socket.io server
on ``@socket.io/redis-adapter`` 8 and an anysio server on ``RedisCluster`` (examples/cluster/server.py, on the
test's backend), driven by the official socket.io-client. Every contract operation is done from each server as
origin, and must reach the clients and sockets of both. The anysio server is also a machine of 2 workers (worker
0 holds the Redis link): then "p1" is a client of the worker that holds it and "p2" of the other one, and each
is an origin."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anysio.adapters.redis import RedisAddress
from tests.e2e.cluster_helpers import ROOT, Client, Cluster, RespConnection, mixed_cluster

pytestmark = pytest.mark.anyio


#: (mode, origin, workers of the anysio server): every origin in both modes with one process each, and every
#: origin in both modes when the anysio machine runs 2 workers (p1 on the worker holding the Redis link).
ORIGINS = [
    *[(mode, origin, 1) for mode in ("classic", "sharded") for origin in ("n1", "p1")],
    *[(mode, origin, 2) for mode in ("classic", "sharded") for origin in ("n1", "p1", "p2")],
]


async def sync_all(c: Cluster, origin: Client, tag: str) -> None:
    """A broadcast to the whole namespace, awaited at every client of "/": what was sent before it from the same
    origin has arrived by then (Redis keeps a publisher's order)."""
    await origin.call("to", {"event": "sync", "args": [tag]})
    for name in ("n1", "n2", "p1", "p2"):
        while await c.clients[name].received("sync") != [tag]:
            pass


@pytest.mark.parametrize(("mode", "origin", "workers"), ORIGINS)
async def test_broadcasts_cross_between_node_and_anysio(
    anyio_backend: str, origin: str, mode: str, workers: int
) -> None:
    async with mixed_cluster(anyio_backend, mode=mode, workers=workers) as c:
        cl, o = c.clients, c.clients[origin]

        # One room (the room's own channel), with binary.
        blob = {"binary": "00ff10"}
        assert await o.call("to", {"rooms": ["r1"], "event": "hello", "args": [1, {"b": blob}, "é"]}) is True
        for name in ("n1", "p1"):
            assert await cl[name].received("hello") == [1, {"b": blob}, "é"]
        # Several rooms, except a room: p1 is in r1 but also in r3.
        await o.call("to", {"rooms": ["r1", "r2"], "except": ["r3"], "event": "multi", "args": [[1, 2]]})
        for name in ("n1", "n2", "p2"):
            assert await cl[name].received("multi") == [[1, 2]]
        # The whole namespace.
        await o.call("to", {"event": "all", "args": [None, True, 2.5]})
        for name in ("n1", "n2", "p1", "p2"):
            assert await cl[name].received("all") == [None, True, 2.5]
        await sync_all(c, o, "after-broadcasts")
        assert cl["p1"].got("multi") == [] and cl["n2"].got("hello") == [] and cl["p2"].got("hello") == []
        assert cl["nc"].got("all") == [] and cl["pc"].got("all") == [], "another namespace hears nothing"

        # Another namespace.
        chat = cl["nc"] if origin.startswith("n") else cl["pc"]
        await chat.call("to", {"rooms": ["r1"], "event": "chat", "args": ["hi"]})
        for name in ("nc", "pc"):
            assert await cl[name].received("chat") == ["hi"]


@pytest.mark.parametrize(("mode", "origin", "workers"), ORIGINS)
async def test_requests_are_answered_by_every_server(anyio_backend: str, origin: str, mode: str, workers: int) -> None:
    async with mixed_cluster(anyio_backend, mode=mode, workers=workers) as c:
        cl, o = c.clients, c.clients[origin]
        other = "P" if origin.startswith("n") else "N"

        # allRooms: every server's rooms, socket ids included (the classic adapter's request; the sharded one has
        # none in Node's ClusterAdapter, so anysio's answers for its own machine, every worker's rooms).
        anysio_rooms = {"r1", "r2", "r3", cl["p1"].id, cl["p2"].id}
        if mode == "classic":
            assert await o.call("rooms") == sorted(anysio_rooms | {"r1", "r2", cl["n1"].id, cl["n2"].id})
        elif origin.startswith("p"):
            assert await o.call("rooms") == sorted(anysio_rooms)

        # A broadcast with acks gathers every client's reply, on both servers.
        assert await o.call("ask", {"rooms": [], "timeout_ms": 4000}) == ["n1", "n2", "p1", "p2"]
        assert await o.call("ask", {"rooms": ["r2"], "timeout_ms": 4000}) == ["n2", "p2"]

        # fetch_sockets: every server's sockets, with their rooms and data.
        rows = await o.call("fetch", {"rooms": ["r1"]})
        expected: list[dict[str, Any]] = [
            {"id": cl["n1"].id, "name": "n1", "rooms": sorted([cl["n1"].id, "r1"])},
            {"id": cl["p1"].id, "name": "p1", "rooms": sorted([cl["p1"].id, "r1", "r3"])},
        ]
        expected.sort(key=lambda r: str(r["id"]))
        assert rows == expected

        # sockets_join / sockets_leave on every server.
        assert await o.call("join_all", {"rooms": ["r2"], "room": "r9"}) is True
        while {r["name"] for r in await o.call("fetch", {"rooms": ["r9"]})} != {"n2", "p2"}:
            pass  # Node applies a join when it hears its own request back: each fetch is a round trip
        await o.call("to", {"rooms": ["r9"], "event": "in9", "args": []})
        for name in ("n2", "p2"):
            assert await cl[name].received("in9") == []
        assert await o.call("leave_all", {"rooms": ["r9"], "room": "r9"}) is True
        while await o.call("fetch", {"rooms": ["r9"]}) != []:
            pass

        # Server-side events, with and without ack.
        assert await o.call("sse", {"event": "note", "args": [1, {"x": "y"}]}) is True
        hearer = cl["p2"] if origin.startswith("n") else cl["n2"]
        while ["note", [1, {"x": "y"}]] not in await hearer.call("seen"):
            pass
        assert ["note", [1, {"x": "y"}]] not in await o.call("seen"), "a server does not hear itself"
        assert await o.call("sse_ack", {"timeout_ms": 4000}) == [other]

        # disconnect_sockets reaches the other server's sockets (p1 is the only socket in r3).
        target = "p1" if origin.startswith("n") else "n1"
        await cl[target].call("join_all", {"rooms": [cl[target].id], "room": "kickme"})
        while [r["name"] for r in await o.call("fetch", {"rooms": ["kickme"]})] != [target]:
            pass  # a Node server applies its own join when the request comes back from Redis, after its ack
        assert await o.call("kick", {"rooms": ["kickme"]}) is True
        assert await cl[target].disconnected() == "io server disconnect"


async def test_the_redis_emitter_reaches_anysio_clients(anyio_backend: str) -> None:
    from anysio.adapters.redis import Emitter

    async with mixed_cluster(anyio_backend) as c, Emitter(c.redis.url) as io:
        cl = c.clients
        await io.to("r1").emit("from_emitter", {"b": b"\x01\x02"}, 3)
        for name in ("n1", "p1"):
            assert await cl[name].received("from_emitter") == [{"b": {"binary": "0102"}}, 3]
        await io.to(["r1", "r2"]).except_("r3").emit("emulti")
        for name in ("n1", "n2", "p2"):
            assert await cl[name].received("emulti") == []
        await io.of("/chat").emit("echat", "x")
        for name in ("nc", "pc"):
            assert await cl[name].received("echat") == ["x"]
        await io.server_side_emit("enote", 1)
        for name in ("n1", "p1"):
            while ["enote", [1]] not in await cl[name].call("seen"):
                pass
        await io.in_("r3").sockets_join("r7")
        while {r["name"] for r in await cl["n1"].call("fetch", {"rooms": ["r7"]})} != {"p1"}:
            pass
        await io.in_("r7").disconnect_sockets(True)
        assert await cl["p1"].disconnected() == "io server disconnect"


async def node_emitter(redis_url: str, ops: list[dict[str, Any]]) -> None:
    """Runs Node's @socket.io/redis-emitter (tests/cluster/emit.mjs) on ``ops`` until it has published them."""
    cmd = ["node", str(ROOT / "tests" / "cluster" / "emit.mjs"), json.dumps(ops)]
    with anyio.fail_after(10):
        result = await anyio.run_process(cmd, env={**os.environ, "REDIS_URL": redis_url})
    assert b'"done"' in result.stdout


async def test_nodes_redis_emitter_reaches_anysio_clients(anyio_backend: str) -> None:
    async with mixed_cluster(anyio_backend) as c:
        cl = c.clients
        ops: list[dict[str, Any]] = [
            {"op": "emit", "rooms": ["r1"], "event": "ne", "args": [{"b": {"binary": "0a0b"}}, 1.5]},
            {"op": "emit", "rooms": ["r1", "r2"], "except": ["r3"], "event": "nmulti", "args": []},
            {"op": "emit", "nsp": "/chat", "event": "nchat", "args": ["x"]},
            {"op": "serverSideEmit", "event": "nnote", "args": [{"k": 1}]},
            {"op": "socketsJoin", "rooms": ["r3"], "room": "r6"},
        ]
        await node_emitter(c.redis.url, ops)
        for name in ("n1", "p1"):
            assert await cl[name].received("ne") == [{"b": {"binary": "0a0b"}}, 1.5]
        for name in ("n1", "n2", "p2"):
            assert await cl[name].received("nmulti") == []
        for name in ("nc", "pc"):
            assert await cl[name].received("nchat") == ["x"]
        for name in ("n1", "p1"):
            while ["nnote", [{"k": 1}]] not in await cl[name].call("seen"):
                pass
        while {r["name"] for r in await cl["n1"].call("fetch", {"rooms": ["r6"]})} != {"p1"}:
            pass
        await node_emitter(c.redis.url, [{"op": "disconnectSockets", "rooms": ["r6"], "close": True}])
        assert await cl["p1"].disconnected() == "io server disconnect"


@pytest.mark.parametrize("mode", ["classic", "sharded"])
async def test_malformed_messages_are_dropped(anyio_backend: str, mode: str) -> None:
    """Garbage on the broadcast, request and response channels (the sharded mode's: the namespace's, a room's and
    a server's) is logged and dropped; the servers go on. (Two anysio servers: Node's classic adapter does not
    catch a broadcast it cannot decode, and its process dies.)"""
    async with mixed_cluster(anyio_backend, first="anysio", mode=mode) as c:
        conn = await RespConnection.open(RedisAddress.parse(c.redis.url), 5.0)
        if mode == "classic":
            command, channels = "PUBLISH", ["socket.io#/#", "socket.io#/#r1#", "socket.io-request#/#"]
            channels.append("socket.io-response#/#")
        else:
            command, channels = "SPUBLISH", ["socket.io#/#", "socket.io#/#r1#", f"socket.io#/#{c.py.uids['/']}#"]
        try:
            for channel in channels:
                for junk in (b"", b"\xc1", b"{not json", b"\x93\xa1u", b'{"type":7,"requestId":"x"}'):
                    await conn.command(command, channel, junk)
        finally:
            await conn.aclose()
        await c.clients["n1"].call("to", {"rooms": ["r1"], "event": "still", "args": []})
        assert await c.clients["p1"].received("still") == []
        assert c.py.lines.proc.returncode is None and c.node.lines.proc.returncode is None


@pytest.mark.parametrize(("mode", "workers"), [("classic", 1), ("classic", 2), ("sharded", 1), ("sharded", 2)])
async def test_redis_restart(anyio_backend: str, mode: str, workers: int) -> None:
    """Redis killed: each server keeps serving its own clients, and a request fails with an error instead of
    hanging; Redis back on the same port: cross-server broadcasts (on r2's own channel in the sharded mode) work
    again within 5 s, and no server died."""
    async with mixed_cluster(anyio_backend, mode=mode, workers=workers) as c:
        cl = c.clients
        await c.redis.stop()
        await cl["p1"].call("to", {"rooms": ["r2"], "event": "local", "args": [1]})
        assert await cl["p2"].received("local") == [1], "local delivery goes on without Redis"
        assert "unreachable" in (await cl["p1"].call("sse_ack", {"timeout_ms": 1000}))["error"]
        with anyio.fail_after(15):
            await c.redis.start()
            started = anyio.current_time()
            # Within 5 s of Redis being back, anysio -> Node and Node -> anysio broadcasts cross again.
            with anyio.fail_after(5):
                # What is published before a server has resubscribed is lost (pub/sub keeps nothing): retry,
                # awaiting each try's delivery for a tenth of a second.
                for sender, target, event in ((cl["p1"], cl["n2"], "back"), (cl["n1"], cl["p2"], "back2")):
                    while True:
                        await sender.call("to", {"rooms": ["r2"], "event": event, "args": []})
                        with anyio.move_on_after(0.1):
                            await target.received(event)
                            break
            print(f"recovered in {anyio.current_time() - started:.2f} s ({mode}, {workers} workers)")
        assert c.py.lines.proc.returncode is None and c.node.lines.proc.returncode is None


class Recorder:
    """Every message published on the adapter's channels (``socket.io*``), as (channel, bytes), in Redis's order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.arrived = anyio.Event()

    async def read(self, conn: RespConnection) -> None:
        while True:
            push = await conn.read()
            if push[0] == b"pmessage":
                self.seen.append((push[2].decode(), push[3]))
                self.arrived.set()
                self.arrived = anyio.Event()

    async def flushed(self, redis_url: str, tag: str) -> None:
        """Returns once the recorder has what was published before now: Redis delivers in publishing order."""
        conn = await RespConnection.open(RedisAddress.parse(redis_url), 5.0)
        try:
            await conn.command("PUBLISH", "socket.io-marker", tag)
        finally:
            await conn.aclose()
        with anyio.fail_after(5):
            while ("socket.io-marker", tag.encode()) not in self.seen:
                await self.arrived.wait()


@asynccontextmanager
async def recorder(redis_url: str) -> AsyncIterator[Recorder]:
    conn = await RespConnection.open(RedisAddress.parse(redis_url), 5.0)
    rec = Recorder()
    try:
        await conn.send("PSUBSCRIBE", "socket.io*")
        assert (await conn.read())[0] == b"psubscribe"
        async with anyio.create_task_group() as tg:
            tg.start_soon(rec.read, conn)
            yield rec
            tg.cancel_scope.cancel()
    finally:
        await conn.aclose()


async def test_workers_cross_redis_once_per_machine(anyio_backend: str) -> None:
    """With 2 workers, the machine is one server to the cluster: one subscriber (NUMSUB counts Node and the
    machine), each broadcast published once whichever worker sends it, relayed to both workers once received, and
    one request per cluster operation."""
    from anysio.adapters.redis import decode

    async with mixed_cluster(anyio_backend, workers=2) as c, recorder(c.redis.url) as rec:
        cl = c.clients
        conn = await RespConnection.open(RedisAddress.parse(c.redis.url), 5.0)
        try:
            assert (await conn.command("PUBSUB", "NUMSUB", "socket.io-request#/#"))[1] == 2
        finally:
            await conn.aclose()

        for origin, event, hearers in (("p1", "from-p1", ["n1"]), ("p2", "from-p2", ["n1", "p1"])):
            await cl[origin].call("to", {"rooms": ["r1"], "event": event, "args": [origin]})
            for name in hearers:
                assert await cl[name].received(event) == [origin]
        await cl["n1"].call("to", {"event": "from-n1", "args": []})
        for name in ("p1", "p2", "n2"):
            assert await cl[name].received("from-n1") == []
        assert await cl["p2"].call("join_all", {"rooms": ["r3"], "room": "r8"}) is True
        while {r["name"] for r in await cl["n1"].call("fetch", {"rooms": ["r8"]})} != {"p1"}:
            pass
        await rec.flushed(c.redis.url, "end")
        seen = rec.seen

        broadcasts = [decode("broadcast", data)[1]["data"][0] for ch, data in seen if ch.startswith("socket.io#/#")]
        assert sorted(e for e in broadcasts if e.startswith("from-")) == ["from-n1", "from-p1", "from-p2"]
        requests = [decode("request", data) for ch, data in seen if ch == "socket.io-request#/#"]
        assert [r["rooms"] for r in requests if r.get("type") == 2] == [["r8"]], "one REMOTE_JOIN"
        # Each fetch from n1 is one request, answered once by the machine (both workers' sockets in one answer).
        fetches = {r["requestId"] for r in requests if r.get("type") == 5}
        answers = [decode("response", d) for ch, d in seen if ch == "socket.io-response#/#"]
        assert len([a for a in answers if a.get("requestId") in fetches]) == len(fetches)


async def test_workers_survive_the_restart_of_the_link_holder(anyio_backend: str) -> None:
    """Worker 0 (which holds the Redis link) killed: the master restarts it, it links the machine again, and
    broadcasts cross between Node and the other worker's clients again, both ways."""
    async with mixed_cluster(anyio_backend, workers=2) as c:
        cl = c.clients
        os.kill((await cl["p1"].call("whoami"))["pid"], signal.SIGKILL)
        assert await cl["p1"].disconnected() == "transport close"
        with anyio.fail_after(15):
            # What is published before the new worker 0 has subscribed is lost (pub/sub keeps nothing): retry,
            # awaiting each try's delivery for a quarter of a second.
            for sender, target, event in ((cl["n1"], cl["p2"], "back"), (cl["p2"], cl["n2"], "back2")):
                while True:
                    await sender.call("to", {"rooms": ["r2"], "event": event, "args": []})
                    with anyio.move_on_after(0.25):
                        await target.received(event)
                        break
        assert await cl["n1"].call("ask", {"rooms": ["r2"], "timeout_ms": 4000}) == ["n2", "p2"]
        assert c.py.lines.proc.returncode is None
