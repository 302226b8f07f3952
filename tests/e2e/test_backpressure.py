"""Backpressure an application can see: ``socket.buffered_amount``, ``await socket.emit`` waiting at
``high_water_mark`` (DrainTimeout after ``drain_timeout``), ``socket.emit_nowait`` refusing, and broadcasts that
never wait (a slow member skipped for volatile packets, dropped at ``max_buffered``). The slow clients are raw peers
that stop reading: a long-polling session that sends no GET, a WebSocket whose socket is not read. Every test runs
on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from anysio import DrainTimeout, Server, Socket
from tests.e2e.eio_helpers import Polling
from tests.e2e.sio_helpers import Record, node_sio, serving, silent_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
CHUNK = "x" * 65536


def tracked(**options: Any) -> tuple[Server, dict[str, Socket], Record]:
    """A server that keeps its connected sockets by id and records disconnects; "echo" acks its argument."""
    sio = Server(**options)
    sockets: dict[str, Socket] = {}
    rec = Record()

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        sockets[socket.id] = socket
        socket.join("room")
        rec.add("connect", socket.id)

    @sio.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        rec.add("disconnect", (socket.id, reason))

    @sio.on("echo")
    def echo(socket: Socket, value: Any) -> Any:
        return value

    return sio, sockets, rec


async def test_a_polling_client_that_does_not_poll_makes_emit_wait_until_it_does() -> None:
    sio, sockets, _ = tracked(high_water_mark=4096, drain_timeout=0.2)
    async with serving(sio) as address:
        session = await Polling.connect(address, path="/socket.io/")
        await session.send("0")  # a Socket.IO CONNECT to "/", as an Engine.IO message
        first = (await session.get()).text
        assert first.startswith('40{"sid":"'), first
        [socket] = sockets.values()
        assert socket.buffered_amount == 0

        sent = 0
        while socket.emit_nowait("data", "y" * 1000):  # queued for the next GET, which does not come
            sent += 1
            assert sent < 100, "emit_nowait never refused"
        assert sent == 5  # each packet's segment is 1013 bytes: the fifth passes the mark
        assert 4096 <= socket.buffered_amount < 4096 + 1100
        with pytest.raises(DrainTimeout):
            await socket.emit("data", "late")
        assert socket.buffered_amount < 4096 + 1100, "nothing more was queued"

        # A waiting emit goes on once the client polls: its GET takes the queue.
        done = anyio.Event()

        async def emit_when_drained() -> None:
            await socket.emit("data", "after")
            done.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(emit_when_drained)
                await anyio.wait_all_tasks_blocked()
                assert not done.is_set()
                assert (await session.get()).text.count('["data","' + "y" * 1000 + '"]') == 5
                await done.wait()
            assert (await session.get()).text == '42["data","after"]'
        assert socket.buffered_amount == 0


async def test_a_websocket_that_is_not_read_bounds_its_buffer_and_spares_the_others() -> None:
    sio, sockets, rec = tracked(drain_timeout=0.3, max_buffered=64 * 1024 * 1024, metrics=True)
    async with serving(sio) as address:
        stalled, stalled_id = await silent_client(address)  # connected, and from now on never read
        socket = sockets[stalled_id]
        # Written until the kernel's buffers are full and the server's own reaches the default mark (1 MiB).
        sent = 0
        while sent < 1000 and socket.emit_nowait("data", CHUNK):  # at most 64 MB: loopback's kernel takes a few
            sent += 1
            await anyio.wait_all_tasks_blocked()  # the driver writes what it can between emits
        assert 0 < sent < 1000
        mark = sio.flow.mark
        assert mark == 1024 * 1024
        assert mark <= socket.buffered_amount < mark + len(CHUNK) + 100, "bounded: the mark and one packet"
        with pytest.raises(DrainTimeout):
            await socket.emit("data", CHUNK)

        async with node_sio(address, transports="websocket") as other:
            assert await other.call("echo", "still here") == ["still here"]
            other_id = next(sid for sid in sockets if sid != stalled_id)

        # Reading again drains the buffer: an emit that waited goes out, in order, after everything else.
        async with anyio.create_task_group() as tg:
            tg.start_soon(socket.emit, "data", "last")
            with anyio.fail_after(30):
                received = 0
                while (message := await stalled.receive()) != '42["data","last"]':
                    if message == "2":
                        await stalled.send("3")
                    else:
                        received += 1
            assert received == sent
        assert socket.buffered_amount == 0
        assert [sid for sid, _ in rec.values("disconnect")] == [other_id], "the slow client is still connected"
        await stalled.aclose()


async def test_broadcasts_never_wait_skip_a_slow_member_when_volatile_and_drop_it_at_max_buffered() -> None:
    sio, sockets, rec = tracked(max_buffered=4 * 1024 * 1024, metrics=True)
    async with serving(sio) as address, node_sio(address, transports="websocket") as fast:
        stalled, stalled_id = await silent_client(address)
        slow = sockets[stalled_id]
        count = 0
        with anyio.fail_after(30):
            while slow.buffered_amount < 128 * 1024:  # the kernel's buffers full, the server's growing
                assert count < 1000, "at most 64 MB"
                await sio.to("room").emit("data", CHUNK)
                count += 1
                await anyio.wait_all_tasks_blocked()
            before = slow.buffered_amount
            await sio.to("room").volatile.emit("data", "volatile")
            assert slow.buffered_amount == before, "a volatile packet skips a member that is backed up"
            assert (await fast.receive("data", count + 1))[-1] == ["volatile"]

            # Past max_buffered the slow member is dropped; the broadcasts never waited for it.
            while not rec.values("disconnect"):
                assert count < 1000, "at most 64 MB"
                await sio.to("room").emit("data", CHUNK)
                count += 1
                await anyio.wait_all_tasks_blocked()
            assert rec.values("disconnect") == [(stalled_id, "transport close")]
            await fast.receive("data", count + 1)
        assert sio.metrics is not None
        assert sio.metrics.snapshot()["slow_consumers"] == 1
        await stalled.aclose()
