"""The core scenarios again with python-socketio's AsyncClient. That client is asyncio-only, so these tests run
on asyncio alone, with the anysio server in the same event loop."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import socketio

from tests.e2e.sio_helpers import Record, demo_server, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
WAIT = 10
# python-socketio's disconnect() queues DISCONNECT packets for its writer task and closes the transport at once;
# whether they get out first is the client's race, so the server may see either.
CLIENT_LEFT = ("client namespace disconnect", "transport close")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def url(address: tuple[str, int]) -> str:
    return f"http://{address[0]}:{address[1]}"


def client_with_record() -> tuple[socketio.AsyncClient, Record]:
    client = socketio.AsyncClient(reconnection=False)
    seen = Record()

    async def anything(event: str, *args: Any) -> Any:
        seen.add(event, args)
        return ("answer", 42) if event == "question" else None

    async def disconnect(reason: str = "") -> None:
        seen.add("disconnect", reason)

    async def connect_error(namespace: str, data: Any) -> None:
        seen.add("connect_error", (namespace, data))

    # Registered by call: python-socketio's decorators are untyped.
    client.on("*", anything)
    client.on("disconnect", disconnect)
    client.on("connect_error", connect_error, namespace="*")
    return client, seen


@pytest.mark.parametrize("transports", [None, ["websocket"], ["polling"]])
async def test_connect_emit_ack_and_binary(transports: list[str] | None) -> None:
    sio, rec = demo_server()
    async with serving(sio) as address:
        client, seen = client_with_record()
        await client.connect(url(address), auth={"token": "abc"}, transports=transports, wait_timeout=WAIT)
        [(nsp, sid, auth)] = await rec.wait("connect")
        assert (nsp, sid, auth) == ("/", client.get_sid(), {"token": "abc"})

        assert await client.call("echo", ("x", {"n": [1, 2]}), timeout=WAIT) == ("x", {"n": [1, 2]})
        assert await client.call("add", ("3", 4), timeout=WAIT) == 7
        nested = {"a": [b"\x00\x01", {"b": bytes(range(256)) * 10}]}
        assert await client.call("echo", (b"top", nested), timeout=WAIT) == (b"top", nested)
        # The server asks the client back (the handler's return value is the client's ack).
        assert await client.call("ask", ("question", {"x": [b"\xff"]}), timeout=WAIT) == ("answer", 42)
        assert seen.values("question") == [({"x": [b"\xff"]},)]

        [error] = [await client.call("add", ("three", 4), timeout=WAIT)]
        assert "'a'" in error["error"]
        await client.disconnect()
        [(_, _, reason)] = await rec.wait("disconnect")
        assert reason in CLIENT_LEFT


async def test_namespaces_and_refusal_with_data() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address:
        client, seen = client_with_record()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                url(address),
                namespaces=["/admin"],
                auth={"token": "guess"},
                transports=["websocket"],
                wait_timeout=WAIT,
            )
        [(namespace, data)] = await seen.wait("connect_error")
        assert (namespace, data) == ("/admin", {"message": "unauthorized", "data": {"hint": "token"}})
        await client.disconnect()

        client, seen = client_with_record()
        await client.connect(url(address), namespaces=["/", "/admin"], auth={"token": "secret"}, wait_timeout=WAIT)
        assert await client.call("whoami", namespace="/admin", timeout=WAIT) == ["/admin", client.get_sid("/admin")]
        assert client.get_sid("/") != client.get_sid("/admin")
        assert {nsp for nsp, _, _ in await rec.wait("connect", 2)} == {"/", "/admin"}
        await client.disconnect()
        assert {nsp for nsp, _, r in await rec.wait("disconnect", 2) if r in CLIENT_LEFT} == {"/", "/admin"}


async def test_rooms_broadcasts_and_server_disconnect() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address:
        clients = []
        for _ in range(3):
            client, seen = client_with_record()
            await client.connect(url(address), transports=["websocket"], wait_timeout=WAIT)
            clients.append((client, seen))
        (a, seen_a), (b, seen_b), (c, seen_c) = clients
        await a.call("join", "red", timeout=WAIT)
        await b.call("join", "red", timeout=WAIT)
        await sio.to("red").except_(a.get_sid()).emit("news", 1)
        await b.emit("shout", ("red", "hi"))
        await b.call("echo", timeout=WAIT)
        await sio.emit("marker")
        for seen in (seen_a, seen_b, seen_c):
            await seen.wait("marker")
        assert (seen_a.values("news"), seen_b.values("news"), seen_c.values("news")) == ([], [(1,)], [])
        assert (seen_a.values("shout"), seen_b.values("shout")) == ([("hi",)], [])

        # Acks gathered from a room, then the server disconnecting a socket.
        replies = await sio.to("red").timeout(5).emit_with_ack("question")
        assert replies == [("answer", 42), ("answer", 42)]
        c_sid = c.get_sid()
        await c.emit("kick")
        assert await seen_c.wait("disconnect") == [socketio.AsyncClient.reason.SERVER_DISCONNECT]
        assert await rec.wait("disconnect") == [("/", c_sid, "server namespace disconnect")]
        for client, _ in clients[:2]:
            await client.disconnect()


async def test_shutdown_is_seen_by_the_client() -> None:
    sio, rec = demo_server()
    client, seen = client_with_record()
    async with serving(sio) as address:
        await client.connect(url(address), transports=["websocket"], wait_timeout=WAIT)
        assert await client.call("echo", 1, timeout=WAIT) == 1
    with anyio.fail_after(WAIT):
        await seen.wait("disconnect")
    assert [r for _, _, r in rec.values("disconnect")] == ["server shutting down"]
    await client.disconnect()
