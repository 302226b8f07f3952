"""The official client: npm's engine.io-client, run by Node (tests/node/eio_client.mjs; its dependencies are
installed by scripts/setup-node-deps.sh)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.e2e.conftest import EchoServer, serving

pytestmark = pytest.mark.anyio
CLIENT = Path(__file__).resolve().parent.parent / "node" / "eio_client.mjs"


class NodeClient:
    """One eio_client.mjs process: JSON-line events out, JSON-line commands in."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None and process.stdin is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.events: list[dict[str, Any]] = []

    async def next_event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await self.stdout.receive_until(b"\n", 1 << 20))
        self.events.append(event)
        return event

    async def expect(self, name: str) -> dict[str, Any]:
        """The next event called ``name``; errors on the way fail the test."""
        while (event := await self.next_event())["event"] != name:
            assert event["event"] not in ("error", "upgrade_error", "bad_command", "close"), event
        return event

    async def command(self, **cmd: Any) -> None:
        await self.stdin.send(json.dumps(cmd).encode() + b"\n")

    async def echo(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.command(cmd="send", binary=data.hex())
            expected: Any = {"binary": data.hex()}
        else:
            await self.command(cmd="send", data=data)
            expected = data
        assert (await self.expect("message"))["data"] == expected


@asynccontextmanager
async def node_client(address: tuple[str, int], *options: str) -> AsyncIterator[NodeClient]:
    url = f"http://{address[0]}:{address[1]}"
    async with await anyio.open_process(["node", str(CLIENT), url, *options]) as process:
        client = NodeClient(process)
        try:
            yield client
        finally:
            with anyio.move_on_after(5, shield=True):
                await client.command(cmd="exit")
                await process.wait()
            if process.returncode is None:
                process.kill()


async def test_default_options_poll_then_upgrade() -> None:
    async with serving(EchoServer()) as srv, node_client(srv.address) as client:
        with anyio.fail_after(10):
            opened = await client.expect("open")
            assert opened["transport"] == "polling"
            assert (await client.expect("upgrade"))["transport"] == "websocket"
            await client.echo("hello")
            await client.echo(b"\x00\x01\xfe\xff")
            await client.echo("€" * 1000)
            await srv.wait_for(lambda: srv.opened and srv.opened[0].transport == "websocket")
            assert srv.messages == [
                (opened["sid"], "hello"),
                (opened["sid"], b"\x00\x01\xfe\xff"),
                (opened["sid"], "€" * 1000),
            ]
            await client.command(cmd="close")
            assert (await client.expect("close"))["reason"] == "forced close"
            assert await srv.closed_reason(opened["sid"]) == "transport close"


async def test_messages_sent_while_polling_survive_the_upgrade() -> None:
    async with serving(EchoServer()) as srv, node_client(srv.address) as client:
        with anyio.fail_after(10):
            await client.expect("open")
            # Sent at once, before the upgrade completes: on polling, or queued for the WebSocket.
            for i in range(20):
                await client.command(cmd="send", data=f"m{i}")
            got = [(await client.expect("message"))["data"] for _ in range(20)]
            assert got == [f"m{i}" for i in range(20)]
            if not any(e["event"] == "upgrade" for e in client.events):
                await client.expect("upgrade")
            assert srv.closed == []


async def test_websocket_only() -> None:
    async with serving(EchoServer()) as srv, node_client(srv.address, "--transports", "websocket") as client:
        with anyio.fail_after(10):
            opened = await client.expect("open")
            assert opened["transport"] == "websocket"
            await client.echo("hello")
            await client.echo(b"\x01\x02\x03")
            srv.eio.close(opened["sid"])
            assert (await client.expect("close"))["reason"] == "transport close"


async def test_polling_only() -> None:
    async with serving(EchoServer()) as srv, node_client(srv.address, "--transports", "polling") as client:
        with anyio.fail_after(10):
            opened = await client.expect("open")
            assert opened["transport"] == "polling"
            await client.echo("hello")
            await client.echo(b"\x01\x02\x03")
            await client.echo(b"")
            srv.eio.close(opened["sid"])
            assert (await client.expect("close"))["reason"] == "transport close"
            assert not any(e["event"] == "upgrade" for e in client.events)


async def test_heartbeat_with_the_official_client() -> None:
    async with serving(EchoServer(ping_interval=0.05, ping_timeout=0.5)) as srv, node_client(srv.address) as client:
        with anyio.fail_after(10):
            opened = await client.expect("open")
            await client.expect("upgrade")
            # Ten heartbeats pass (one unanswered ping would be enough to time the client out).
            for _ in range(10):
                await client.expect("ping")
            await client.echo("still here")
            assert srv.closed == []
            assert srv.opened[0].sid == opened["sid"]
