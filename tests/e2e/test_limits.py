"""Every row of the README's "Limits" table: what a client gets when it passes the limit, with the official Node
client where it can pass it, and by hand (raw HTTP, raw WebSocket) where no well-behaved client would. Every
test runs on asyncio and trio."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
import pytest

from anysio import Server, Socket
from tests.e2e.eio_helpers import HttpConn, Polling, WsConn, closing_connections, eio_target, ws_session
from tests.e2e.sio_helpers import WAIT, demo_server, node_sio, serving, silent_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def anysio_log(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "anysio" and fragment in r.getMessage()]


# ---- payload and buffered output ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transports", "client_reason"), [("websocket", "transport close"), ("polling", "transport error")]
)
async def test_a_payload_over_max_payload_ends_the_connection(transports: str, client_reason: str) -> None:
    sio, rec = demo_server(max_payload=1000)
    async with serving(sio) as address, node_sio(address, transports=transports, reconnection=False) as client:
        assert await client.call("echo", "x" * 900) == ["x" * 900]
        await client.emit("echo", "x" * 1000, ack=True)
        assert (await client.expect("disconnect"))["reason"] == client_reason
        # As Node's: a WebSocket fails the transport (close 1009); on polling the client, refused its POST (413),
        # closes the session itself.
        [(_, _, reason)] = await rec.wait("disconnect")
        assert reason == {"websocket": "transport error", "polling": "transport close"}[transports]


@pytest.mark.parametrize(("transports", "reason"), [("websocket", "transport close"), ("polling", "transport error")])
async def test_an_emit_over_max_buffered_drops_the_client(transports: str, reason: str) -> None:
    sio, rec = demo_server(max_buffered=4096)

    @sio.on("flood")
    async def flood(socket: Socket, size: int) -> None:
        await socket.emit("data", "x" * size)

    async with serving(sio) as address, node_sio(address, transports=transports, reconnection=False) as client:
        await client.emit("flood", 1000)
        assert await client.receive("data") == [["x" * 1000]]
        await client.emit("flood", 5000)
        # A WebSocket closed, or the close packet on the parked GET: the client reads a close either way.
        assert (await client.expect("disconnect"))["reason"] == "transport close"
        [(_, _, server_reason)] = await rec.wait("disconnect")
        assert server_reason == reason


async def test_a_polling_client_that_never_polls_is_dropped_at_max_buffered(caplog: pytest.LogCaptureFixture) -> None:
    """The defect of issue 17: a client that answers pings (POSTs) but never GETs. What waits for it is bounded
    by max_buffered; past it the session closes ("transport error"), logged once, and its sid is forgotten."""
    caplog.set_level(logging.INFO, logger="anysio")
    sio, rec = demo_server(max_buffered=64 * 1024)
    async with serving(sio) as address, closing_connections():
        polling = await Polling.connect(address, path="/socket.io/")
        await polling.send("0")  # CONNECT to "/"
        [(_, sid, _)] = await rec.wait("connect")
        for _ in range(100):  # 100 KB in all, over the bound well before the end
            await sio.emit("data", "x" * 1000)
        [(_, gone, reason)] = await rec.wait("disconnect")
        assert (gone, reason) == (sid, "transport error")
        [line] = anysio_log(caplog, "max_buffered")
        assert "client not polling" in line
        res = await polling.post("3")
        assert (res.status, res.json()) == (400, {"code": 1, "message": "Session ID unknown"})


# ---- Socket.IO packets -------------------------------------------------------------------------------------


async def test_more_than_10_attachments_end_the_connection() -> None:
    sio, rec = demo_server()
    async with serving(sio) as address, node_sio(address, reconnection=False) as client:
        assert await client.call("echo", *[bytes([n]) for n in range(10)]) == [bytes([n]) for n in range(10)]
        await client.emit("echo", *[bytes([n]) for n in range(11)], ack=True)
        await client.expect("disconnect")
        [(_, _, reason)] = await rec.wait("disconnect")
        assert reason == "forced close"


async def test_nesting_json_parse_accepts_is_echoed() -> None:
    sio, _ = demo_server()
    deep: Any = []
    for _ in range(300):  # past serde_json's 128 levels and pydantic's 200
        deep = [deep]
    async with serving(sio) as address, node_sio(address) as client:
        assert await client.call("echo", deep) == [deep]
        # Deeper than this test's own JSON helpers go: by hand.
        ws, _ = await silent_client(address)
        nested = "[" * 800 + "]" * 800
        await ws.send(f'421["echo",{nested}]')
        with anyio.fail_after(WAIT):
            assert await ws.receive() == f"431[{nested}]"


async def test_nesting_past_what_python_parses_ends_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="anysio")
    sio, rec = demo_server()
    async with serving(sio) as address, closing_connections():
        ws, sid = await silent_client(address)
        await ws.send('421["echo",' + "[" * 100_000 + "]" * 100_000 + "]")
        with anyio.fail_after(WAIT):
            assert await ws.expect_close() is None
        [(_, gone, reason)] = await rec.wait("disconnect")
        assert (gone, reason) == (sid, "forced close")


# ---- numbers, as JSON.parse reads them -----------------------------------------------------------------------


def number_server() -> tuple[Server, list[Any]]:
    sio, _ = demo_server()
    seen: list[Any] = []

    @sio.on("untyped")
    def untyped(socket: Socket, value: Any) -> Any:
        seen.append(value)
        return value

    @sio.on("real")
    def real(socket: Socket, value: float) -> float:
        seen.append(value)
        return value

    @sio.on("whole")
    def whole(socket: Socket, value: int) -> int:
        seen.append(value)
        return value

    return sio, seen


async def test_numbers_past_a_double_are_infinity_as_json_parse_reads_them() -> None:
    sio, seen = number_server()
    huge = "9" * 5000  # past Python's int/str limit of 4300 digits: a float, as JSON.parse gives
    async with serving(sio) as address, closing_connections():
        ws, _ = await silent_client(address)
        with anyio.fail_after(WAIT):
            for n, (event, text, ack) in enumerate(
                [
                    ("untyped", "1e400", "[null]"),  # Infinity, and JSON.stringify writes null
                    ("untyped", "-1e400", "[null]"),
                    ("untyped", huge, "[null]"),
                    ("real", "1e400", "[null]"),
                    ("real", huge, "[null]"),
                    ("untyped", "9" * 400, "[" + "9" * 400 + "]"),  # under the limit: a Python int, exact
                ]
            ):
                await ws.send(f'42{n}["{event}",{text}]')
                assert await ws.receive() == f"43{n}{ack}", (event, text)
            assert seen[:5] == [math.inf, -math.inf, math.inf, math.inf, math.inf]
            assert seen[5] == int("9" * 400)
            await ws.send('4299["whole",1e400]')
            got = await ws.receive()
            assert isinstance(got, str) and got.startswith('4399[{"error":"invalid argument \'value\''), got
        assert len(seen) == 6


async def test_numbers_from_the_official_client() -> None:
    """The same from socket.io-client, whose JSON.stringify writes the number's text as given (JSON.rawJSON)."""
    sio, seen = number_server()
    raw = ("--harmony-json-parse-with-source",)
    async with serving(sio) as address, node_sio(address, node_flags=raw) as client:
        assert await client.call("untyped", {"raw_json": "1e400"}) == [None]
        assert await client.call("real", {"raw_json": "9" * 5000}) == [None]
        [error] = await client.call("whole", {"raw_json": "-1e400"})
        assert error["errors"] == [
            {"loc": ["value"], "msg": "Input should be a finite number", "type": "finite_number"}
        ]
        assert seen == [math.inf, math.inf]


async def test_infinity_and_nan_go_out_as_null() -> None:
    sio, _ = demo_server()

    @sio.on("specials")
    def specials(socket: Socket) -> tuple[float, ...]:
        return math.inf, -math.inf, math.nan, 1.5

    @sio.on("typed")
    def typed(socket: Socket) -> list[float]:
        return [math.inf, math.nan]

    async with serving(sio) as address, node_sio(address) as client:
        assert await client.call("specials") == [None, None, None, 1.5]
        assert await client.call("typed") == [[None, None]]


# ---- connections and HTTP ------------------------------------------------------------------------------------


async def test_past_max_connections_a_client_gets_connect_error() -> None:
    sio, _ = demo_server(max_connections=1)
    async with serving(sio) as address, node_sio(address) as first:
        async with node_sio(address, reconnection=False, connected=False) as second:
            error = await second.expect("connect_error")
            assert error["message"] in ("xhr poll error", "websocket error"), error
        assert await first.call("echo", 1) == [1]


async def test_headers_and_url_over_16_kib_are_answered_431() -> None:
    sio, _ = demo_server()
    async with serving(sio) as address, closing_connections():
        for headers, target in [
            ([("X-Big", "x" * 17 * 1024)], eio_target("/socket.io/")),
            ([], eio_target("/socket.io/", pad="x" * 17 * 1024)),
        ]:
            conn = await HttpConn.open(address)
            with anyio.fail_after(WAIT):
                res = await conn.request("GET", target, headers=headers)
                assert (res.status, res.header("connection")) == (431, "close")
                assert await conn.read_until_closed() == b""


async def test_a_websocket_that_is_not_read_is_dropped_at_max_buffered() -> None:
    sio, rec = demo_server(max_buffered=256 * 1024)
    async with serving(sio) as address, closing_connections():
        ws, sid = await silent_client(address)
        # The kernel's socket buffers take a few MB before anything waits in the server.
        for _ in range(400):
            await sio.emit("data", "x" * 64 * 1024)
            if rec.values("disconnect"):
                break
        [(_, gone, reason)] = await rec.wait("disconnect")
        assert (gone, reason) == (sid, "transport close")
        assert isinstance(ws, WsConn)


async def test_a_request_not_whole_in_time_is_answered_408() -> None:
    sio, _ = demo_server(request_timeout=0.5)
    async with serving(sio) as address, closing_connections():
        conn = await HttpConn.open(address)
        await conn.send(f"GET {eio_target('/socket.io/')} HTTP/1.1\r\nHost: h\r\n")  # and never the blank line
        with anyio.fail_after(WAIT):
            res = await conn.read_response()
            assert (res.status, res.header("connection")) == (408, "close")
            assert await conn.read_until_closed() == b""


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    sio, _ = demo_server(keep_alive_timeout=0.3)
    async with serving(sio) as address, closing_connections():
        conn = await HttpConn.open(address)
        with anyio.fail_after(WAIT):
            res = await conn.request("GET", eio_target("/socket.io/"))
            assert res.status == 200 and res.header("connection") != "close"
            assert await conn.read_until_closed() == b""


async def test_an_http_method_over_32_bytes_is_answered_400() -> None:
    sio, _ = demo_server()
    async with serving(sio) as address, closing_connections():
        conn = await HttpConn.open(address)
        with anyio.fail_after(WAIT):
            res = await conn.request("M" * 33, eio_target("/socket.io/"))
            assert (res.status, res.header("connection")) == (400, "close")


async def test_a_client_that_never_connects_to_a_namespace_is_closed() -> None:
    sio, rec = demo_server(connect_timeout=0.5)
    async with serving(sio) as address, closing_connections():
        ws, _ = await ws_session(address, path="/socket.io/")  # an Engine.IO session, and no CONNECT
        with anyio.fail_after(WAIT):
            assert await ws.expect_close() is None
        assert rec.values("connect") == []


async def test_events_waiting_behind_a_handler_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """A socket's events wait, in order, for its handler that suspended; past max_buffered bytes of their
    arguments the client is closed rather than allowed to grow the server's memory."""
    caplog.set_level(logging.INFO, logger="anysio")
    sio, rec = demo_server(max_buffered=64 * 1024)
    release = anyio.Event()

    @sio.on("stall")
    async def stall(socket: Socket) -> None:
        await release.wait()

    async with serving(sio) as address, closing_connections():
        ws, sid = await silent_client(address)
        await ws.send('42["stall"]')
        for _ in range(10):  # 60 KB waits: within the bound
            await ws.send('42["echo","' + "x" * 6000 + '"]')
        await ws.send('421["echo","last"]')
        release.set()
        with anyio.fail_after(WAIT):
            assert await ws.receive() == '431["last"]'
            release = anyio.Event()
            await ws.send('42["stall"]')
            for _ in range(12):  # 72 KB: over it
                await ws.send('42["echo","' + "x" * 6000 + '"]')
            assert await ws.expect_close() is None
        [(_, gone, _)] = await rec.wait("disconnect")
        assert gone == sid
        assert len(anysio_log(caplog, "waiting for its handlers")) == 1
