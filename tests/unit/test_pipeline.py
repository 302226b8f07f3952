"""Several handlers of one event and the per-packet path (server/pipeline.py), without sockets: the dispatcher
on a FakeCore (see test_dispatch.py)."""

from __future__ import annotations

from typing import Any

import pytest

from anysio import Ack, Server, Socket
from tests.unit.test_dispatch import connected, dispatch, event, running

pytestmark = pytest.mark.anyio


async def test_several_handlers_run_in_order_and_the_first_reply_wins() -> None:
    sio = Server()
    seen: list[tuple[str, Any]] = []

    @sio.on("x")
    def log(socket: Socket, n: int) -> None:
        seen.append(("log", n))  # None: no reply while another handler follows

    @sio.on("x")
    async def answer(socket: Socket, n: int) -> int:
        seen.append(("answer", n))
        return n + 1

    @sio.on("x")
    def late(socket: Socket, n: int, ack: Ack) -> None:
        seen.append(("late", n))
        ack("ignored")

    @sio.on("y")
    def first_none(socket: Socket) -> None:
        seen.append(("first_none", None))

    @sio.on("y")
    async def second_none(socket: Socket) -> None:
        seen.append(("second_none", None))

    @sio.on("z")
    def takes_ack(socket: Socket, ack: Ack) -> None:
        seen.append(("takes_ack", None))

    @sio.on("z")
    def also_takes_ack(socket: Socket, ack: Ack) -> None:
        seen.append(("also_takes_ack", None))

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(sio, event(10, '["x",1]', 5, None), event(10, '["z"]', 7, None), event(10, '["y"]', 6, None))
        await core.wait_for(lambda: len(core.emits()) == 2)
        # None from every handler is the empty ack one handler's None sends; handlers that take the Ack and
        # never call it leave the client unanswered, as one such handler does.
        assert core.emits() == [(10, [2], [], 5, True), (10, [], [], 6, True)]
        assert [name for name, _ in seen] == [
            "log",
            "answer",
            "late",
            "takes_ack",
            "also_takes_ack",
            "first_none",
            "second_none",
        ]


async def test_a_handler_that_raises_does_not_stop_the_next_and_is_reported() -> None:
    sio = Server()
    errors: list[tuple[str | None, str]] = []

    @sio.on("x")
    def broken(socket: Socket) -> None:
        raise RuntimeError("first handler bug")

    @sio.on("x")
    def fine(socket: Socket) -> str:
        return "fine"

    @sio.on("error")
    def error(socket: Socket | None, exc: BaseException) -> None:
        errors.append((socket.id if socket else None, str(exc)))

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(sio, event(10, '["x"]', 1, None), event(10, '["error","forged"]', None, None))
        await core.wait_for(lambda: core.emits())
        assert core.emits() == [(10, ["fine"], [], 1, True)]
        # A client's "error" event reaches no error handler: "error" names the server's own.
        assert errors == [("s10", "first handler bug")]
