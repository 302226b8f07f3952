"""Engine.IO over real sockets: handshakes, every error answer, polling and WebSocket data, server options."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from anysio import Cookie, Request, RequestRefused
from tests.e2e.conftest import SPEC_OPTIONS, EchoServer, anysio_lines, serving
from tests.e2e.eio_helpers import (
    HttpConn,
    Polling,
    WsConn,
    eio_target,
    load_vectors,
    ws_echo,
    ws_headers,
    ws_session,
)

pytestmark = pytest.mark.anyio
V = load_vectors("engineio_server.json")


async def test_polling_handshake() -> None:
    v = V["handshake"]["polling"]
    async with serving(EchoServer(**SPEC_OPTIONS)) as srv:
        with anyio.fail_after(5):
            conn = await HttpConn.open(srv.address)
            await conn.send(v["request"])
            res = await conn.read_response()
            sid = json.loads(res.text[1:])["sid"]
            assert res.status == v["status"]
            assert res.header("content-type") == v["content_type"]
            assert res.text == v["body"].replace("<sid>", sid)
            assert res.header("set-cookie") is None, "cookie is off by default"
            await srv.wait_for(lambda: srv.opened)
            assert (srv.opened[0].sid, srv.opened[0].transport) == (sid, "polling")
            assert srv.eio.count == 1
            # The connection is kept alive: a second request goes over it.
            res = await conn.request("GET", eio_target(sid=sid + "x"))
            assert res.status == 400
            await conn.aclose()


async def test_websocket_handshake() -> None:
    v = V["handshake"]["websocket"]
    async with serving(EchoServer(**SPEC_OPTIONS)) as srv:
        with anyio.fail_after(5):
            ws, res = await WsConn.connect(srv.address, eio_target(transport="websocket"))
            first = await ws.receive()
            assert isinstance(first, str)
            sid = json.loads(first[1:])["sid"]
            assert first == v["first_frame"].replace("<sid>", sid)
            assert res.header("upgrade") == "websocket"
            await srv.wait_for(lambda: srv.opened)
            assert srv.opened[0].transport == "websocket"
            await ws.aclose()
            assert await srv.closed_reason(sid) == "transport close"


@pytest.mark.parametrize("case", V["errors"], ids=[c["name"] for c in V["errors"]])
async def test_error_responses(case: dict[str, Any], eio_log: pytest.LogCaptureFixture) -> None:
    async with serving(EchoServer(**SPEC_OPTIONS)) as srv:
        with anyio.fail_after(5):
            request = case["request"]
            if case.get("session"):
                polling = await Polling.connect(srv.address)
                request = request.replace("<sid>", polling.sid)
            before = len(anysio_lines(eio_log))
            conn = await HttpConn.open(srv.address)
            await conn.send(request)
            res = await conn.read_response()
            assert res.status == case["status"]
            if "json" in case:
                assert res.json() == case["json"]
                assert res.header("content-type") == "application/json"
            else:
                assert res.text == case["text"]
            if case.get("close"):
                assert await conn.read_until_closed() == b""
            else:
                # Still usable: a handshake on the same connection.
                assert (await conn.request("GET", eio_target())).status == 200
            assert len(anysio_lines(eio_log)[before:]) == 1
            await conn.aclose()


async def test_polling_send_and_receive() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            await p.send("hello", "€uro")
            assert await p.receive() == ["4hello", "4€uro"]
            await srv.wait_for(lambda: len(srv.messages) == 2)
            assert srv.messages == [(p.sid, "hello"), (p.sid, "€uro")]
            # A GET parks until the server has something; a server-side send releases it.
            conn = await p.park_get()
            assert srv.eio.send(p.sid, "pushed")
            res = await conn.read_response()
            assert res.text == "4pushed"
            await p.aclose()


async def test_binary_on_polling() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            await p.send(b"\x00\x01\xfe\xff", "text")
            assert await p.receive() == [b"\x00\x01\xfe\xff", "4text"]
            assert srv.messages[0] == (p.sid, b"\x00\x01\xfe\xff")
            # On the wire: "b" then standard base64.
            srv.eio.send(p.sid, b"\x01\x02\x03")
            assert (await p.get()).text == "bAQID"
            await p.aclose()


async def test_binary_on_websocket() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            ws, open_ = await ws_session(srv.address)
            await ws_echo(ws, b"\x00\xff" * 1000)
            await ws_echo(ws, "and text")
            assert srv.messages == [(open_["sid"], b"\x00\xff" * 1000), (open_["sid"], "and text")]
            await ws.aclose()


@pytest.mark.parametrize("case", V["posts"], ids=[repr(c["body"]) for c in V["posts"]])
async def test_post_payloads(case: dict[str, Any]) -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            res = await p.post(case["body"], content_type=case.get("content_type", "text/plain;charset=UTF-8"))
            assert res.status == case.get("status", 200)
            if "close" in case:
                assert await srv.closed_reason(p.sid) == case["close"]
                res = await p.get()
                assert res.json() == {"code": 1, "message": "Session ID unknown"}
            elif "echo" in case:
                assert (await p.get()).text == case["echo"]
            else:
                await p.send("still open")
                assert await p.receive() == ["4still open"]
            await p.aclose()


@pytest.mark.parametrize("case", V["ws_frames"], ids=[json.dumps(c) for c in V["ws_frames"]])
async def test_websocket_frames(case: dict[str, Any]) -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            ws, open_ = await ws_session(srv.address)
            await ws.send(case["text"] if "text" in case else bytes.fromhex(case["binary"]))
            if "close" in case:
                assert await ws.expect_close() is None
                assert await srv.closed_reason(open_["sid"]) == case["close"]
            elif "echo" in case:
                echo = case["echo"]
                assert await ws.receive() == (echo["text"] if "text" in echo else bytes.fromhex(echo["binary"]))
            else:
                await ws_echo(ws, "still open")
            await ws.aclose()


@pytest.mark.parametrize("case", V["cors"], ids=[json.dumps(c) for c in V["cors"]])
async def test_cors_headers(case: dict[str, Any]) -> None:
    options = {"cors_allowed_origins": case["origins"], "cors_credentials": case["credentials"]}
    async with serving(EchoServer(**options)) as srv:
        with anyio.fail_after(5):
            conn = await HttpConn.open(srv.address)
            headers = {"Origin": case["origin"]} if case["origin"] else {}
            res = await conn.request("GET", eio_target(), headers=headers)
            assert res.status == 200
            for name, value in case["headers"].items():
                assert res.header(name) == value, name
            await conn.aclose()


async def test_cors_preflight() -> None:
    v = V["preflight"]
    async with serving(EchoServer(cors_allowed_origins="*")) as srv:
        with anyio.fail_after(5):
            conn = await HttpConn.open(srv.address)
            await conn.send(v["request"])
            res = await conn.read_response()
            assert (res.status, res.body) == (v["status"], b"")
            for name, value in v["headers"].items():
                assert res.header(name) == value, name
            assert srv.eio.count == 0
            await conn.aclose()


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_cookie(transport: str) -> None:
    async with serving(EchoServer(cookie=True)) as srv:
        with anyio.fail_after(5):
            if transport == "polling":
                p = await Polling.connect(srv.address)
                sid, res = p.sid, p.handshake
            else:
                ws, res = await WsConn.connect(srv.address, eio_target(transport="websocket"))
                first = await ws.receive()
                sid = json.loads(first[1:])["sid"]
            assert res.header("set-cookie") == V["cookie"]["set_cookie"].replace("<sid>", sid)
    async with serving(EchoServer(cookie=Cookie(name="eio", path="/app", same_site=None))) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert p.handshake.header("set-cookie") == f"eio={p.sid}; Path=/app; HttpOnly"


@pytest.mark.parametrize("verdict", [False, "not you", RequestRefused("nor you"), "async"])
async def test_allow_request_refusal(verdict: Any) -> None:
    seen: list[Request] = []

    async def deny_async(request: Request) -> bool:
        await anyio.lowlevel.checkpoint()
        return False

    def allow(request: Request) -> bool | str:
        seen.append(request)
        if isinstance(verdict, Exception):
            raise verdict
        assert verdict != "async"
        return verdict  # type: ignore[no-any-return]

    hook = deny_async if verdict == "async" else allow
    message = {False: "Forbidden", "not you": "not you", "async": "Forbidden"}.get(verdict, "nor you")
    async with serving(EchoServer(allow_request=hook)) as srv:
        with anyio.fail_after(5):
            conn = await HttpConn.open(srv.address)
            res = await conn.request("GET", eio_target(), headers={"X-Who": "me"})
            assert (res.status, res.json()) == (403, {"code": 4, "message": message})
            if seen:
                assert seen[0].header("x-who") == "me"
                assert seen[0].query["transport"] == "polling"
            # WebSocket handshakes are refused the way Node's abortUpgrade does it.
            ws = await HttpConn.open(srv.address)
            res = await ws.request("GET", eio_target(transport="websocket"), headers=ws_headers())
            assert (res.status, res.text) == (400, message)
            assert await ws.read_until_closed() == b""
            assert srv.eio.count == 0


async def test_allow_request_and_generate_id_accept() -> None:
    async def generate_id(request: Request) -> str:
        return "custom-" + request.query["transport"]

    async with serving(EchoServer(allow_request=lambda r: True, generate_id=generate_id)) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert p.sid == "custom-polling"
            await p.send("hi")
            assert await p.receive() == ["4hi"]


async def test_connection_limit() -> None:
    async with serving(EchoServer(max_connections=2)) as srv:
        with anyio.fail_after(5):
            first = await Polling.connect(srv.address)
            ws, _ = await ws_session(srv.address)
            conn = await HttpConn.open(srv.address)
            res = await conn.request("GET", eio_target())
            assert (res.status, res.json()) == (503, {"code": 4, "message": "Connection limit reached"})
            srv.eio.close(first.sid)
            await srv.closed_reason(first.sid)
            assert (await conn.request("GET", eio_target())).status == 200
            await ws_echo(ws, "the others keep working")


async def test_max_payload_on_polling() -> None:
    async with serving(EchoServer(max_payload=1000)) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert p.open["maxPayload"] == 1000
            await p.send("x" * 999)
            assert await p.receive() == ["4" + "x" * 999]
            res = await p.post("4" + "x" * 1000)
            assert res.status == 413
            # The connection is closed (the rest of the body is not read); the session lives on.
            assert p._post is not None and await p._post.read_until_closed() == b""
            p._post = None
            await p.send("after")
            assert await p.receive() == ["4after"]
            assert srv.closed == []


async def test_max_payload_on_websocket() -> None:
    async with serving(EchoServer(max_payload=1000)) as srv:
        with anyio.fail_after(5):
            ws, open_ = await ws_session(srv.address)
            await ws_echo(ws, "x" * 999)
            await ws.send(b"x" * 1001)
            assert await ws.expect_close() == 1009
            assert await srv.closed_reason(open_["sid"]) == "transport error"


PACKETS = load_vectors("engineio_packets.json")
MESSAGE_PAYLOADS = [
    c["wire"].replace("\\x1e", "\x1e") for c in PACKETS["payloads"] if all(p["type"] == "message" for p in c["packets"])
]
INVALID_PAYLOADS = [w.replace("\\x1e", "\x1e") for w in PACKETS["invalid_payloads"]]


@pytest.mark.parametrize("wire", MESSAGE_PAYLOADS, ids=repr)
async def test_payload_vectors_are_echoed_as_sent(wire: str) -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert (await p.post(wire)).status == 200
            assert (await p.get()).text == wire


@pytest.mark.parametrize("wire", INVALID_PAYLOADS, ids=repr)
async def test_invalid_payload_vectors_close_the_session(wire: str) -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            assert (await p.post(wire)).status == 200
            assert await srv.closed_reason(p.sid) == "parse error"


async def test_chunked_post() -> None:
    async with serving(EchoServer()) as srv:
        with anyio.fail_after(5):
            p = await Polling.connect(srv.address)
            conn = await HttpConn.open(srv.address)
            await conn.send(
                f"POST {p.target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\n4he\r\n4\r\nllo!\r\n0\r\n\r\n"
            )
            assert (await conn.read_response()).text == "ok"
            assert (await p.get()).text == "4hello!"
