"""anysio.Client's namespaces: several over one Engine.IO connection (``client.of``, as socket.io-client's
Manager), each with its own handlers, auth, acks and refusal, against Node's socket.io and anysio."""

from __future__ import annotations

import anyio
import pytest

import anysio
from tests.e2e.client_helpers import node_peer
from tests.e2e.sio_helpers import WAIT, demo_server, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_namespaces_share_one_connection_to_node() -> None:
    async with node_peer() as node:
        client = anysio.Client(node.url, reconnection=False)
        admin = client.of("/admin", auth={"token": "ok"})
        assert client.of("/admin") is admin
        welcomed: list[tuple[str, str]] = []
        for socket in (client, admin):
            socket.on("welcome")(lambda nsp, sid: welcomed.append((nsp, sid)))
        with anyio.fail_after(WAIT):
            async with client, admin:
                assert admin.id and client.id and admin.id != client.id
                first, second = await node.expect("connection", 2)
                assert first["eio"] == second["eio"]  # one Engine.IO session
                assert {first["nsp"], second["nsp"]} == {"/", "/admin"}
                assert await admin.emit_with_ack("echo", "a") == "a"
                assert sorted(welcomed) == sorted([("/", client.id), ("/admin", admin.id)])
                await admin.disconnect()  # "/" stays connected
                await node.expect("disconnect", nsp="/admin", reason="client namespace disconnect")
                assert client.connected and not admin.connected
                assert await client.emit_with_ack("echo", "still") == "still"
            await node.expect("disconnect", nsp="/", reason="client namespace disconnect")


async def test_a_namespace_alone_and_a_refused_one_beside_it(anyio_backend: str) -> None:
    sio, record = demo_server()
    async with serving(sio) as (host, port):
        url = f"http://{host}:{port}"
        admin = anysio.Client(url, namespace="/admin", auth={"token": "secret"}, reconnection=False)
        intruder = admin.of("/admin-2")
        with anyio.fail_after(WAIT):
            async with admin:
                assert await admin.emit_with_ack("whoami") == ["/admin", admin.id]
                with pytest.raises(anysio.ConnectionError, match="Invalid namespace"):
                    await intruder.connect()
                assert admin.connected  # the refusal of another namespace leaves this one alone
                main = admin.of("/")
                await main.connect()
                assert sio.engine_count == 1
                assert await main.emit_with_ack("echo", 1, b"\x01") == (1, b"\x01")
                await main.disconnect()
                assert admin.connected
        (_, _, reason), *_ = await record.wait("disconnect", 2)
        assert reason == "client namespace disconnect"
