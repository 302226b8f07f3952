"""Engine.IO v3 clients (``allow_eio3=True``): npm's socket.io-client 2.x (tests/node/sio_client_v2.mjs), served
as Node's socket.io 4.x serves it with ``allowEIO3``. Every test runs on asyncio and trio."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anysio import ConnectionErrorInfo, Server
from tests.e2e.conftest import EchoServer
from tests.e2e.conftest import serving as serving_eio
from tests.e2e.eio_helpers import HttpConn, WsConn, eio_target
from tests.e2e.sio_helpers import ROOT, Address, Record, demo_server, node_sio, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

SIO_PATH = "/socket.io/"
#: Node's socket.io with allowEIO3, serving what demo_server serves to the comparison.
NODE_SERVER = ROOT / "tests" / "node" / "reference_eio3_server.mjs"


def v3_server(**options: Any) -> tuple[Server, Record]:
    return demo_server(allow_eio3=True, **options)


async def until_websocket(sio: Server, sid: str, client: Any) -> None:
    """Round trips until the socket's session runs on WebSocket (the upgrade is the client's to finish)."""
    with anyio.fail_after(10):
        while sio.runtime.core.transport_of(sio.sockets[sid].client) != "websocket":
            assert await client.call("echo", "wait") == ["wait"]


@pytest.mark.parametrize("transports", [None, "websocket", "polling"])
async def test_connect_events_and_acks_both_ways(transports: str | None) -> None:
    sio, rec = v3_server()
    async with serving(sio) as address, node_sio(address, v2=True, transports=transports) as client:
        [connected] = client.all("connect")
        # In "/" without a CONNECT of its own; the socket's id is the one the client computes: the Engine.IO sid.
        [(nsp, sid, auth)] = await rec.wait("connect")
        assert (nsp, sid, auth) == ("/", connected["id"], {})
        assert sio.sockets[sid].handshake.query["EIO"] == "3"

        assert await client.call("echo", "x", {"n": [1, 2.5, None, True]}) == ["x", {"n": [1, 2.5, None, True]}]
        assert await client.call("add", 2, 3) == [5]
        await client.ack_reply("question", "answer", 42)
        assert await client.call("ask", "question", 1) == ["answer", 42]
        assert client.received("question") == [[1]]
        await sio.emit("news", {"all": True})
        assert await client.receive("news") == [[{"all": True}]]

        if transports is None:
            await until_websocket(sio, sid, client)
            [upgrade] = await client.wait_for(lambda: client.all("upgrade"))
            assert upgrade["transport"] == "websocket"
            assert await client.call("ask", "question", 2) == ["answer", 42]
        expected = "polling" if transports == "polling" else "websocket"
        assert sio.runtime.core.transport_of(sio.sockets[sid].client) == expected


@pytest.mark.parametrize(
    ("transports", "base64"), [(None, False), ("polling", False), ("websocket", False), ("websocket", True)]
)
async def test_binary_both_ways(transports: str | None, base64: bool) -> None:
    sio, _ = v3_server()
    blob = bytes(range(256)) * 40
    nested = {"a": [b"\x00\x01", {"b": blob, "empty": b""}], "c": "t\u20ac\U0001f600"}
    async with (
        serving(sio) as address,
        node_sio(address, v2=True, transports=transports, force_base64=base64) as client,
    ):
        sid = client.all("connect")[0]["id"]
        # Node.js's XHR has no binary responses: 2.x asks for base64 on polling whatever forceBase64 says (browsers
        # take binary payloads, which the Rust tests cover); after an upgrade the WebSocket takes binary frames.
        assert (sio.sockets[sid].handshake.query.get("b64") == "1") is (base64 or transports != "websocket")
        if transports is None:
            await until_websocket(sio, sid, client)
        assert await client.call("echo", b"top", nested) == [b"top", nested]
        assert await client.call("size", blob) == [len(blob)]
        await client.ack_reply("blob", b"back", {"z": [b"\x02", b"\x03"]})
        assert await client.call("ask", "blob", {"x": [b"\xff"]}, b"\x04") == [b"back", {"z": [b"\x02", b"\x03"]}]
        assert client.received("blob") == [[{"x": [b"\xff"]}, b"\x04"]]


async def test_rooms_and_broadcasts_reach_v2_and_v4_clients_alike() -> None:
    sio, _ = v3_server()
    async with (
        serving(sio) as address,
        node_sio(address, v2=True) as old,
        node_sio(address, v2=True, transports="polling") as old_polling,
        node_sio(address) as new,
    ):
        ids = [c.all("connect")[0]["id"] for c in (old, old_polling, new)]
        for client, sid in zip((old, old_polling, new), ids, strict=True):
            assert await client.call("join", "red") == [sorted([sid, "red"])]
        await sio.to("red").emit("news", b"\x01", "n")
        await old.emit("shout", "red", "from old")
        await old.call("echo")
        await sio.emit("marker")
        for client in (old, old_polling, new):
            await client.receive("marker")
            assert client.received("news") == [[b"\x01", "n"]]
        assert (old.received("shout"), old_polling.received("shout"), new.received("shout")) == (
            [],
            [["from old"]],
            [["from old"]],
        )
        assert sorted(s.id for s in await sio.in_("red").fetch_sockets()) == sorted(ids)


async def test_namespaces_with_the_query_as_auth_and_refusals() -> None:
    sio, rec = v3_server()
    async with serving(sio) as address:
        async with node_sio(address, v2=True, nsp="/admin", query={"token": "guess"}, connected=False) as refused:
            # Node sends a v3 client `err.data || err.message`, which 2.x emits as "error".
            assert (await refused.expect("error"))["data"] == {"hint": "token"}
        async with node_sio(address, v2=True, nsp="/nope", connected=False) as unknown:
            assert (await unknown.expect("error"))["data"] == {"message": "Invalid namespace"}
        async with node_sio(address, v2=True, nsp="/admin", query={"token": "secret"}) as admin:
            sid = admin.all("connect")[0]["id"]
            assert sid.startswith("/admin#")
            assert await admin.call("whoami") == [["/admin", sid]]
            connects = await rec.wait("connect", 4)
            assert ("/admin", sid, {"token": "secret"}) in connects
        # Each client was in "/" too, without asking, as Node puts v3 clients.
        assert [nsp for nsp, _, _ in rec.values("connect")].count("/") == 3


async def test_disconnect_reasons_on_both_sides() -> None:
    sio, rec = v3_server()
    async with serving(sio) as address:
        async with node_sio(address, v2=True, reconnection=False) as kicked:
            await kicked.emit("kick")
            assert (await kicked.expect("disconnect"))["reason"] == "io server disconnect"
            [(_, _, reason)] = await rec.wait("disconnect")
            assert reason == "server namespace disconnect"
        async with node_sio(address, v2=True, reconnection=False, transports="websocket") as leaving:
            await leaving.command(cmd="disconnect")
            assert (await leaving.expect("disconnect"))["reason"] == "io client disconnect"
            reasons = [r for _, _, r in await rec.wait("disconnect", 2)]
            assert reasons[1] == "client namespace disconnect"


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_the_client_pings_and_the_server_pongs(transports: str) -> None:
    sio, rec = v3_server(ping_interval=0.1, ping_timeout=1)  # a loaded machine may take 100 ms per round trip
    async with serving(sio) as address:
        async with node_sio(address, v2=True, transports=transports) as client:
            # Each pong answers a ping the client sent every ping_interval; the session outlives several.
            await client.wait_for(lambda: len(client.all("pong")) >= 3)
            assert not client.all("disconnect") and not rec.values("disconnect")
        # A client that does not ping is closed after ping_interval + ping_timeout, as Node closes it.
        conn = await HttpConn.open(address)
        res = await conn.request("GET", eio_target(SIO_PATH, EIO="3"))
        sid = res.text.split('"sid":"')[1].split('"')[0]
        res = await conn.request("GET", eio_target(SIO_PATH, EIO="3", sid=sid))
        assert res.text == "2:40"  # the CONNECT of "/", then nothing until the close packet
        res = await conn.request("GET", eio_target(SIO_PATH, EIO="3", sid=sid))
        assert res.text == "1:1"
        assert ("/", sid, "ping timeout") in await rec.wait("disconnect", 2)
        await conn.aclose()


async def test_v3_is_refused_with_nodes_error_unless_allowed() -> None:
    sio, rec = demo_server()
    errors: list[ConnectionErrorInfo] = []

    @sio.engine.on("connection_error")
    def connection_error(err: ConnectionErrorInfo) -> None:
        errors.append(err)
        rec.add("connection_error")

    async with serving(sio) as address:
        conn = await HttpConn.open(address)
        res = await conn.request("GET", eio_target(SIO_PATH, EIO="3"))
        assert (res.status, res.json()) == (400, {"code": 5, "message": "Unsupported protocol version"})
        await conn.aclose()
        async with node_sio(address, v2=True, reconnection=False, connected=False) as client:
            await client.expect("connect_error")
        await rec.wait("connection_error", 2)
        assert [(e.code, e.context) for e in errors[:2]] == [(5, {"protocol": 3})] * 2
        # v4 clients as ever.
        async with node_sio(address) as new:
            assert await new.call("echo", 1) == [1]
    assert rec.values("connect") == [("/", new.all("connect")[0]["id"], {})]


async def test_bad_v3_input_closes_its_session_once_logged_and_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio, rec = v3_server()
    caplog.set_level(logging.INFO, "anysio")
    async with serving(sio) as address, node_sio(address, v2=True, transports="polling") as bystander:
        bodies: list[tuple[str, bytes]] = [
            ("text/plain;charset=UTF-8", b"5:4hi"),  # the length is not what follows
            ("text/plain;charset=UTF-8", b"x:40"),  # not a length
            ("application/octet-stream", b"\x01\x02\xff\x02\x00"),  # a binary packet that is no message
            ("application/octet-stream", b"\x00\x09\xff40"),  # shorter than its length
        ]
        for n, (content_type, body) in enumerate(bodies):
            conn = await HttpConn.open(address)
            res = await conn.request("GET", eio_target(SIO_PATH, EIO="3"))
            sid = res.text.split('"sid":"')[1].split('"')[0]
            await rec.wait("connect", n + 2)
            caplog.clear()
            target = eio_target(SIO_PATH, EIO="3", sid=sid)
            res = await conn.request("POST", target, headers=[("Content-Type", content_type)], body=body)
            assert res.status == 200
            [(_, gone, reason)] = (await rec.wait("disconnect", n + 1))[n:]
            assert (gone, reason) == (sid, "parse error")
            bad = [r.getMessage() for r in caplog.records if "bad input" in r.getMessage()]
            assert len(bad) == 1, bad
            # The session is gone: Node's "Session ID unknown".
            res = await conn.request("GET", target)
            assert res.json()["code"] == 1
            await conn.aclose()
            assert await bystander.call("echo", n) == [n]
        # On WebSocket: a binary frame whose type byte is not a message's.
        ws, _ = await WsConn.connect(address, eio_target(SIO_PATH, EIO="3", transport="websocket"))
        assert str(await ws.receive()).startswith("0{")
        await rec.wait("connect", len(bodies) + 2)
        caplog.clear()
        await ws.send(b"\x02\x01")
        assert await ws.expect_close() is None
        assert (await rec.wait("disconnect", len(bodies) + 1))[-1][2] == "parse error"
        assert len([r for r in caplog.records if "bad input" in r.getMessage()]) == 1
        await ws.aclose()
        assert await bystander.call("echo", "after") == ["after"]


async def test_the_engineio_server_speaks_v3_too() -> None:
    async with serving_eio(EchoServer(allow_eio3=True)) as server:
        conn = await HttpConn.open(server.address)
        res = await conn.request("GET", eio_target(EIO="3"))
        length, packet = res.text.split(":", 1)  # the open packet in a v3 payload
        assert int(length) == len(packet) and packet.startswith("0{"), res.text
        target = eio_target(EIO="3", sid=server.opened[0].sid)
        text = [("Content-Type", "text/plain;charset=UTF-8")]
        assert (await conn.request("POST", target, headers=text, body="2:4\u20ac")).body == b"ok"
        assert (await conn.request("GET", target)).text == "2:4\u20ac"
        binary = [("Content-Type", "application/octet-stream")]
        assert (await conn.request("POST", target, headers=binary, body=b"\x01\x03\xff\x04\x01\x02")).body == b"ok"
        res = await conn.request("GET", target)
        assert (res.header("content-type"), res.body) == ("application/octet-stream", b"\x01\x03\xff\x04\x01\x02")
        assert server.messages == [(server.opened[0].sid, "\u20ac"), (server.opened[0].sid, b"\x01\x02")]
        await conn.aclose()


@asynccontextmanager
async def node_server() -> AsyncIterator[Address]:
    async with await anyio.open_process(["node", str(NODE_SERVER)]) as process:
        assert process.stdout is not None
        with anyio.fail_after(10):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive()
        try:
            yield ("127.0.0.1", json.loads(line)["port"])
        finally:
            process.terminate()
            await process.wait()


async def what_the_client_sees(address: Address, nsp: str, query: dict[str, str] | None) -> list[Any]:
    """socket.io-client 2.x's events for one connection, ids written as the client computes them from the sid."""
    async with node_sio(address, v2=True, nsp=nsp, query=query, reconnection=False, connected=False) as client:
        first = await client.wait_for(lambda: next((e for e in client.events if e["event"] != "upgrade"), None))
        if first["event"] != "connect":
            return [first]
        sid = first["id"].rpartition("#")[2]
        assert first["id"] == (sid if nsp == "/" else f"{nsp}#{sid}")
        echoed = await client.call("echo" if nsp == "/" else "whoami", *([1, b"\x01"] if nsp == "/" else []))
        return ["connect", json.loads(json.dumps(echoed, default=repr).replace(sid, "<sid>"))]


async def test_socket_io_client_2_sees_what_nodes_server_shows_it() -> None:
    sio, _ = v3_server()
    cases = [("/", None), ("/admin", {"token": "guess"}), ("/nope", None), ("/admin", {"token": "secret"})]
    async with serving(sio) as ours, node_server() as nodes:
        for nsp, query in cases:
            seen = await what_the_client_sees(ours, nsp, query)
            assert seen == await what_the_client_sees(nodes, nsp, query), (nsp, query)
