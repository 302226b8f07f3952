"""Bad input over real sockets. Each gets the spec's (or Node's) answer or a clean close, and exactly one log
line on the "anysio" logger; an open session on another connection keeps echoing, and the server keeps serving.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import anyio
import pytest

from tests.e2e.conftest import EchoServer, anysio_lines, serving
from tests.e2e.eio_helpers import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    HttpConn,
    Polling,
    WsConn,
    eio_target,
    encode_request,
    ws_echo,
    ws_headers,
    ws_session,
)

pytestmark = pytest.mark.anyio
MAX_PAYLOAD = 1000

Case = Callable[[EchoServer], Awaitable[None]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


async def expect_http_close(srv: EchoServer, data: bytes | str, status: int) -> None:
    conn = await HttpConn.open(srv.address)
    await conn.send(data)
    res = await conn.read_response()
    assert (res.status, res.header("connection")) == (status, "close")
    assert await conn.read_until_closed() == b""


async def expect_ws_close(srv: EchoServer, frame: bytes, code: int | None, reason: str) -> None:
    ws, open_ = await ws_session(srv.address)
    await ws.http.send(frame)
    assert await ws.expect_close() == code
    assert await srv.closed_reason(open_["sid"]) == reason


@case
async def garbage_request_line(srv: EchoServer) -> None:
    await expect_http_close(srv, b"GARBAGE\r\n\r\n", 400)


@case
async def tls_client_hello(srv: EchoServer) -> None:
    await expect_http_close(srv, bytes.fromhex("16030100a5010000a10303") + b"\x00" * 32, 400)


@case
async def truncated_request(srv: EchoServer) -> None:
    conn = await HttpConn.open(srv.address)
    await conn.send(b"GET /engine.io/?EIO=4&transport=pol")
    await conn.stream.send_eof()
    assert await conn.read_until_closed() == b""


@case
async def bad_header_line(srv: EchoServer) -> None:
    await expect_http_close(srv, f"GET {eio_target()} HTTP/1.1\r\nno colon here\r\n\r\n", 400)


@case
async def oversized_headers(srv: EchoServer) -> None:
    big = encode_request("GET", eio_target(), headers={"X-Big": "a" * 17_000})
    await expect_http_close(srv, big, 431)


@case
async def smuggling_framing(srv: EchoServer) -> None:
    headers = {"Content-Length": "3", "Transfer-Encoding": "chunked"}
    await expect_http_close(srv, encode_request("GET", eio_target(), headers=headers) + b"abc", 400)


@case
async def bad_chunk_size(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    head = f"POST {p.target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    await expect_http_close(srv, head, 400)


@case
async def post_over_max_payload(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    res = await p.post("4" + "x" * MAX_PAYLOAD)
    assert res.status == 413
    assert p._post is not None and await p._post.read_until_closed() == b""
    p._post = None
    await p.send("the session lives")
    assert await p.receive() == ["4the session lives"]


@case
async def input_behind_a_parked_get(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    conn = await p.park_get()
    # More than a request head and a body of max_payload can hold: nothing legitimate sends this.
    await conn.send(b"x" * (16 * 1024 + MAX_PAYLOAD + 1))
    assert await conn.read_until_closed() == b""
    assert await srv.closed_reason(p.sid) == "transport error"


@case
async def unmasked_frame(srv: EchoServer) -> None:
    await expect_ws_close(srv, bytes([0x81, 3]) + b"4hi", 1002, "transport error")


@case
async def unknown_opcode(srv: EchoServer) -> None:
    await expect_ws_close(srv, bytes([0x83, 0x80]) + b"\0\0\0\0", 1002, "transport error")


@case
async def rsv_bit(srv: EchoServer) -> None:
    ws_frame = bytes([0xC1, 0x80]) + b"\0\0\0\0"
    await expect_ws_close(srv, ws_frame, 1002, "transport error")


@case
async def invalid_utf8(srv: EchoServer) -> None:
    await expect_ws_close(srv, bytes([0x81, 0x83, 0, 0, 0, 0]) + b"4\xff\xfe", 1007, "transport error")


@case
async def frame_over_max_payload(srv: EchoServer) -> None:
    ws_frame = bytes([0x82, 0x80 | 126]) + struct.pack("!H", MAX_PAYLOAD + 1) + b"\0\0\0\0" + b"x" * 1001
    await expect_ws_close(srv, ws_frame, 1009, "transport error")


@case
async def frame_announcing_a_terabyte(srv: EchoServer) -> None:
    ws_frame = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\0\0\0\0"
    await expect_ws_close(srv, ws_frame, 1009, "transport error")


@case
async def oversized_ping_frame(srv: EchoServer) -> None:
    ws_frame = bytes([0x80 | PING, 0x80 | 126]) + struct.pack("!H", 200) + b"\0\0\0\0" + b"p" * 200
    await expect_ws_close(srv, ws_frame, 1002, "transport error")


@case
async def one_byte_close_frame(srv: EchoServer) -> None:
    await expect_ws_close(srv, bytes([0x80 | CLOSE, 0x81, 0, 0, 0, 0, 3]), 1002, "transport error")


@case
async def continuation_without_start(srv: EchoServer) -> None:
    await expect_ws_close(srv, bytes([0x80, 0x82, 0, 0, 0, 0]) + b"4x", 1002, "transport error")


@case
async def text_inside_a_fragmented_binary(srv: EchoServer) -> None:
    frames = bytes([BINARY, 0x81, 0, 0, 0, 0, 1]) + bytes([0x80 | TEXT, 0x82, 0, 0, 0, 0]) + b"4x"
    await expect_ws_close(srv, frames, 1002, "transport error")


@case
async def malformed_polling_payload(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    res = await p.post("4a\x1e\x1e4b")
    assert (res.status, res.body) == (200, b"ok")
    assert await srv.closed_reason(p.sid) == "parse error"


@case
async def malformed_websocket_packet(srv: EchoServer) -> None:
    ws, open_ = await ws_session(srv.address)
    await ws.send("9 is no packet type")
    assert await ws.expect_close() is None
    assert await srv.closed_reason(open_["sid"]) == "parse error"


@case
async def ping_from_the_client(srv: EchoServer) -> None:
    ws, open_ = await ws_session(srv.address)
    await ws.send("2")
    assert await ws.expect_close() is None
    assert await srv.closed_reason(open_["sid"]) == "transport error"


@case
async def binary_post(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    res = await p.post(b"\x04hello", content_type="application/octet-stream")
    assert res.status == 400
    assert await srv.closed_reason(p.sid) == "transport error"


@case
async def unknown_session_get(srv: EchoServer) -> None:
    conn = await HttpConn.open(srv.address)
    res = await conn.request("GET", eio_target(sid="nobody"))
    assert (res.status, res.json()) == (400, {"code": 1, "message": "Session ID unknown"})


@case
async def unknown_session_post(srv: EchoServer) -> None:
    conn = await HttpConn.open(srv.address)
    res = await conn.request("POST", eio_target(sid="nobody"), body="4hello")
    assert (res.status, res.json()["code"]) == (400, 1)


@case
async def unknown_session_websocket(srv: EchoServer) -> None:
    conn = await HttpConn.open(srv.address)
    res = await conn.request("GET", eio_target(transport="websocket", sid="nobody"), headers=ws_headers())
    assert (res.status, res.text, res.header("connection")) == (400, "Session ID unknown", "close")
    assert await conn.read_until_closed() == b""


@case
async def second_get(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    first = await p.park_get()
    conn = await HttpConn.open(srv.address)
    res = await conn.request("GET", p.target)
    assert (res.status, res.body) == (400, b"")
    assert (await first.read_response()).text == "1"
    assert await srv.closed_reason(p.sid) == "transport error"


@case
async def second_websocket_for_a_session(srv: EchoServer) -> None:
    p = await Polling.connect(srv.address)
    ws, _ = await WsConn.connect(srv.address, eio_target(transport="websocket", sid=p.sid))
    again, _ = await WsConn.connect(srv.address, eio_target(transport="websocket", sid=p.sid))
    assert await again.expect_close() is None
    # The first probe goes on.
    await ws.send("2probe")
    assert await ws.receive() == "3probe"


@pytest.mark.parametrize("name", CASES)
async def test_bad_input(name: str, eio_log: pytest.LogCaptureFixture) -> None:
    async with serving(EchoServer(max_payload=MAX_PAYLOAD)) as srv:
        with anyio.fail_after(10):
            witness, _ = await ws_session(srv.address)
            await ws_echo(witness, "before")
            before = len(anysio_lines(eio_log))
            await CASES[name](srv)
            await ws_echo(witness, "after")
            await ws_echo(witness, b"\x00after")
            lines = anysio_lines(eio_log)[before:]
            assert len(lines) == 1, lines
            assert lines[0].startswith("bad input from ('127.0.0.1', "), lines
            # The server still accepts new sessions.
            p = await Polling.connect(srv.address)
            await p.send("new")
            assert await p.receive() == ["4new"]
            assert len(srv.closed) <= 1
