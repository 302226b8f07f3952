"""HTTP/1.1 for the client: long-polling requests and the WebSocket's opening handshake, on h11 (a well-kept
sans-IO HTTP/1.1 library: chunked bodies, keep-alive and the switch to WebSocket are its, not ours)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import anyio.lowlevel
import h11

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_READ = 65536
#: A response body past this is refused: the server's maxPayload is 1 MB by default, a payload holds a few.
MAX_BODY = 100 * 1024 * 1024


class HttpError(Exception):
    """The server's answer was not HTTP, or not what was asked for."""


class Refused(HttpError):
    """The server refused the request: its message (Engine.IO's ``{"code": N, "message": ...}``)."""


def server_message(status: int, body: bytes) -> str:
    """What a refusal says: Engine.IO's JSON error's message, else the status and the start of the body."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str):
        return message
    text = body[:100].decode("utf-8", "replace")
    return f"HTTP {status}" + (f": {text}" if text else "")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is: scheme, host, port, and the Engine.IO path."""

    secure: bool
    host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    #: For https/wss: None verifies the server against the system's certificate authorities.
    ssl_context: ssl.SSLContext | None = None

    async def connect(self) -> anyio.abc.ByteStream:
        if self.secure:
            context = self.ssl_context or ssl.create_default_context()
            return await anyio.connect_tcp(self.host, self.port, tls=True, ssl_context=context)
        return await anyio.connect_tcp(self.host, self.port)

    def request_headers(self, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        host = self.host if self.port in (80, 443) else f"{self.host}:{self.port}"
        return [("Host", host), *self.headers, *extra]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


class HttpConnection:
    """One keep-alive connection for requests one after another (a polling client holds two: GETs and POSTs)."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._stream: anyio.abc.ByteStream | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(self, method: str, query: str, body: bytes = b"") -> Response:
        if self._stream is None or self._h11.our_state is not h11.IDLE:
            await self.aclose()
            self._stream = await self._target.connect()
            self._h11 = h11.Connection(h11.CLIENT)
        stream, conn = self._stream, self._h11
        headers = [("Content-Length", str(len(body)))] if method == "POST" else []
        if method == "POST":
            headers.append(("Content-Type", "text/plain;charset=UTF-8"))
        request = h11.Request(
            method=method, target=f"{self._target.path}?{query}", headers=self._target.request_headers(headers)
        )
        out = conn.send(request) + (conn.send(h11.Data(data=body)) if body else b"") + conn.send(h11.EndOfMessage())
        await stream.send(out)
        status, chunks, size = 0, [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive(_READ)
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise HttpError(f"a response body over {MAX_BODY} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpError("the server closed the connection before its answer")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        return Response(status, b"".join(chunks))

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.aclose()


async def request(conn: HttpConnection, method: str, query: str, body: bytes = b"") -> Response:
    """`conn.request`, with what h11 refuses (not HTTP at all) as HttpError."""
    try:
        return await conn.request(method, query, body)
    except h11.ProtocolError as e:
        await conn.aclose()
        raise HttpError(f"the server's answer is not HTTP/1.1: {e}") from None


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop; None on trio, which runs none (anyio does not depend on sniffio any more)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class DirectReader:
    """Reads a plain TCP socket under trio directly, waiting only when it has nothing. trio's own recv passes
    through the scheduler once more after each read, which added a quarter to an ack's round trip; asyncio's
    stream is fed by the loop's callbacks and needs none of this."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._streak = 0

    async def receive(self) -> bytes:
        while True:
            try:
                data = self._sock.recv(_READ)
            except BlockingIOError:
                self._streak = 0
                await anyio.wait_readable(self._sock)
                continue
            if not data:
                raise anyio.EndOfStream
            self._streak += 1
            if self._streak >= 16:  # a server that never stops sending still lets the others run
                self._streak = 0
                await anyio.lowlevel.checkpoint()
            return data


def _trio_tcp(stream: anyio.abc.ByteStream) -> socket.socket | None:
    """The socket under ``stream`` on trio over plain TCP, which the client reads and writes directly; None on
    asyncio (its transport buffers both ways) and under TLS."""
    if asyncio_loop() is not None or not isinstance(stream, anyio.abc.SocketStream):
        return None
    sock: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    return sock


def send_now(stream: anyio.abc.ByteStream) -> Callable[[bytes], memoryview] | None:
    """On trio over plain TCP, a function that writes what the socket takes at once, without waiting, and returns
    the rest (usually nothing): a write through trio's stream passes through the scheduler, and the caller's
    cancel scope around it cost as much again. None elsewhere."""
    sock = _trio_tcp(stream)
    if sock is None:
        return None

    def send(data: bytes) -> memoryview:
        view = memoryview(data)
        try:
            return view[sock.send(view) :]
        except BlockingIOError:
            return view

    return send


def reader(stream: anyio.abc.ByteStream) -> Callable[[], Awaitable[bytes]]:
    """How to read the WebSocket's stream: a DirectReader on trio over plain TCP, else the stream's receive."""
    sock = _trio_tcp(stream)
    return DirectReader(sock).receive if sock is not None else stream.receive


async def open_websocket(target: Target, query: str) -> tuple[anyio.abc.ByteStream, bytes]:
    """The opening handshake (RFC 6455 4.1): the stream, and the bytes the server sent after its 101."""
    stream = await target.connect()
    try:
        return stream, await _handshake(stream, target, query)
    except BaseException:
        await stream.aclose()
        raise


async def _handshake(stream: anyio.abc.ByteStream, target: Target, query: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    conn = h11.Connection(h11.CLIENT)
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    request = h11.Request(method="GET", target=f"{target.path}?{query}", headers=target.request_headers(headers))
    await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
    status, body = 0, b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive(_READ))
                except anyio.EndOfStream:
                    conn.receive_data(b"")
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                accept = dict(event.headers).get(b"sec-websocket-accept", b"")
                expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
                if accept != expected:
                    raise HttpError("the server's Sec-WebSocket-Accept does not match the key")
                return bytes(conn.trailing_data[0])
            if isinstance(event, h11.Response):
                status = event.status_code
            if isinstance(event, h11.Data) and len(body) < 4096:
                body += event.data
            if isinstance(event, h11.EndOfMessage):
                raise Refused(server_message(status, body))
            if isinstance(event, h11.ConnectionClosed):
                raise HttpError("the server closed the connection before its answer")
    except h11.ProtocolError as e:
        raise HttpError(f"the server's answer is not HTTP/1.1: {e}") from None
