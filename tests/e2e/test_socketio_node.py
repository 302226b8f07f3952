"""anysio's Socket.IO server with the official client: npm's socket.io-client, run by Node
(tests/node/sio_client.mjs; dependencies from scripts/setup-node-deps.sh). Every test runs on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from anysio import AckTimeout, Server, Socket
from tests.e2e.eio_helpers import WsClosed, WsConn, ws_session
from tests.e2e.sio_helpers import RunningServer, demo_server, node_sio, serving, silent_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def until_upgraded(sio: Server, sid: str, client: Any) -> None:
    """Round trips until the socket's session runs on WebSocket (the upgrade is the client's to finish)."""
    socket = sio.sockets[sid]
    with anyio.fail_after(10):
        while sio.runtime.core.transport_of(socket.client) != "websocket":
            assert await client.call("echo", "wait") == ["wait"]


@pytest.mark.parametrize("transports", [None, "websocket", "polling"])
async def test_connect_emit_and_ack_both_ways(transports: str | None) -> None:
    sio, rec = demo_server()
    async with serving(sio) as address, node_sio(address, transports=transports, auth={"token": "abc"}) as client:
        [connected] = client.all("connect")
        # By default the upgrade may finish before or after the namespace's CONNECT.
        assert connected["transport"] == transports or transports is None
        [(nsp, sid, auth)] = await rec.wait("connect")
        assert (nsp, sid, auth) == ("/", connected["id"], {"token": "abc"})

        assert await client.call("echo", "x", {"n": [1, 2.5, None, True]}) == ["x", {"n": [1, 2.5, None, True]}]
        assert await client.call("echo") == []
        # The server asks the client (emit_with_ack) and acks the client's answer back.
        await client.ack_reply("question", "answer", 42)
        assert await client.call("ask", "question", 1) == ["answer", 42]
        assert client.received("question") == [[1]]
        assert client.all("recv")[0]["ack"] is True

        if transports is None:
            await until_upgraded(sio, sid, client)
            assert await client.call("ask", "question", 2) == ["answer", 42]
        expected = "polling" if transports == "polling" else "websocket"
        assert sio.runtime.core.transport_of(sio.sockets[sid].client) == expected


@pytest.mark.parametrize("transports", [None, "polling"])
async def test_binary_both_ways_nested(transports: str | None) -> None:
    sio, _ = demo_server()
    blob = bytes(range(256)) * 40
    nested = {"a": [b"\x00\x01", {"b": blob, "empty": b""}], "c": "text"}
    async with serving(sio) as address, node_sio(address, transports=transports) as client:
        assert await client.call("echo", b"top", nested) == [b"top", nested]
        assert await client.call("size", blob) == [len(blob)]
        await client.ack_reply("blob", b"back", {"z": [b"\x02", b"\x03"]})
        assert await client.call("ask", "blob", {"x": [b"\xff"]}, b"\x04") == [b"back", {"z": [b"\x02", b"\x03"]}]
        assert client.received("blob") == [[{"x": [b"\xff"]}, b"\x04"]]


async def test_namespaces_and_refusal_by_middleware_with_data() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address:
        async with node_sio(address, nsp="/admin", auth={"token": "guess"}, connected=False) as refused:
            err = await refused.expect("connect_error")
            assert (err["message"], err["data"]) == ("unauthorized", {"hint": "token"})
        async with node_sio(address, nsp="/nope", connected=False) as unknown:
            err = await unknown.expect("connect_error")
            assert (err["message"], err["data"]) == ("Invalid namespace", None)
        async with node_sio(address, nsp="/admin", auth={"token": "secret"}) as admin:
            [connected] = admin.all("connect")
            assert await admin.call("whoami") == [["/admin", connected["id"]]]
            assert sio.of("/admin").count == 1 and sio.count == 0
        assert [nsp for nsp, _, _ in rec.values("connect")] == ["/admin"]


async def test_rooms_and_broadcasts_with_except() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address, node_sio(address) as a, node_sio(address) as b, node_sio(address) as c:
        ids = {name: cl.all("connect")[0]["id"] for name, cl in (("a", a), ("b", b), ("c", c))}
        assert await a.call("join", "red") == [sorted([ids["a"], "red"])]
        assert await b.call("join", "red") == [sorted([ids["b"], "red"])]
        assert await c.call("join", "blue") == [sorted([ids["c"], "blue"])]

        await sio.to("red").emit("news", 1)
        await sio.to("red").except_(ids["a"]).emit("news", 2)
        await sio.except_("blue").emit("news", 3)
        await sio.to(["red", "blue"]).except_("red").emit("news", 4)
        await b.emit("shout", "red", "from b")  # socket.to(room): the room but not the sender
        await b.call("echo")  # the shout has gone out once b's later ack is back
        await sio.emit("marker")
        for client in (a, b, c):
            await client.receive("marker")
        # Packets to one client keep their order, so the marker proves what did not arrive before it.
        assert a.received("news") == [[1], [3]]
        assert b.received("news") == [[1], [2], [3]]
        assert c.received("news") == [[4]]
        assert (a.received("shout"), b.received("shout"), c.received("shout")) == ([["from b"]], [], [])

        assert sorted(s.id for s in await sio.in_("red").fetch_sockets()) == sorted([ids["a"], ids["b"]])
        await a.ack_reply("poll", "a says")
        await b.ack_reply("poll", "b says")
        replies = await sio.to("red").timeout(5).emit_with_ack("poll")
        assert sorted(replies) == ["a says", "b says"]

        await sio.in_("blue").sockets_join("green")
        await sio.to("green").disconnect_sockets()
        assert (await c.expect("disconnect"))["reason"] == "io server disconnect"
        reasons = await rec.wait("disconnect")
        assert reasons == [("/", ids["c"], "server namespace disconnect")]
        assert sorted(s.id for s in await sio.fetch_sockets()) == sorted([ids["a"], ids["b"]])


async def test_emit_with_ack_timeouts() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address, node_sio(address) as client:
        ws, silent_id = await silent_client(address)
        with anyio.fail_after(5):
            while silent_id not in sio.sockets:
                await client.call("echo")
        with pytest.raises(AckTimeout):
            await sio.sockets[silent_id].emit_with_ack("question", timeout=0.2)
        assert await ws.receive() == '420["question"]'

        await client.ack_reply("question", "here")
        with pytest.raises(AckTimeout) as caught:
            await sio.timeout(0.3).emit_with_ack("question")
        assert caught.value.replies == ["here"]

        # The client's own timeout, for a handler that never acks.
        ack_id = await client.emit("hold", ack=True, timeout=200)
        await client.expect("ack_timeout", id=ack_id)
        assert len(rec.values("hold")) == 1
        await ws.aclose()


async def test_disconnect_reasons_on_both_sides() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address:
        async with node_sio(address, reconnection=False) as kicked:
            await kicked.emit("kick")
            assert (await kicked.expect("disconnect"))["reason"] == "io server disconnect"
            [(_, _, reason)] = await rec.wait("disconnect")
            assert reason == "server namespace disconnect"
        async with node_sio(address, reconnection=False) as leaving:
            await leaving.command(cmd="disconnect")
            assert (await leaving.expect("disconnect"))["reason"] == "io client disconnect"
            reasons = [r for _, _, r in await rec.wait("disconnect", 2)]
            assert reasons[1] == "client namespace disconnect"
        # Over WebSocket: on polling the engine answers the DISCONNECT and the close packet in one payload, and
        # the client's close handling wins the race ("transport close"); Node sends the close packet on the
        # next GET.
        async with node_sio(address, reconnection=False, transports="websocket") as closed:
            sid = closed.all("connect")[0]["id"]
            await sio.sockets[sid].disconnect(close=True)
            assert (await closed.expect("disconnect"))["reason"] == "io server disconnect"
            reasons = [r for _, _, r in await rec.wait("disconnect", 3)]
            assert reasons[2] == "server namespace disconnect"


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_shutdown_then_restart_on_the_same_port_reconnects(transports: str) -> None:
    first, first_rec = demo_server()
    async with anyio.create_task_group() as tg:
        server = await RunningServer.start(tg, first)
        port = server.address[1]
        async with node_sio(server.address, transports=transports) as client:
            old_id = client.all("connect")[0]["id"]
            await server.stop()
            reason = (await client.expect("disconnect"))["reason"]
            # A WebSocket gets the close packet; a polling client between two GETs may find the server gone.
            assert reason == "transport close" or (transports == "polling" and reason == "transport error")
            assert first_rec.values("disconnect") == [("/", old_id, "server shutting down")]

            second, second_rec = demo_server()
            server = await RunningServer.start(tg, second, port)
            reconnected = await client.expect("connect", timeout=15)
            assert reconnected["id"] != old_id
            [(_, sid, _)] = await second_rec.wait("connect")
            assert sid == reconnected["id"]
            assert await client.call("echo", "again") == ["again"]
        await server.stop()


async def test_bad_input_is_answered_as_node_does_and_spares_the_others() -> None:
    sio, _ = demo_server()
    async with serving(sio) as address, node_sio(address) as bystander:

        async def still_served(n: int) -> None:
            assert await bystander.call("echo", n) == [n]

        async def closed_by_server(ws: WsConn) -> None:
            assert await ws.expect_close() is None  # Node closes these without a status code

        cases: list[tuple[list[str | bytes], str | None]] = [
            (["42["], None),  # malformed JSON
            (['42{"a":1}'], None),  # not an array
            (["49"], None),  # unknown packet type
            (['42/nope,["echo"]'], None),  # a namespace it did not join
            (['451-["echo",{"_placeholder":true,"num":0}]', '42["x"]'], None),  # text where an attachment was due
            (['451-["echo",{"_placeholder":true,"num":3}]', b"\x01"], None),  # placeholder names no attachment
            (['450-["echo"]'], None),  # zero attachments
            (['4511-["echo"]'], None),  # over the limit of 10
            ([b"\x01\x02"], None),  # an attachment without a header
            (["40"], None),  # CONNECT again while connected
            (['421["add","x",2]'], '431[{"error":"invalid argument \'a\': '),  # wrong argument type: error in the ack
            (['421234567890123456789012345["echo","x"]'], '431.2345678901234568e+24["x"]'),  # absurd ack id
            (['429007199254740992["echo","x"]'], '439007199254740992["x"]'),
            (['42["echo","no ack asked"]', "42"], None),  # an EVENT without data is ignored; nothing comes back
            (["40/nope,"], '44/nope,{"message":"Invalid namespace"}'),  # unknown namespace: the session stays
            # What JSON.parse accepts is accepted: a lone surrogate (it goes back escaped, as JSON.stringify does)
            (['421["echo","a\\ud800"]'], '431["a\\ud800"]'),
            # and nesting deeper than serde_json's default limit of 128.
            (['421["echo",' + "[" * 200 + "]" * 200 + "]"], "431[" + "[" * 200 + "]" * 200 + "]"),
        ]
        for n, (frames, reply) in enumerate(cases):
            ws, _ = await silent_client(address)
            with anyio.fail_after(5):
                for frame in frames:
                    await ws.send(frame)
                if frames[-1] == "42":
                    await ws.send('421["echo","after"]')
                    assert await ws.receive() == '431["after"]', frames
                elif reply is None:
                    await closed_by_server(ws)
                else:
                    got = await ws.receive()
                    assert isinstance(got, str) and got.startswith(reply), (frames, got)
                    await ws.send('421["echo","alive"]')
                    assert await ws.receive() == '431["alive"]', frames
            await ws.aclose()
            await still_served(n)

        # Before any CONNECT, an EVENT closes the session too.
        ws, _ = await ws_session(address, path="/socket.io/")
        await ws.send('42["echo"]')
        with anyio.fail_after(5):
            await closed_by_server(ws)
        await still_served(-1)
        with pytest.raises(WsClosed):
            await ws.receive()


async def test_handler_argument_of_the_wrong_type_is_answered_in_the_ack() -> None:
    sio, _ = demo_server()
    async with serving(sio) as address, node_sio(address) as client:
        [error] = await client.call("add", "three", 4)
        assert set(error) == {"error", "errors"} and "'a'" in error["error"]
        assert [(e["loc"], e["type"]) for e in error["errors"]] == [(["a"], "int_parsing")]
        assert await client.call("add", "3", 4) == [7]
        [error] = await client.call("size", "text, not bytes")
        assert "'data'" in error["error"]
        # Without an ack the client is told with an "error" event.
        await client.emit("add", 1)
        [[body]] = await client.receive("error")
        assert body == {
            "event": "add",
            "error": "missing argument 'b'",
            "errors": [{"loc": ["b"], "msg": "Field required", "type": "missing"}],
        }


async def test_socket_id_and_rooms_are_per_namespace() -> None:
    sio, rec = demo_server()
    seen: list[tuple[str, set[str]]] = []

    @sio.of("/admin").on("rooms")
    def rooms(socket: Socket) -> int:
        seen.append((socket.id, socket.rooms))
        return len(seen)

    async with serving(sio) as address:
        async with node_sio(address) as main, node_sio(address, nsp="/admin", auth={"token": "secret"}) as admin:
            assert await admin.call("rooms") == [1]
            main_id, admin_id = main.all("connect")[0]["id"], admin.all("connect")[0]["id"]
            assert main_id != admin_id
            assert seen == [(admin_id, {admin_id})]
            assert sio.sockets.keys() == {main_id} and sio.of("/admin").sockets.keys() == {admin_id}
        await rec.wait("disconnect", 2)
