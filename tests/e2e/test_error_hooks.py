"""The ``error`` handlers (a handler that raised, bad input), and Node's engine events ``connection_error``,
``initial_headers`` and ``headers``, with the official client. Every test runs on asyncio and trio."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from anysio import ConnectionErrorInfo, ProtocolError, Request, RequestRefused, Server, Socket
from tests.e2e.conftest import EchoServer
from tests.e2e.conftest import serving as serving_engine
from tests.e2e.eio_helpers import HttpConn, Polling, eio_target, ws_session
from tests.e2e.sio_helpers import Record, node_sio, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
SIO = "/socket.io/"


def failing_server() -> tuple[Server, Record]:
    """ "boom" raises in every namespace; "/" and "/own" have error handlers, "/admin" has none (so "/"'s gets
    its errors)."""
    sio = Server()
    rec = Record()
    for name in ("/", "/admin", "/own"):
        nsp = sio.of(name)

        @nsp.on("boom")
        async def boom(socket: Socket) -> None:
            raise RuntimeError(f"boom in {socket.namespace}")

        @nsp.on("add")
        def add(a: int, b: int) -> int:
            return a + b

    @sio.on("error")
    def main_error(socket: Socket | None, exc: BaseException) -> None:
        rec.add("main", (socket.namespace if socket else None, type(exc).__name__, str(exc)))

    @sio.of("/own").on("error")
    async def own_error(socket: Socket | None, exc: BaseException) -> None:
        rec.add("own", (socket.namespace if socket else None, type(exc).__name__, str(exc)))

    @sio.of("/own").on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        if auth.get("fail"):
            raise KeyError("no such user")

    return sio, rec


async def test_errors_go_to_the_namespaces_error_handler_or_the_servers(caplog: pytest.LogCaptureFixture) -> None:
    sio, rec = failing_server()
    caplog.set_level(logging.INFO, "anysio")
    async with (
        serving(sio) as address,
        node_sio(address) as main,
        node_sio(address, nsp="/admin") as admin,
        node_sio(address, nsp="/own") as own,
    ):
        await main.emit("boom")
        [reply] = await main.call("add", 1, "x")
        assert reply["errors"][0]["loc"] == ["b"]
        await admin.emit("boom")
        await own.emit("boom")
        assert (await rec.wait("own")) == [("/own", "RuntimeError", "boom in /own")]
        main_seen = await rec.wait("main", 3)
        assert main_seen[0] == ("/", "RuntimeError", "boom in /")
        assert main_seen[1][:2] == ("/", "CoercionError")
        assert main_seen[2] == ("/admin", "RuntimeError", "boom in /admin")
        failures = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 3 and all(r.exc_info for r in failures), failures

        # A connect handler that raises refuses the client and is reported.
        async with node_sio(address, nsp="/own", auth={"fail": True}, connected=False) as refused:
            assert (await refused.expect("connect_error"))["message"] == "Internal server error"
        assert (await rec.wait("own", 2))[1] == ("/own", "KeyError", "'no such user'")

        # Bad input no socket is known for: the server's error handler, with a ProtocolError and no socket.
        ws, _ = await ws_session(address, path="/socket.io/")
        await ws.send("42[")
        seen = await rec.wait("main", 4)
        assert seen[3][:2] == (None, "ProtocolError")
        assert len(rec.values("own")) == 2
        await ws.aclose()


async def test_protocol_error_carries_the_peer_address() -> None:
    sio = Server()
    errors: list[BaseException] = []
    rec = Record()

    @sio.on("error")
    def error(socket: Socket | None, exc: BaseException) -> None:
        errors.append(exc)
        rec.add("error")

    async with serving(sio) as address:
        conn = await HttpConn.open(address)
        res = await conn.request("GET", "/nowhere")
        assert res.status == 404
        await rec.wait("error")
        [exc] = errors
        assert isinstance(exc, ProtocolError) and exc.remote is not None and exc.remote[0] == "127.0.0.1"
        await conn.aclose()


async def test_connection_error_with_nodes_codes_and_messages() -> None:
    def allow(request: Request) -> bool:
        if request.query.get("who") == "mallory":
            raise RequestRefused("not you")
        return True

    sio = Server(transports=["polling"], allow_request=allow)
    rec = Record()

    @sio.engine.on("connection_error")
    def connection_error(err: ConnectionErrorInfo) -> None:
        rec.add("err", (err.code, err.message, err.context, err.req.method))

    async with serving(sio) as address:
        async with node_sio(address, transports="websocket", connected=False, reconnection=False) as ws_client:
            await ws_client.expect("connect_error")
        assert (await rec.wait("err"))[0] == (0, "Transport unknown", {"transport": "websocket"}, "GET")
        conn = await HttpConn.open(address)
        for target, method, expected in (
            (eio_target(SIO, sid="nope"), "GET", (1, "Session ID unknown", {"sid": "nope"}, "GET")),
            (eio_target(SIO), "POST", (2, "Bad handshake method", {"method": "POST"}, "POST")),
            (eio_target(SIO, who="mallory"), "GET", (4, "Forbidden", {"message": "not you"}, "GET")),
            (eio_target(SIO, EIO="3"), "GET", (5, "Unsupported protocol version", {"protocol": 3}, "GET")),
        ):
            before = len(rec.values("err"))
            res = await conn.request(method, target)
            assert res.status in (400, 403), res
            assert (await rec.wait("err", before + 1))[-1] == expected
        await conn.aclose()


async def test_headers_events_set_a_cookie_the_client_sends_back() -> None:
    sio = Server(cookie=True)
    rec = Record()

    @sio.engine.on("initial_headers")
    def initial(headers: dict[str, Any], request: Request) -> None:
        rec.add("initial", dict(headers))
        headers["Set-Cookie"] = [headers["Set-Cookie"], "tag=xyz; Path=/"]

    @sio.engine.on("headers")
    def every(headers: dict[str, Any], request: Request) -> None:
        headers["X-Anysio"] = "yes"
        if "sid" in request.query:
            rec.add("later", (request.query.get("transport"), request.header("cookie")))

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with serving(sio) as address:
        async with node_sio(address, with_credentials=True) as client:
            assert await client.call("echo", 1) == [1]
            sid = client.all("connect")[0]["id"]
            [initial_seen] = rec.values("initial")
            assert str(initial_seen["Set-Cookie"]).startswith("io=")
            later = await rec.wait("later")
            assert all(cookie is not None and "tag=xyz" in cookie for _, cookie in later), later
            assert sio.sockets[sid].handshake.headers.get("cookie") is None
        p = await Polling.connect(address, path=SIO)
        assert p.handshake.header("x-anysio") == "yes"
        cookies = [v for k, v in p.handshake.headers if k.lower() == "set-cookie"]
        assert len(cookies) == 2 and cookies[1] == "tag=xyz; Path=/", cookies
        await p.aclose()


async def test_the_engineio_server_has_the_same_engine_events() -> None:
    echo = EchoServer()
    server = echo.eio
    rec = Record()

    @server.engine.on("connection_error")
    def connection_error(err: ConnectionErrorInfo) -> None:
        rec.add("err", (err.code, err.message, err.req.path))

    @server.engine.on("headers")
    def headers(headers: dict[str, Any], request: Request) -> None:
        headers["X-Session"] = "initial" if "sid" not in request.query else "later"

    async with serving_engine(echo):
        address = echo.address
        p = await Polling.connect(address)
        assert p.handshake.header("x-session") == "initial"
        await p.send("hello")
        res = await p.get()
        assert (res.text, res.header("x-session")) == ("4hello", "later")
        conn = await HttpConn.open(address)
        res = await conn.request("GET", eio_target(transport="carrier-pigeon"))
        assert res.status == 400
        assert await rec.wait("err") == [(0, "Transport unknown", "/engine.io/")]
        await conn.aclose()
        await p.aclose()
