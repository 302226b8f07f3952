"""Engine.IO sessions over real sockets: the upgrade, the heartbeat, and closing from either side."""

from __future__ import annotations

import gc
import sys
import weakref

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from anysio import Session
from tests.e2e.conftest import EchoServer, serving
from tests.e2e.eio_helpers import CLOSE, Polling, WsConn, closing_connections, eio_target, ws_echo, ws_session

pytestmark = pytest.mark.anyio
# Short enough to wait for the real timers: a silent session is closed after interval + timeout.
FAST = {"ping_interval": 0.2, "ping_timeout": 0.1}


async def test_upgrade_with_a_pending_poll() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert p.open["upgrades"] == ["websocket"]
            pending = await p.park_get()
            ws, res = await WsConn.connect(srv.address, eio_target(transport="websocket", sid=p.sid))
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            # The parked GET is released with a noop so the client can pause polling.
            assert (await pending.read_response()).text == "6"
            await ws.send("5")
            await ws_echo(ws, "over the websocket")
            await ws_echo(ws, b"\x01\x02")
            await srv.wait_for(lambda: srv.opened[0].transport == "websocket")
            # Messages the server sends go over the WebSocket now.
            srv.eio.send(p.sid, "pushed")
            assert await ws.receive() == "4pushed"
            res = await p.get()
            assert (res.status, res.json()["code"]) == (400, 3)
            assert srv.closed == []
            await ws.aclose()
            assert await srv.closed_reason(p.sid) == "transport close"


async def test_heartbeat_keeps_an_answering_session() -> None:
    async with serving(EchoServer(**FAST)) as srv:
        with anyio.fail_after(5):
            ws, _ = await ws_session(srv.address)
            for _ in range(3):
                assert await ws.receive() == "2"
                await ws.send("3")
            assert srv.closed == []
            await ws.aclose()
            await srv.wait_for(lambda: srv.closed)
            p = await Polling.connect(srv.address)
            for _ in range(3):
                assert (await p.get()).text == "2"
                await p.post("3")
            assert [sid for sid, _ in srv.closed] == [srv.opened[0].sid]


async def test_heartbeat_timeout_closes_a_silent_websocket() -> None:
    async with serving(EchoServer(**FAST)) as srv:
        with anyio.fail_after(5):
            ws, open_ = await ws_session(srv.address)
            assert (open_["pingInterval"], open_["pingTimeout"]) == (200, 100)
            assert await ws.receive() == "2"
            assert await ws.expect_close() is None
            assert await srv.closed_reason(open_["sid"]) == "ping timeout"


async def test_heartbeat_timeout_closes_a_silent_polling_session() -> None:
    async with serving(EchoServer(**FAST)) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert (await p.get()).text == "2"
            # The next GET waits, and is answered with the close packet when the pong does not come.
            assert (await p.get()).text == "1"
            assert await srv.closed_reason(p.sid) == "ping timeout"
            assert (await p.get()).json()["code"] == 1
            assert srv.eio.count == 0


async def test_server_closes_a_polling_session() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            pending = await p.park_get()
            srv.eio.send(p.sid, "last words")
            srv.eio.close(p.sid)
            assert (await pending.read_response()).text == "4last words\x1e1"
            assert await srv.closed_reason(p.sid) == "forced close"
            assert (await p.get()).json()["code"] == 1
            # Without a GET waiting, the next one carries the close packet.
            p = await Polling.connect(srv.address)
            srv.eio.close(p.sid)
            assert await srv.closed_reason(p.sid) == "forced close"
            assert (await p.get()).text == "1"
            assert (await p.get()).json()["code"] == 1


async def test_server_closes_a_websocket_session() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            ws, open_ = await ws_session(srv.address)
            srv.eio.close(open_["sid"])
            assert await ws.expect_close() is None
            assert await srv.closed_reason(open_["sid"]) == "forced close"


async def test_client_closes_a_polling_session() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            pending = await p.park_get()
            await p.post("1")
            assert (await pending.read_response()).text == "6"
            assert await srv.closed_reason(p.sid) == "transport close"
            # A client that drops its pending GET: "transport error", as Node's "poll connection closed".
            p = await Polling.connect(srv.address)
            pending = await p.park_get()
            await pending.aclose()
            assert await srv.closed_reason(p.sid) == "transport error"


async def test_client_closes_a_websocket_session() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            ws, open_ = await ws_session(srv.address)
            await ws.send_frame(CLOSE, b"\x03\xe8bye")
            assert await ws.expect_close() == 1000
            assert await srv.closed_reason(open_["sid"]) == "transport close"
            ws, open_ = await ws_session(srv.address)
            await ws.aclose()
            assert await srv.closed_reason(open_["sid"]) == "transport close"


async def test_shutdown_closes_every_session() -> None:
    srv = EchoServer()
    async with closing_connections():
        async with serving(srv):
            with anyio.fail_after(5):
                ws, open_ = await ws_session(srv.address)
                p = await Polling.connect(srv.address)
                pending = await p.park_get()
                await srv.wait_for(lambda: len(srv.opened) == 2)
        with anyio.fail_after(5):
            assert await ws.expect_close() is None
            assert (await pending.read_response()).text == "1"
    assert sorted(srv.closed) == sorted([(open_["sid"], "server shutting down"), (p.sid, "server shutting down")])


async def test_async_close_handlers_run_at_shutdown() -> None:
    srv = EchoServer()
    done: list[str] = []

    @srv.eio.on_close
    async def closed(session: Session, reason: str) -> None:
        await anyio.lowlevel.checkpoint()
        done.append(reason)

    async with serving(srv):
        with anyio.fail_after(5):
            ws, _ = await ws_session(srv.address)
            await ws_echo(ws, "hi")
    assert done == ["server shutting down"]


async def test_a_stopped_server_can_be_collected_on_any_thread() -> None:
    gc.collect()  # earlier tests' garbage, here, on the thread that made it
    srv = EchoServer()
    async with serving(srv):
        with anyio.fail_after(5):
            ws, _ = await ws_session(srv.address)
            await ws_echo(ws, "hi")
    # Sessions point back at their server: only the cycle collector frees it, on whatever thread runs it.
    server = weakref.ref(srv.eio)
    del srv
    problems: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: problems.append(repr(u.exc_value))
    try:
        await anyio.to_thread.run_sync(gc.collect)
    finally:
        sys.unraisablehook = previous
    assert server() is None
    assert problems == []
