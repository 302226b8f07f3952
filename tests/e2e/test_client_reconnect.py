"""anysio.Client's reconnection (backoff and jitter as socket.io-client's Manager) after a server restart, giving
up after its attempts, and connection state recovery, against Node's socket.io and anysio, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import anysio
from tests.e2e.client_helpers import node_peer, proxy
from tests.e2e.sio_helpers import WAIT, Record, RunningServer, demo_server, serving
from tests.e2e.test_examples import load_example

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def fast(url: str, **options: Any) -> anysio.Client:
    """A client that reconnects within a tenth of a second."""
    return anysio.Client(url, reconnection_delay=0.05, reconnection_delay_max=0.1, **options)


def recorded(client: anysio.Client) -> Record:
    """What the client's reserved events said: ("connect", id), ("disconnect", reason), ("connect_error", msg)."""
    record = Record()
    client.on("connect")(lambda: record.add("connect", client.id))
    client.on("disconnect")(lambda reason: record.add("disconnect", reason))
    client.on("connect_error")(lambda e: record.add("connect_error", str(e)))
    return record


async def test_it_reconnects_after_nodes_server_restarts() -> None:
    async with node_peer() as first:
        port = first.port
        client = fast(first.url)
        record = recorded(client)
        await client.connect()
        first_id = client.id
        await first.expect("upgrade")  # on WebSocket, the end of the connection is "transport close"
    with anyio.fail_after(WAIT):
        assert await record.wait("disconnect") == ["transport close"]
        async with node_peer(port=port):
            ids = await record.wait("connect", 2)
            assert ids[1] != first_id and client.connected
            assert await client.emit_with_ack("echo", "back") == "back"
            await client.disconnect()
    assert record.values("disconnect") == ["transport close", "io client disconnect"]


async def test_it_reconnects_after_anysios_server_restarts() -> None:
    sio, _ = demo_server()
    async with anyio.create_task_group() as tg:
        server = await RunningServer.start(tg, sio)
        port = server.address[1]
        client = fast(f"http://127.0.0.1:{port}", transports=["websocket"])
        record = recorded(client)
        with anyio.fail_after(WAIT):
            await client.connect()
            await server.stop()
            assert await record.wait("disconnect") == ["transport close"]
            await RunningServer.start(tg, demo_server()[0], port)
            await record.wait("connect", 2)
            assert await client.emit_with_ack("add", 2, 3) == 5
            await client.disconnect()
        tg.cancel_scope.cancel()


async def test_a_silent_server_is_a_ping_timeout_then_a_reconnection(anyio_backend: str) -> None:
    sio, _ = demo_server(ping_interval=1.0, ping_timeout=1.0)  # room for a loaded machine
    async with serving(sio) as (_, port), proxy(port) as link:
        client = fast(link.url)
        record = recorded(client)
        with anyio.fail_after(WAIT):
            async with client:
                link.freeze()  # no more pings reach the client: it gives up after ping_interval + ping_timeout
                assert (await record.wait("disconnect"))[0] == "ping timeout"
                await record.wait("connect", 2)
                assert await client.emit_with_ack("add", 1, 1) == 2


async def test_reconnection_gives_up_after_its_attempts() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    client = fast(f"http://127.0.0.1:{port}", reconnection_attempts=2)
    record = recorded(client)
    with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError, match="cannot connect"):
        await client.connect()
    assert len(record.values("connect_error")) == 3  # the first attempt, then two reconnection attempts


async def test_a_cancelled_connect_stops_trying(anyio_backend: str) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    client = fast(f"http://127.0.0.1:{port}")  # reconnection without end, as the official client's default
    record = recorded(client)
    with anyio.move_on_after(0.5) as waited:
        await client.connect()
    assert waited.cancelled_caught and len(record.values("connect_error")) >= 2  # it was retrying
    with anyio.fail_after(WAIT):
        await client.wait()  # and it stopped: the Manager's task ended
    assert not client.wanted and not client.connected


async def test_a_connection_dropped_by_node_is_recovered() -> None:
    async with node_peer("--recovery") as node:
        client = anysio.Client(node.url, reconnection_delay=0.3, reconnection_delay_max=0.3)
        record = recorded(client)
        client.on("missed")(lambda text, offset: record.add("missed", text))
        client.on("welcome")(lambda nsp, sid, offset: record.add("welcome", sid))
        with anyio.fail_after(WAIT):
            async with client:
                first_id = client.id
                await record.wait("welcome")  # an event with an offset: what the client will ask to resume from
                assert not client.recovered
                await client.emit("drop")  # Node closes the transport, then emits "missed" while it is away
                assert await record.wait("disconnect") == ["transport close"]
                await record.wait("connect", 2)
                assert client.recovered and client.id == first_id
                assert await record.wait("missed") == ["while away"]
        [again] = (await node.expect("connection", 2))[1:]
        assert again["recovered"] is True


async def test_a_broken_connection_to_anysio_is_recovered_with_what_it_missed() -> None:
    example = load_example("examples/recovery/server.py")
    sio: anysio.Server = example.build()
    gone = Record()
    sio.on("disconnect")(lambda socket, reason: gone.add("disconnect", reason))
    async with serving(sio) as (_, port), proxy(port) as link:
        ann = anysio.Client(link.url, auth={"name": "ann", "room": "news"}, reconnection_delay=0.3)
        record = recorded(ann)
        ann.on("hello")(lambda body, offset: record.add("hello", body))
        ann.on("news")(lambda *args: record.add("news", args[:-1]))  # the last argument is the offset
        with anyio.fail_after(WAIT):
            async with ann, anysio.Client(f"http://127.0.0.1:{port}") as bob:
                [hello] = await record.wait("hello")
                assert hello["recovered"] is False
                await link.cut()
                assert await record.wait("disconnect") == ["transport close"]
                assert await gone.wait("disconnect") == ["transport close"]
                news: list[Any] = [[1, b"\x00\xff"], ["two"]]
                for args in news:
                    assert await bob.emit_with_ack("send", {"room": "news", "event": "news", "args": args})
                hellos = await record.wait("hello", 2)
                assert hellos[1] == {"id": ann.id, "recovered": True, "middleware_runs": 1}
                assert ann.recovered
                assert record.values("news") == [tuple(a) for a in news]
