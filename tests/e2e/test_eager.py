"""Coroutine handlers start eagerly: one that never suspends costs no task, one that suspends is finished by the
task that started it while a new task takes over the driver loop (see anysio/engineio/eager.py). What the application
must not notice: on both backends, with the official client, a socket's events start in arrival order whatever
their handlers do (finish at once, suspend, raise before or after suspending, enter a cancel scope, wait for
another socket, get cancelled), and every failure is logged once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
import pytest
from pydantic import BaseModel

from anysio import Server, Socket

from .sio_helpers import WAIT, Record, node_sio, serving

pytestmark = pytest.mark.anyio


@dataclass
class Echo:
    id: int
    text: str


class EchoModel(BaseModel):
    id: int
    text: str


def eager_server(rec: Record) -> Server:
    sio = Server()
    gate = anyio.Event()

    @sio.on("plain")
    async def plain(socket: Socket, n: int) -> int:
        rec.add("start", n)
        return n

    @sio.on("suspend")
    async def suspend(socket: Socket, n: int) -> int:
        rec.add("start", n)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        rec.add("end", n)
        return n

    @sio.on("raise_before")
    async def raise_before(socket: Socket, n: int) -> int:
        rec.add("start", n)
        raise RuntimeError(f"before {n}")

    @sio.on("raise_after")
    async def raise_after(socket: Socket, n: int) -> int:
        rec.add("start", n)
        await anyio.lowlevel.checkpoint()
        raise RuntimeError(f"after {n}")

    @sio.on("scoped")
    async def scoped(socket: Socket, n: int) -> str:
        # The cancel scope is entered before the first suspension and left after it: in the same task.
        rec.add("start", n)
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep_forever()
        return "timed out" if scope.cancelled_caught else "not cancelled"

    @sio.on("wait_gate")
    async def wait_gate(socket: Socket, n: int) -> int:
        # Registers the task it runs in to be woken: the task that must finish it.
        rec.add("start", n)
        await gate.wait()
        return n

    @sio.on("open_gate")
    def open_gate(socket: Socket) -> bool:
        gate.set()
        return True

    @sio.on("forever")
    async def forever(socket: Socket) -> None:
        try:
            rec.add("forever", "waiting")
            await anyio.sleep_forever()
        finally:
            rec.add("forever", "cancelled")

    @sio.on("typed")
    async def typed(socket: Socket, msg: Echo) -> Echo:
        return Echo(msg.id + 1, msg.text.upper())

    @sio.on("model")
    async def model(socket: Socket, msg: EchoModel) -> EchoModel:
        await anyio.lowlevel.checkpoint()
        return EchoModel(id=msg.id + 1, text=msg.text.upper())

    return sio


async def test_typed_handlers_ack_with_their_return_value(anyio_backend: str) -> None:
    rec = Record()
    async with serving(eager_server(rec)) as address, node_sio(address) as client:
        assert await client.call("typed", {"id": 1, "text": "a"}) == [{"id": 2, "text": "A"}]
        assert await client.call("model", {"id": 5, "text": "é"}) == [{"id": 6, "text": "É"}]
        [error] = await client.call("typed", {"id": "x", "text": "a"})
        assert error["error"].startswith("invalid argument 'msg.id'")
        # Fewer arguments than parameters take the general path: still answered.
        [error] = await client.call("typed")
        assert error == {
            "error": "missing argument 'msg'",
            "errors": [{"loc": ["msg"], "msg": "Field required", "type": "missing"}],
        }


async def test_a_sockets_events_start_in_order_whatever_their_handlers_do(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Record()
    kinds = ["plain", "suspend", "raise_before", "raise_after", "scoped", "suspend", "plain"]
    async with serving(eager_server(rec)) as address, node_sio(address) as client:
        with caplog.at_level(logging.ERROR, logger="anysio"):
            ids = [await client.emit(kinds[n % len(kinds)], n, ack=True) for n in range(70)]
            await rec.wait("start", 70)
            assert rec.values("start") == list(range(70))
            # Every handler that returns is acked with its value, in order; failures are logged, not acked.
            replies = await client.wait_for(
                lambda: (acks := client.all("ack")) and len(acks) >= 50 and acks,
                timeout=WAIT,
            )
        answered = {e["id"]: e["args"] for e in replies}
        for n, ack_id in enumerate(ids):
            kind = kinds[n % len(kinds)]
            if kind.startswith("raise"):
                assert ack_id not in answered
            elif kind == "scoped":
                assert answered[ack_id] == ["timed out"]
            else:
                assert answered[ack_id] == [n]
        assert [e["id"] for e in replies] == sorted(answered), "acks leave in arrival order"
        failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 20, "each failed handler logged once"
        assert rec.values("end") == [n for n in range(70) if kinds[n % len(kinds)] == "suspend"]


async def test_a_handler_waiting_for_another_socket_is_woken(anyio_backend: str) -> None:
    rec = Record()
    async with serving(eager_server(rec)) as address, node_sio(address) as waiter, node_sio(address) as opener:
        waiting = await waiter.emit("wait_gate", 1, ack=True)
        queued = await waiter.emit("plain", 2, ack=True)
        await rec.wait("start", 1)
        # Another socket's events go on meanwhile.
        assert await opener.call("plain", 3) == [3]
        assert await opener.call("open_gate") == [True]
        acks = await waiter.wait_for(lambda: len(waiter.all("ack")) >= 2 and waiter.all("ack"))
        assert [(e["id"], e["args"]) for e in acks] == [(waiting, [1]), (queued, [2])]


async def test_a_suspended_handler_is_cancelled_when_the_server_stops(anyio_backend: str) -> None:
    rec = Record()
    async with serving(eager_server(rec)) as address, node_sio(address) as client, node_sio(address) as other:
        await client.emit("forever")
        await rec.wait("forever")
        assert await other.call("plain", 1) == [1], "other sockets are not held up"
    assert rec.values("forever") == ["waiting", "cancelled"]
