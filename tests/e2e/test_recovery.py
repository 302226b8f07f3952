"""Connection state recovery (issue 12) with the official socket.io-client, on the recovery contract
(examples/recovery/server.py): a transport break on WebSocket, long-polling and upgraded connections; events sent
meanwhile to a room and to the socket alone arrive once, in order; a second break recovers again; past the
deadline, or for an unknown pid, it is a new connection; middlewares are skipped unless configured otherwise.

The server is served in-process on the test's backend, with a disconnect handler added so that each test knows
when the server noticed the break before it sends events "meanwhile"; the client's ``break`` command closes the
engine's transport (as a network break does) and, with ``reconnect: false``, reconnects on ``connect``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from anysio import Server, Socket
from anysio.adapters.bus import BusAdapter, attach
from anysio.ipc import Bus

from .sio_helpers import NodeSio, Record, asgi_serving, from_wire, node_sio, serving
from .test_examples import ROOT, load_example

pytestmark = pytest.mark.anyio
EXAMPLE = load_example("examples/recovery/server.py")
ANN = {"name": "ann", "room": "news"}


def without_offset(args: list[Any]) -> list[Any]:
    """An event's arguments without the offset the server appended to them (Node's format: the last argument)."""
    assert args and isinstance(args[-1], str), args
    return args[:-1]


def recvs(client: NodeSio, start: int) -> list[tuple[str, list[Any]]]:
    """The events the client received from its ``start``-th on, offsets taken off."""
    got = client.all("recv")[start:]
    return [(e["name"], without_offset(from_wire(e["args"]))) for e in got]


@asynccontextmanager
async def contract(**options: Any) -> AsyncIterator[tuple[Server, tuple[str, int], Record]]:
    sio: Server = EXAMPLE.build(**options)
    gone = Record()

    @sio.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        gone.add("disconnect", (socket.id, reason))

    async with serving(sio) as address:
        yield sio, address, gone


async def hello(client: NodeSio, n: int) -> dict[str, Any]:
    """The ``n``-th hello (1-based) the client got, its offset checked and taken off."""
    (body,) = without_offset((await client.receive("hello", n))[n - 1])
    assert isinstance(body, dict)
    return body


async def break_and_recover(client: NodeSio, sender: NodeSio, gone: Record, breaks: int) -> None:
    """Break ``client``'s transport; once the server noticed, send it events to its room and to it alone (by its
    id), binary among them; then reconnect: it must get its socket back with exactly those events, in order."""
    old = client.all("connect")[-1]
    seen = len(client.all("recv"))
    await client.command(cmd="break", reconnect=False)
    await client.expect("disconnect", reason="transport close")
    await gone.wait("disconnect", breaks)
    assert gone.values("disconnect")[-1][0] == old["id"]
    sent = [("news", [breaks, "a"]), ("news", [breaks, b"\x00\xff"]), ("direct", [{"n": breaks}])]
    for event, args in sent:
        room = old["id"] if event == "direct" else ANN["room"]
        assert await sender.call("send", {"room": room, "event": event, "args": args}) == [True]
    await client.command(cmd="connect")
    again = await client.expect("connect")
    assert again["id"] == old["id"] and again["recovered"] is True
    body = await hello(client, breaks + 1)
    assert body == {"id": old["id"], "recovered": True, "middleware_runs": 1}
    # The missed events come before the CONNECT reply (Node's order); the client hands them over before "hello".
    got = recvs(client, seen)
    assert got[:-1] == [(event, args) for event, args in sent]
    assert got[-1][0] == "hello"
    assert await client.call("state", {}) == [{"id": old["id"], "rooms": sorted([old["id"], "news"]), "name": "ann"}]


@pytest.mark.parametrize("transports", ["websocket", "polling", "upgraded"])
async def test_a_break_is_recovered_with_the_events_missed(anyio_backend: str, transports: str) -> None:
    async with contract() as (_, address, gone):
        wire = None if transports == "upgraded" else transports
        async with node_sio(address, transports=wire, auth=ANN) as ann, node_sio(address, auth={"name": "bob"}) as bob:
            assert await hello(ann, 1) == {"id": ann.all("connect")[0]["id"], "recovered": False, "middleware_runs": 1}
            if transports == "upgraded":
                await ann.wait_for(lambda: ann.all("upgrade"))
            await break_and_recover(ann, bob, gone, 1)
            # Live events after the recovery carry offsets too, and nothing arrives twice.
            assert await ann.call("self", {"event": "direct", "args": [b"\x01"]}) == [True]
            assert without_offset((await ann.receive("direct", 2))[-1]) == [b"\x01"]
            assert [name for name, _ in recvs(ann, 0)].count("news") == 2


async def test_a_second_break_recovers_again(anyio_backend: str) -> None:
    async with (
        contract() as (_, address, gone),
        node_sio(address, auth=ANN, transports="websocket") as ann,
        node_sio(address) as bob,
    ):
        await hello(ann, 1)
        await break_and_recover(ann, bob, gone, 1)
        await break_and_recover(ann, bob, gone, 2)
        # And a break the client recovers from on its own, as after any network error.
        first = ann.all("connect")[0]["id"]
        await ann.command(cmd="break")
        again = await ann.expect("connect", timeout=15)
        assert again["id"] == first and again["recovered"] is True


async def test_past_the_deadline_it_is_a_new_connection(anyio_backend: str) -> None:
    # The client waits at least 0.5 s before reconnecting (socket.io-client's randomized delay): well past 1 ms.
    async with (
        contract(max_disc_ms=1) as (sio, address, gone),
        node_sio(address, auth=ANN, transports="websocket") as ann,
    ):
        old = ann.all("connect")[0]["id"]
        await hello(ann, 1)
        await ann.command(cmd="break")
        again = await ann.expect("connect", timeout=15)
        assert again["id"] != old and again["recovered"] is False
        assert await hello(ann, 2) == {"id": again["id"], "recovered": False, "middleware_runs": 2}
        await gone.wait("disconnect")
        assert sio.runtime.core.disconnected_count == 0, "the expired state is dropped"


async def test_an_unknown_pid_is_a_new_connection(anyio_backend: str) -> None:
    unknown = {**ANN, "pid": "nope", "offset": "AAAAAAAAAAA"}
    async with contract() as (_, address, _gone), node_sio(address, auth=unknown) as ann:
        connected = ann.all("connect")[0]
        assert connected["recovered"] is False
        assert await hello(ann, 1) == {"id": connected["id"], "recovered": False, "middleware_runs": 1}


async def test_middlewares_run_on_recovery_when_not_skipped(anyio_backend: str) -> None:
    async with (
        contract(skip_middlewares=False) as (_, address, gone),
        node_sio(address, auth=ANN, transports="websocket") as ann,
    ):
        await hello(ann, 1)
        await ann.command(cmd="break", reconnect=False)
        await gone.wait("disconnect")
        await ann.command(cmd="connect")
        assert (await ann.expect("connect"))["recovered"] is True
        assert await hello(ann, 2) == {"id": ann.all("connect")[0]["id"], "recovered": True, "middleware_runs": 2}


@asynccontextmanager
async def two_workers() -> AsyncIterator[tuple[list[tuple[str, int]], Record]]:
    """Two workers of the contract in this process, each on its own port, joined by a real bus: a client sent to
    the other port comes back to the other worker, as SO_REUSEPORT may send it."""
    bus_dir = tempfile.mkdtemp(prefix="anysio-")
    gone = Record()
    try:
        async with anyio.create_task_group() as tg:
            addresses = []
            for index in range(2):
                sio: Server = EXAMPLE.build()
                bus = Bus(bus_dir, index, 2)
                sio.become_worker(index, partial(BusAdapter, bus=bus), bus.hand_off)
                attach(sio, bus)

                @sio.on("disconnect")
                def disconnect(socket: Socket, reason: str) -> None:
                    gone.add("disconnect", (socket.id, reason))

                await tg.start(bus.serve)
                addresses.append(await tg.start(sio.serve, "127.0.0.1", 0))
            yield addresses, gone
            tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(bus_dir, ignore_errors=True)


async def test_a_client_that_comes_back_to_another_worker_is_recovered(anyio_backend: str) -> None:
    async with (
        two_workers() as ((first, second), gone),
        node_sio(first, auth=ANN, transports="websocket") as ann,
        node_sio(second, auth={"name": "bob"}) as bob,
    ):
        old = ann.all("connect")[0]["id"]
        await hello(ann, 1)
        await ann.command(cmd="break", reconnect=False, url=f"http://{second[0]}:{second[1]}")
        await gone.wait("disconnect")
        # From the other worker, over the bus: to its room, and to it alone.
        assert await bob.call("send", {"room": "news", "event": "news", "args": [b"\x07"]}) == [True]
        assert await bob.call("send", {"room": old, "event": "direct", "args": [2]}) == [True]
        await ann.command(cmd="connect")
        assert (await ann.expect("connect"))["recovered"] is True
        # This worker never ran the middleware for "ann": skipped on recovery.
        body = await hello(ann, 2)
        assert body == {"id": old, "recovered": True, "middleware_runs": 0}
        assert recvs(ann, 1) == [("news", [b"\x07"]), ("direct", [2]), ("hello", [body])]
        assert await ann.call("state", {}) == [{"id": old, "rooms": sorted([old, "news"]), "name": "ann"}]


async def test_workers_recover_their_clients(anyio_backend: str) -> None:
    """``--workers 2``: whichever worker the kernel gives the reconnection, the client gets its socket back."""
    env = {**os.environ, "PORT": "0"}
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "recovery" / "server.py"),
        "--workers",
        "2",
        "--backend",
        anyio_backend,
    ]
    async with await anyio.open_process(cmd, env=env) as proc:
        try:
            url = await listening_url(proc)
            host, port = url.removeprefix("http://").split(":")
            address = (host, int(port))
            async with node_sio(address, auth=ANN) as ann, node_sio(address, auth={"name": "bob"}) as bob:
                first = ann.all("connect")[0]["id"]
                for n in range(1, 4):
                    await hello(ann, n)
                    # A break while the upgrade is under way is noticed only by the ping timeout (the paused
                    # long-polling transport sends no close): break upgraded connections.
                    await ann.wait_for(lambda: len(ann.all("upgrade")) >= len(ann.all("connect")))
                    await ann.command(cmd="break")
                    again = await ann.expect("connect", timeout=15)
                    assert again["id"] == first and again["recovered"] is True
                    assert await bob.call("send", {"room": "news", "event": "news", "args": [n]}) == [True]
                    assert without_offset((await ann.receive("news", n))[-1]) == [n]
                assert await ann.call("state", {}) == [{"id": first, "rooms": sorted([first, "news"]), "name": "ann"}]
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                await proc.wait()


async def listening_url(proc: anyio.abc.Process) -> str:
    """The address the master prints once every worker listens."""
    assert proc.stdout is not None
    lines = BufferedByteReceiveStream(proc.stdout)
    with anyio.fail_after(30):
        while True:
            line = (await lines.receive_until(b"\n", 1 << 16)).decode()
            if "listening on" in line:
                return line.rsplit(" ", 1)[1].strip()


async def test_recovery_under_asgi(anyio_backend: str) -> None:
    """``anysio.ASGIApp`` behind hypercorn, in this process, on the test's backend: the same recovery."""
    sio: Server = EXAMPLE.build()
    gone = Record()

    @sio.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        gone.add("disconnect", (socket.id, reason))

    async with (
        asgi_serving(sio, anyio_backend) as address,
        node_sio(address, auth=ANN, transports="websocket") as ann,
        node_sio(address) as bob,
    ):
        await hello(ann, 1)
        await break_and_recover(ann, bob, gone, 1)
