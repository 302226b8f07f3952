"""Raw HTTP/1.1 and WebSocket clients on anyio streams, for tests that choose every byte they send.

``HttpConn`` is one keep-alive connection (requests, raw bytes, responses, the server's close). ``WsConn`` is
the client side of a WebSocket over such a connection (masked frames out, the server's frames in).
``Polling`` and ``ws_session`` are Engine.IO sessions driven by hand on top of them. Every read is bounded by
the caller's ``anyio.fail_after``; nothing here sleeps.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
EIO_PATH = "/engine.io/"
SEP = "\x1e"

Address = tuple[str, int]
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def eio_target(path: str = EIO_PATH, **query: str) -> str:
    """``/engine.io/?EIO=4&transport=polling&...``: EIO and transport default to 4 and polling."""
    params = {"EIO": "4", "transport": "polling", **query}
    return f"{path}?{urlencode(params)}"


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    """Names lower-cased, in the order sent."""
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


_opened: ContextVar[list[HttpConn] | None] = ContextVar("_opened", default=None)


@asynccontextmanager
async def closing_connections() -> AsyncIterator[None]:
    """Close every connection the body opened (and did not close) when it ends; nested, the outermost does."""
    if _opened.get() is not None:
        yield
        return
    token = _opened.set([])
    try:
        yield
    finally:
        conns = _opened.get() or []
        _opened.reset(token)
        with anyio.CancelScope(shield=True):
            for conn in conns:
                await conn.aclose()


class HttpConn:
    """One TCP connection speaking HTTP/1.1 (keep-alive) to the server under test."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        if (opened := _opened.get()) is not None:
            opened.append(self)

    @classmethod
    async def open(cls, address: Address) -> HttpConn:
        return cls(await anyio.connect_tcp(*address))

    async def send(self, data: bytes | str) -> None:
        await self.stream.send(data.encode() if isinstance(data, str) else data)

    async def request(self, method: str, target: str, *, headers: Headers = (), body: bytes | str = b"") -> Response:
        await self.send(encode_request(method, target, headers=headers, body=body))
        return await self.read_response()

    async def read_response(self) -> Response:
        head = await self.reader.receive_until(b"\r\n\r\n", 64 * 1024)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = [(k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines)]
        res = Response(status, headers, b"")
        if res.header("transfer-encoding") == "chunked":
            res.body = await self._read_chunked()
        elif (length := res.header("content-length")) is not None:
            res.body = await self.reader.receive_exactly(int(length))
        elif not (status < 200 or status in (204, 304)):
            res.body = await self.read_until_closed()
        return res

    async def _read_chunked(self) -> bytes:
        body = b""
        while size := int((await self.reader.receive_until(b"\r\n", 1024)).split(b";")[0], 16):
            body += await self.reader.receive_exactly(size)
            await self.reader.receive_exactly(2)
        await self.reader.receive_until(b"\r\n", 1024)  # the empty line after the last chunk
        return body

    async def read_until_closed(self) -> bytes:
        """Everything until the server closes the connection (the caller bounds the wait)."""
        data = b""
        while True:
            try:
                data += await self.reader.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return data

    async def aclose(self) -> None:
        await self.stream.aclose()


def encode_request(method: str, target: str, *, headers: Headers = (), body: bytes | str = b"") -> bytes:
    body = body.encode() if isinstance(body, str) else body
    fields = list(headers.items() if isinstance(headers, Mapping) else headers)
    names = {k.lower() for k, _ in fields}
    if "host" not in names:
        fields.insert(0, ("Host", "127.0.0.1"))
    if body or method in ("POST", "PUT"):
        fields.append(("Content-Length", str(len(body))))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    return head.encode("latin-1") + body


# ---- WebSocket -------------------------------------------------------------------------------------------

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ws_headers(key: str = WS_KEY, version: str = "13") -> list[tuple[str, str]]:
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
    ]


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0, length: int | None = None
) -> bytes:
    """A client frame. ``length`` overrides the announced payload length (for lying frames)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@dataclass
class Frame:
    opcode: int
    payload: bytes
    #: RSV1: the payload is compressed (permessage-deflate).
    rsv1: bool = False

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


class WsClosed(Exception):
    """The server sent a close frame (``code`` is None for an empty one) or closed the TCP connection."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class WsConn:
    """The client side of a WebSocket: the server's frames are unmasked and never fragmented."""

    def __init__(self, http: HttpConn) -> None:
        self.http = http

    @classmethod
    async def connect(cls, address: Address, target: str, *, headers: Headers = ()) -> tuple[WsConn, Response]:
        http = await HttpConn.open(address)
        res = await http.request("GET", target, headers=[*ws_headers(), *dict(headers).items()])
        assert res.status == 101, res
        assert res.header("sec-websocket-accept") == WS_ACCEPT
        return cls(http), res

    async def send_frame(self, opcode: int, payload: bytes | str, **kw: Any) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        await self.http.send(encode_frame(opcode, data, **kw))

    async def send(self, data: str | bytes) -> None:
        """A text frame for str, a binary frame for bytes."""
        await self.send_frame(TEXT if isinstance(data, str) else BINARY, data)

    async def receive_frame(self) -> Frame:
        reader = self.http.reader
        try:
            b0, b1 = await reader.receive_exactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await reader.receive_exactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await reader.receive_exactly(8))
            payload = await reader.receive_exactly(n) if n else b""
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            raise WsClosed(None) from None
        assert b1 & 0x80 == 0, "server frames are not masked"
        assert b0 & 0x80, "the server does not fragment"
        return Frame(b0 & 0x0F, payload, rsv1=bool(b0 & 0x40))

    async def receive(self) -> str | bytes:
        """The next text or binary message; WsClosed on a close frame."""
        while True:
            frame = await self.receive_frame()
            if frame.opcode == CLOSE:
                raise WsClosed(frame.close_code)
            if frame.opcode == TEXT:
                return frame.payload.decode()
            if frame.opcode == BINARY:
                return frame.payload

    async def expect_close(self) -> int | None:
        """Skip messages until the server's close frame, then wait for it to close TCP; the close code."""
        try:
            while True:
                await self.receive()
        except WsClosed as e:
            await self.http.read_until_closed()
            return e.code

    async def aclose(self) -> None:
        await self.http.aclose()


# ---- Engine.IO -------------------------------------------------------------------------------------------


def encode_payload(messages: Iterable[str | bytes]) -> str:
    """Messages as a polling payload: ``4<text>`` or ``b<base64>``, joined by the record separator."""
    return SEP.join("b" + base64.b64encode(m).decode() if isinstance(m, bytes) else "4" + m for m in messages)


def decode_payload(body: str) -> list[str | bytes]:
    """A polling payload as packets: binary messages as bytes, every other packet as its text."""
    return [base64.b64decode(p[1:]) if p.startswith("b") else p for p in body.split(SEP)]


class Polling:
    """An Engine.IO session over long-polling, driven by hand: one connection for GETs, one for POSTs."""

    def __init__(self, address: Address, handshake: Response, path: str) -> None:
        self.address = address
        self.handshake = handshake
        self.open: dict[str, Any] = json.loads(handshake.text[1:])
        self.sid: str = self.open["sid"]
        self.path = path
        self._get: HttpConn | None = None
        self._post: HttpConn | None = None

    @classmethod
    async def connect(cls, address: Address, *, path: str = EIO_PATH, headers: Headers = ()) -> Polling:
        conn = await HttpConn.open(address)
        res = await conn.request("GET", eio_target(path), headers=headers)
        assert res.status == 200 and res.text.startswith("0{"), res
        await conn.aclose()
        return cls(address, res, path)

    @property
    def target(self) -> str:
        return eio_target(self.path, sid=self.sid)

    async def start_get(self) -> HttpConn:
        """Send a GET and return its connection without waiting for the answer (which may be parked)."""
        if self._get is None:
            self._get = await HttpConn.open(self.address)
        await self._get.send(encode_request("GET", self.target))
        return self._get

    async def park_get(self) -> HttpConn:
        """Send a GET the server will hold, and know the server has read it: the server reads every ready socket
        before it writes, so the answer to a POST sent after the GET proves the GET was read."""
        conn = await self.start_get()
        res = await self.post("6")
        assert res.status == 200, res
        return conn

    async def get(self) -> Response:
        conn = await self.start_get()
        return await conn.read_response()

    async def post(self, body: str | bytes, *, content_type: str = "text/plain;charset=UTF-8") -> Response:
        if self._post is None:
            self._post = await HttpConn.open(self.address)
        headers = [("Content-Type", content_type)]
        return await self._post.request("POST", self.target, headers=headers, body=body)

    async def send(self, *messages: str | bytes) -> None:
        res = await self.post(encode_payload(messages))
        assert (res.status, res.body) == (200, b"ok"), res

    async def receive(self) -> list[str | bytes]:
        """The packets of the next GET, pings answered and left out (so a slow test does not time out)."""
        while True:
            res = await self.get()
            assert res.status == 200, res
            packets = decode_payload(res.text)
            if "2" in packets:
                await self.post("3")
                packets = [p for p in packets if p != "2"]
            if packets:
                return packets

    async def aclose(self) -> None:
        for conn in (self._get, self._post):
            if conn is not None:
                await conn.aclose()


async def ws_session(address: Address, *, path: str = EIO_PATH, headers: Headers = ()) -> tuple[WsConn, dict[str, Any]]:
    """A WebSocket-only session: the connection, and the handshake from its first frame."""
    ws, _ = await WsConn.connect(address, eio_target(path, transport="websocket"), headers=headers)
    first = await ws.receive()
    assert isinstance(first, str) and first.startswith("0{"), first
    return ws, json.loads(first[1:])


async def ws_echo(ws: WsConn, data: str | bytes) -> None:
    """Send one message on an Engine.IO WebSocket and check that the echo comes back (pings answered)."""
    await ws.send("4" + data if isinstance(data, str) else data)
    while (got := await ws.receive()) == "2":
        await ws.send("3")
    assert got == ("4" + data if isinstance(data, str) else data), got
