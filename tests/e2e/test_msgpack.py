"""The msgpack parser, ``Server(parser="msgpack")``, with the official socket.io-client and
socket.io-msgpack-parser (tests/node/sio_client.mjs ``--parser msgpack``) on both transports, python-socketio's
msgpack client, and a client by hand that breaks the protocol. Every test runs on asyncio and on trio, but the one
with python-socketio, whose client runs on asyncio only."""

from __future__ import annotations

import logging
import math
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import msgpack
import pytest
import socketio

from anysio import RedisCluster, Server, Socket
from tests.e2e.cluster_helpers import redis_server
from tests.e2e.eio_helpers import ws_session
from tests.e2e.sio_helpers import NodeSio, Record, asgi_serving, demo_server, from_wire, node_sio, serving
from tests.e2e.workers_helpers import cluster

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

TRANSPORTS = ["polling", "websocket"]


def anysio_log(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "anysio" and fragment in r.getMessage()]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_events_acks_and_binary_both_ways(transports: str) -> None:
    sio, rec = demo_server(parser="msgpack")
    blob = bytes(range(256)) * 40
    nested = {"a": [b"\x00\x01", {"b": blob, "empty": b""}], "c": "text", "n": [1, 2.5, None, True]}
    async with serving(sio) as address, node_sio(address, transports=transports, parser="msgpack") as client:
        [connected] = client.all("connect")
        assert connected["transport"] == transports
        [(nsp, sid, auth)] = await rec.wait("connect")
        assert (nsp, sid, auth) == ("/", connected["id"], {})  # no auth: Node's default
        assert await client.call("echo", b"top", nested) == [b"top", nested]
        assert await client.call("echo") == []
        # Typed handlers: ints, text coerced as in lax mode, bytes; a payload that does not fit answered in the ack.
        assert await client.call("add", 2, "3") == [5]
        assert await client.call("size", blob) == [len(blob)]
        (error,) = await client.call("add", "x", 2)
        assert error["errors"][0]["loc"] == ["a"]
        # The server asks (EVENT with an id) and the client's ACK, binary included, comes back.
        await client.ack_reply("blob", b"back", {"z": [b"\x02"]})
        assert await client.call("ask", "blob", {"x": [b"\xff"]}, b"\x04") == [b"back", {"z": [b"\x02"]}]
        assert client.received("blob") == [[{"x": [b"\xff"]}, b"\x04"]]
        assert sio.runtime.core.transport_of(sio.sockets[sid].client) == transports
        # DISCONNECT from the server, then the client's own on another socket.
        await client.emit("kick")
        assert (await client.expect("disconnect"))["reason"] == "io server disconnect"
        assert (await rec.wait("disconnect"))[0][2] == "server namespace disconnect"
        await client.command(cmd="connect")
        await client.expect("connect")
        await client.command(cmd="disconnect")
        assert (await rec.wait("disconnect", 2))[1][2] == "client namespace disconnect"


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_namespaces_auth_and_refusal(transports: str) -> None:
    sio, rec = demo_server(parser="msgpack")
    async with serving(sio) as address:
        kw: dict[str, Any] = {"transports": transports, "parser": "msgpack", "nsp": "/admin"}
        async with node_sio(address, auth={"token": "guess"}, connected=False, **kw) as refused:
            err = await refused.expect("connect_error")
            assert (err["message"], err["data"]) == ("unauthorized", {"hint": "token"})
        async with node_sio(address, **{**kw, "nsp": "/nope"}, connected=False) as unknown:
            err = await unknown.expect("connect_error")
            assert (err["message"], err["data"]) == ("Invalid namespace", None)
        # Binary in auth arrives as JSON would carry it with the default parser: Node's Buffer JSON.
        auth = {"token": "secret", "n": 1.5, "key": b"\x01\x02"}
        async with node_sio(address, auth=auth, **kw) as admin:
            [connected] = admin.all("connect")
            assert await admin.call("whoami") == [["/admin", connected["id"]]]
        [(nsp, _, got)] = rec.values("connect")
        assert (nsp, got) == ("/admin", {"token": "secret", "n": 1.5, "key": {"type": "Buffer", "data": [1, 2]}})


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_rooms_and_broadcasts(transports: str) -> None:
    sio, _ = demo_server(parser="msgpack")
    kw: dict[str, Any] = {"transports": transports, "parser": "msgpack"}
    async with serving(sio) as address, node_sio(address, **kw) as a, node_sio(address, **kw) as b:
        ids = {name: cl.all("connect")[0]["id"] for name, cl in (("a", a), ("b", b))}
        assert await a.call("join", "red") == [sorted([ids["a"], "red"])]
        await sio.to("red").emit("news", 1, b"\x05", {"deep": [b"\x06"]})
        await sio.except_("red").emit("news", 2)
        await b.emit("shout", "red", "from b")  # socket.to(room): the room but not the sender
        await b.call("echo")
        await sio.emit("marker")
        for client in (a, b):
            await client.receive("marker")
        assert a.received("news") == [[1, b"\x05", {"deep": [b"\x06"]}]]
        assert b.received("news") == [[2]]
        assert a.received("shout") == [["from b"]] and b.received("shout") == []
        await a.ack_reply("poll", "a says", b"\x07")
        await b.ack_reply("poll", "b says", b"\x08")
        replies = await sio.timeout(5).emit_with_ack("poll")
        assert sorted(map(tuple, replies)) == [("a says", b"\x07"), ("b says", b"\x08")]


async def test_catch_all_listeners_and_packet_middlewares_see_the_values() -> None:
    sio = Server(parser="msgpack")
    seen: list[tuple[str, Any]] = []

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        socket.on_any(lambda event, *args: seen.append(("any", [event, *args[:-1]])))
        socket.use(lambda packet: seen.append(("use", packet)))

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with serving(sio) as address, node_sio(address, parser="msgpack") as client:
        assert await client.call("echo", b"\x01", {"f": 2.5}) == [b"\x01", {"f": 2.5}]
    assert seen == [("any", ["echo", b"\x01", {"f": 2.5}]), ("use", ["echo", b"\x01", {"f": 2.5}])]


@dataclass
class Point:
    x: float
    y: float
    label: str = ""


# python-socketio's client is built on aiohttp: asyncio only.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_typed_handlers_with_python_socketios_msgpack_client(anyio_backend: str) -> None:
    """A Python msgpack peer tells floats from integers and sends NaN: the handler gets them as sent, and a typed
    return value goes back as msgpack (asyncio only: python-socketio's client runs there)."""
    sio = Server(parser="msgpack")
    seen: list[tuple[Any, ...]] = []

    @sio.on("values")
    def values(socket: Socket, *args: Any) -> tuple[Any, ...]:
        seen.append(args)
        return args

    @sio.on("move")
    def move(socket: Socket, p: Point, by: float) -> Point:
        return Point(p.x + by, p.y + by, p.label)

    @sio.on("typed")
    def typed(socket: Socket, x: float, n: int, b: bytes) -> list[int | bytes]:
        seen.append((x, n, b))
        return [n, b]

    async with serving(sio) as address:
        client = socketio.AsyncClient(reconnection=False, serializer="msgpack")
        await client.connect(f"http://{address[0]}:{address[1]}", transports=["websocket"])
        try:
            # Floats stay floats and integers stay exact (64 bits) both ways, unlike JSON through JavaScript.
            sent = [3.0, 3, 2**63 + 1, -(2**63), "é", b"\x00", None, [True, {"k": 0.5}]]
            reply = await client.call("values", tuple(sent), timeout=5)
            assert seen[0] == tuple(sent) and [type(v) for v in seen[0]] == [type(v) for v in sent]
            assert list(reply) == sent and [type(v) for v in reply] == [type(v) for v in sent]
            # NaN and infinities reach the handler (going out they are null, as JSON.stringify writes them).
            assert await client.call("values", (math.nan, -math.inf), timeout=5) == (None, None)
            nan, inf = seen[-1]
            assert math.isnan(nan) and inf == -math.inf
            # The typed path validates the same values (pydantic-core reads the argument text Rust wrote).
            assert await client.call("typed", (math.nan, 3.0, b"\x09"), timeout=5) == [3, b"\x09"]
            x, n, b = seen[-1]
            assert math.isnan(x) and (n, type(n), b) == (3, int, b"\x09")
            assert await client.call("move", ({"x": 1, "y": 2.5, "label": "p"}, 1), timeout=5) == {
                "x": 2.0,
                "y": 3.5,
                "label": "p",
            }
        finally:
            await client.disconnect()


def deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def packet(**fields: Any) -> bytes:
    out = msgpack.packb(fields)
    assert isinstance(out, bytes)
    return out


async def test_bad_input_closes_the_session_logged_once_and_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="anysio")
    sio, _ = demo_server(parser="msgpack")
    async with serving(sio) as address, node_sio(address, parser="msgpack") as bystander:
        connect = packet(type=0, nsp="/")
        cases: list[bytes | str] = [
            b"\xc1",  # not msgpack
            b"\x93\x01\x02\x03",  # not a map
            packet(type=2, nsp="/", data=["echo"]) + b"\xc0",  # trailing bytes
            packet(type=5, nsp="/", data=["echo"]),  # no binary packet types here
            packet(type=2, data=["echo"]),  # no namespace
            packet(type=2, nsp="/", data="echo"),  # data not an array
            packet(type=2, nsp="/", data=["disconnect"]),  # a reserved event name
            packet(type=2, nsp="/", data=["echo"], id=1.5),  # an id that is no integer
            packet(type=2, nsp="/nope", data=["echo"]),  # a namespace it did not join
            packet(type=0, nsp="/"),  # CONNECT again while connected
            packet(type=2, nsp="/", data=["echo", deep(200)]),  # nesting past the codec's 128 levels
            '42["echo"]',  # a text packet: not this parser's
        ]
        for n, frame in enumerate(cases):
            ws, _ = await ws_session(address, path="/socket.io/")
            with anyio.fail_after(5):
                await ws.send(connect)
                reply = msgpack.unpackb(await ws.receive())
                assert reply["type"] == 0 and set(reply["data"]) == {"sid"}
                await ws.send(frame)
                assert await ws.expect_close() is None, frame
            await ws.aclose()
            assert await bystander.call("echo", n) == [n]
        lines = anysio_log(caplog, "bad input")
        assert len(lines) == len(cases), lines
        assert sum("malformed packet" in line for line in lines) == len(cases) - 2
        # An event the client answers still works on a fresh session: the codec holds no state between packets.
        ws, _ = await ws_session(address, path="/socket.io/")
        await ws.send(connect)
        await ws.receive()
        await ws.send(packet(type=2, nsp="/", data=["echo", b"\x01", 2**53], id=2**53 + 10))
        ack = msgpack.unpackb(await ws.receive())
        assert ack == {"id": 2**53 + 10, "type": 3, "data": [b"\x01", 2**53], "nsp": "/"}
        await ws.aclose()


async def test_an_emit_msgpack_cannot_hold_raises() -> None:
    sio, rec = demo_server(parser="msgpack")
    async with serving(sio) as address, node_sio(address, parser="msgpack") as client:
        [(_, sid, _)] = await rec.wait("connect")
        with pytest.raises(ValueError, match="msgpack"):
            await sio.sockets[sid].emit("deep", deep(200))
        with pytest.raises(ValueError, match="msgpack"):
            await sio.emit("deep", deep(200))
        assert await client.call("echo", "still here") == ["still here"]


async def test_workers_under_anysio_run(anyio_backend: str) -> None:
    """``anysio run app:sio --workers 2`` with a msgpack Server: clients on both workers (connections handed
    between them on the upgrade), a room broadcast with binary through the workers' bus, acks gathered from every
    worker."""
    async with cluster(2, anyio_backend, app="tests.e2e.apps.msgpack_app:sio") as (url, _), AsyncExitStack() as stack:
        host, port = url.removeprefix("http://").split(":")
        clients: list[NodeSio] = []
        pids: set[int] = set()
        while len(pids) < 2 or len(clients) < 3:
            assert len(clients) < 16, "every client landed on one worker"
            client = await stack.enter_async_context(node_sio((host, int(port)), parser="msgpack"))
            [pid] = await client.call("whoami")
            pids.add(pid)
            clients.append(client)
        payload = ["hi", b"\x00\x01", {"deep": [b"\xff"], "n": 2.5}]
        assert await clients[0].call("bcast", *payload) == [1]
        for client in clients:
            assert await client.receive("bcast") == [payload]
        # (Text only: binary in the replies gathered across workers comes back as str, with either parser.)
        for n, client in enumerate(clients):
            await client.ack_reply("question", n, f"from {n}")
        (replies,) = await clients[-1].call("ask_all")
        assert sorted(map(tuple, replies)) == [(n, f"from {n}") for n in range(len(clients))]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_under_asgi(anyio_backend: str, transports: str) -> None:
    """``anysio.ASGIApp`` behind hypercorn on the test's backend: the same packets through the socket-less core."""
    sio, _ = demo_server(parser="msgpack")
    kw: dict[str, Any] = {"transports": transports, "parser": "msgpack"}
    async with (
        asgi_serving(sio, anyio_backend) as address,
        node_sio(address, **kw) as a,
        node_sio(address, **kw) as b,
    ):
        assert await a.call("echo", b"\x01", {"x": [b"\x02"]}) == [b"\x01", {"x": [b"\x02"]}]
        assert await a.call("add", 1, 2) == [3]
        await a.ack_reply("q", b"\x03")
        assert await a.call("ask", "q", 1) == [b"\x03"]
        await a.call("join", "red")
        await b.emit("shout", "red", "hi")
        assert await a.receive("shout") == [["hi"]]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_connection_state_recovery(transports: str) -> None:
    """A break, events to its room meanwhile (binary among them), and the client gets its socket back with them:
    the offset Node's recovery appends is in the msgpack data as it is in the JSON."""
    sio = Server(parser="msgpack", connection_state_recovery=True)
    gone = Record()

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        if not socket.recovered:
            socket.join("news")

    @sio.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        gone.add("disconnect", reason)

    async with serving(sio) as address, node_sio(address, transports=transports, parser="msgpack") as client:
        old = client.all("connect")[0]["id"]
        await sio.to("news").emit("news", 0)
        await client.receive("news")
        await client.command(cmd="break", reconnect=False)
        await client.expect("disconnect", reason="transport close")
        await gone.wait("disconnect")
        await sio.to("news").emit("news", 1, b"\x00\xff")
        await sio.to(old).emit("direct", {"n": 2})
        await client.command(cmd="connect")
        again = await client.expect("connect")
        assert again["id"] == old and again["recovered"] is True
        got = [(e["name"], from_wire(e["args"])) for e in client.all("recv")]
        assert [(name, args[:-1]) for name, args in got] == [
            ("news", [0]),
            ("news", [1, b"\x00\xff"]),
            ("direct", [{"n": 2}]),
        ]
        assert all(isinstance(args[-1], str) for _, args in got)  # each event's offset, last


def relay_server(cluster: RedisCluster, parser: Literal["default", "msgpack"]) -> Server:
    """A server of a Redis cluster: "to" (room, *args) broadcasts "news" to the room; "ask" gathers the room's
    answers to "question"."""
    sio = Server(parser=parser, adapter=cluster.adapter)

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        socket.join("r")

    @sio.on("to")
    async def to(socket: Socket, room: str, *args: Any) -> bool:
        await sio.to(room).emit("news", *args)
        return True

    @sio.on("ask")
    async def ask(socket: Socket) -> list[Any]:
        return sorted(await sio.to("r").timeout(5).emit_with_ack("question"))

    return sio


async def test_a_redis_cluster_of_a_msgpack_server_and_a_default_one(anyio_backend: str) -> None:
    """Parsers are per server, not per cluster: Redis carries Node's adapter format, and each server encodes what it
    hears for its own clients (binary included)."""
    async with redis_server() as redis:
        a_cluster, b_cluster = RedisCluster(redis.url), RedisCluster(redis.url)
        a, b = relay_server(a_cluster, "msgpack"), relay_server(b_cluster, "default")
        async with (
            a_cluster,
            b_cluster,
            serving(a) as a_address,
            serving(b) as b_address,
            node_sio(a_address, parser="msgpack") as on_a,
            node_sio(b_address) as on_b,
        ):
            payload = [1, b"\x00\xff", {"deep": [b"\x01"]}, "é"]
            assert await on_b.call("to", "r", *payload) == [True]
            assert await on_a.receive("news") == [payload]
            assert await on_a.call("to", "r", *payload[::-1]) == [True]
            assert (await on_b.receive("news", 2))[1] == payload[::-1]
            await on_a.ack_reply("question", "from a")
            await on_b.ack_reply("question", "from b")
            assert await on_a.call("ask") == [["from a", "from b"]]
