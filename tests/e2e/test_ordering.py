"""Handlers of one socket start in the order their events arrived, as in Node, on both backends (trio runs a
batch of new tasks in no particular order, so this needs anysio's per-socket ordering)."""

from __future__ import annotations

import anyio
import pytest

from anysio import Server, Socket

from .sio_helpers import Record, node_sio, serving

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_handlers_start_in_arrival_order(anyio_backend: str, transports: str) -> None:
    sio = Server()
    rec = Record()

    @sio.on("async_step")
    async def async_step(socket: Socket, n: int) -> None:
        rec.add("start", n)
        await anyio.lowlevel.checkpoint()  # a real suspension: later handlers may run meanwhile
        rec.add("end", n)

    @sio.on("sync_step")
    def sync_step(socket: Socket, n: int) -> None:
        rec.add("start", n)

    async with serving(sio) as address, node_sio(address, transports=transports) as client:
        for n in range(60):
            # Mixed kinds: a plain handler must not overtake a coroutine handler queued before it.
            await client.emit("async_step" if n % 3 else "sync_step", n)
        await rec.wait("start", 60)
        assert rec.values("start") == list(range(60))
        await rec.wait("end", 40)
