"""Compression as Node's socket.io does it: WebSocket permessage-deflate (RFC 7692) negotiated with clients that
offer it (``per_message_deflate=``, off by default, 1024-byte threshold), and gzip or deflate of long-polling
responses by Accept-Encoding (``http_compression=``, on by default, 1024-byte threshold). The official client
judges the messages; a raw client reads the frames' RSV1 bit and the responses' Content-Encoding. Every test runs
on asyncio and trio."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anysio import Emitter, RedisCluster, Server, Socket
from tests.e2e.cluster_helpers import redis_server
from tests.e2e.conftest import EchoServer, anysio_lines
from tests.e2e.conftest import serving as serving_eio
from tests.e2e.eio_helpers import (
    BINARY,
    TEXT,
    HttpConn,
    Polling,
    WsConn,
    eio_target,
    encode_frame,
    encode_payload,
    ws_headers,
)
from tests.e2e.sio_helpers import demo_server, node_sio, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
OFFER = "permessage-deflate; client_max_window_bits"
BIG = "chat message " * 300  # 3,900 bytes: over Node's threshold
SMALL = "hi"


@asynccontextmanager
async def echo_server(**options: Any) -> AsyncIterator[EchoServer]:
    """An Engine.IO echo server with these options, on an ephemeral port."""
    async with serving_eio(EchoServer(**options)) as server:
        yield server


class DeflateWs:
    """The client's half of permessage-deflate over a raw WebSocket (zlib, raw DEFLATE, context kept)."""

    def __init__(self, ws: WsConn, *, server_context: bool = True) -> None:
        self.ws = ws
        self.server_context = server_context
        self.inflate = zlib.decompressobj(-15)
        self.deflate = zlib.compressobj(wbits=-15)

    async def send_compressed(self, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        payload = self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(b"\x00\x00\xff\xff")
        opcode = TEXT if isinstance(data, str) else BINARY
        await self.ws.http.send(encode_frame(opcode, payload[:-4], rsv=4))

    async def receive(self) -> tuple[str | bytes, bool]:
        """The next message, and whether it came compressed (RSV1); pings answered."""
        while True:
            frame = await self.ws.receive_frame()
            payload = frame.payload
            if frame.rsv1:
                if not self.server_context:
                    self.inflate = zlib.decompressobj(-15)
                payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
            data = payload.decode() if frame.opcode == TEXT else payload
            if data == "2":
                await self.ws.send("3")
                continue
            return data, frame.rsv1


async def deflate_session(address: Any, offer: str = OFFER, path: str = "/engine.io/") -> tuple[DeflateWs, str | None]:
    """A WebSocket-only Engine.IO session that offers permessage-deflate; the extension the server answered."""
    target = eio_target(path, transport="websocket")
    ws, res = await WsConn.connect(address, target, headers=[("Sec-WebSocket-Extensions", offer)])
    client = DeflateWs(ws, server_context="server_no_context_takeover" not in offer)
    opened, compressed = await client.receive()
    assert isinstance(opened, str) and opened.startswith("0{") and not compressed
    return client, res.header("sec-websocket-extensions")


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
@pytest.mark.parametrize("transports", ["websocket", "polling,websocket"])
async def test_the_official_client_negotiates_and_messages_arrive_intact(deflate: bool, transports: str) -> None:
    sio, _ = demo_server(per_message_deflate=deflate)
    async with serving(sio) as address, node_sio(address, transports=transports) as client:
        if transports != "websocket" and not client.all("upgrade"):  # it may come before the connect
            await client.expect("upgrade")
        transport = await client.transport()
        assert transport == {
            "event": "transport",
            "name": "websocket",
            "extensions": "permessage-deflate" if deflate else "",
        }
        blob = bytes(range(256)) * 20
        for args in ([BIG], [SMALL], [blob, BIG * 3], [{"nested": [BIG, 1]}]):
            assert await client.call("echo", *args) == args


async def test_messages_over_the_threshold_go_out_compressed() -> None:
    async with echo_server(per_message_deflate=True) as server:
        client, extension = await deflate_session(server.address)
        assert extension == "permessage-deflate"
        for data, compressed in ((BIG, True), (SMALL, False), (BIG.encode(), True), (b"\x01" * 1023, False)):
            await client.ws.send("4" + data if isinstance(data, str) else data)
            assert await client.receive() == ("4" + data if isinstance(data, str) else data, compressed)
        # Compressed by the client, inflated by the server: the echo is the same, compressed again.
        await client.send_compressed("4" + BIG)
        await client.send_compressed(BIG.encode() * 2)
        assert await client.receive() == ("4" + BIG, True)
        assert await client.receive() == (BIG.encode() * 2, True)
        assert [m for _, m in server.messages] == [BIG, SMALL, BIG.encode(), b"\x01" * 1023, BIG, BIG.encode() * 2]


async def test_the_threshold_and_the_context_takeover_options() -> None:
    options = {"threshold": 100, "serverNoContextTakeover": True, "client_max_window_bits": 10}
    async with echo_server(per_message_deflate=options) as server:
        client, extension = await deflate_session(server.address)
        assert extension == "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        # Without the server's context each message inflates alone (DeflateWs starts afresh each time).
        for _ in range(3):
            await client.ws.send("4" + "x" * 150)
            assert await client.receive() == ("4" + "x" * 150, True)
        await client.ws.send("4" + "x" * 98)
        assert await client.receive() == ("4" + "x" * 98, False)


async def test_without_the_option_no_extension_and_rsv1_is_a_protocol_error() -> None:
    async with echo_server() as server:
        client, extension = await deflate_session(server.address)
        assert extension is None
        await client.ws.send("4" + BIG)
        assert await client.receive() == ("4" + BIG, False)
        await client.send_compressed("4" + BIG)
        assert await client.ws.expect_close() == 1002


async def test_a_malformed_offer_is_answered_400() -> None:
    async with echo_server(per_message_deflate=True) as server:
        conn = await HttpConn.open(server.address)
        target = eio_target(transport="websocket")
        headers = [*ws_headers(), ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=99")]
        res = await conn.request("GET", target, headers=headers)
        assert (res.status, res.text) == (400, "Invalid or unacceptable Sec-WebSocket-Extensions header")


async def test_a_zip_bomb_is_refused_without_disturbing_other_clients(eio_log: pytest.LogCaptureFixture) -> None:
    async with echo_server(per_message_deflate=True, max_payload=1_000_000) as server:
        bystander, _ = await deflate_session(server.address)
        bomber, _ = await deflate_session(server.address)
        # 40 MB of one letter is 40 KB on the wire; inflated past max_payload it is refused as an oversized message.
        await bomber.send_compressed("4" + "a" * 40_000_000)
        with anyio.fail_after(10):
            assert await bomber.ws.expect_close() == 1009
        # Exactly max_payload inflated is still a message.
        await bystander.send_compressed(b"b" * 1_000_000)
        assert await bystander.receive() == (b"b" * 1_000_000, True)
        await bystander.ws.send("4" + BIG)
        assert await bystander.receive() == ("4" + BIG, True)
    lines = anysio_lines(eio_log)
    assert len([line for line in lines if "over the size limit once inflated" in line]) == 1, lines


async def test_the_official_client_is_spared_a_bomb_next_to_it() -> None:
    sio, _ = demo_server(per_message_deflate=True)
    async with serving(sio) as address, node_sio(address, transports="websocket") as client:
        bomber, _ = await deflate_session(address, path="/socket.io/")
        await bomber.send_compressed("4" + "a" * 20_000_000)
        with anyio.fail_after(10):
            assert await bomber.ws.expect_close() == 1009
        assert await client.call("echo", BIG) == [BIG]


# ---- long-polling: HTTP compression ----------------------------------------------------------------------------


async def polled(server: EchoServer, data: str, accept: str | None) -> tuple[str | None, bytes]:
    """Open a polling session, send ``data``, and GET its echo with this Accept-Encoding; the response's
    Content-Encoding and body as sent."""
    p = await Polling.connect(server.address)
    await p.send(data)
    await server.wait_for(lambda: len(server.messages) > 0)
    conn = await HttpConn.open(server.address)
    headers = [] if accept is None else [("Accept-Encoding", accept)]
    res = await conn.request("GET", p.target, headers=headers)
    assert res.status == 200, res
    await conn.aclose()
    await p.aclose()
    return res.header("content-encoding"), res.body


@pytest.mark.parametrize(
    ("accept", "data", "encoding"),
    [
        ("gzip, deflate, br", BIG, "gzip"),
        ("deflate", BIG, "deflate"),
        ("br;q=1, deflate;q=0.5, gzip;q=0.2", BIG, "deflate"),
        (None, BIG, None),
        ("br", BIG, None),
        ("gzip", "x" * 1000, None),  # the payload "4" + 1000 bytes is 1001: under 1024
        ("gzip", "x" * 1023, "gzip"),  # 1024 bytes: compressed
    ],
)
async def test_polling_responses_are_compressed_by_accept_encoding(
    accept: str | None, data: str, encoding: str | None
) -> None:
    async with echo_server() as server:
        got, body = await polled(server, data, accept)
        assert got == encoding
        plain = gzip.decompress(body) if got == "gzip" else zlib.decompress(body) if got == "deflate" else body
        assert plain == encode_payload([data]).encode()


@pytest.mark.parametrize("option", [False, {"threshold": 5000}])
async def test_http_compression_off_or_over_its_threshold(option: Any) -> None:
    async with echo_server(http_compression=option) as server:
        assert await polled(server, BIG, "gzip") == (None, encode_payload([BIG]).encode())
    async with echo_server(http_compression={"threshold": 10}) as server:
        encoding, body = await polled(server, "x" * 20, "gzip")
        assert (encoding, gzip.decompress(body)) == ("gzip", b"4" + b"x" * 20)


async def test_the_official_client_over_polling_with_compression() -> None:
    sio, _ = demo_server()
    async with serving(sio) as address, node_sio(address, transports="polling") as client:
        assert await client.call("echo", BIG, SMALL) == [BIG, SMALL]


# ---- the compress flag -------------------------------------------------------------------------------------


def flag_server() -> Server:
    """ "go" answers with four events of BIG: to the socket, and to everyone, each with and without compress(False)."""
    sio = Server(per_message_deflate=True)

    @sio.on("go")
    async def go(socket: Socket) -> None:
        await socket.emit("a", BIG)
        await socket.compress(False).emit("b", BIG)
        await sio.compress(False).emit("c", BIG)
        await sio.emit("d", BIG)

    @sio.on("plain")
    async def plain(socket: Socket) -> None:
        await socket.compress(False).timeout(5).emit("p", BIG)

    return sio


async def test_compress_false_on_a_websocket_with_permessage_deflate() -> None:
    async with serving(flag_server()) as address:
        client, _ = await deflate_session(address, path="/socket.io/")
        await client.ws.send("40")
        connected, _ = await client.receive()
        assert isinstance(connected, str) and connected.startswith("40{")
        await client.ws.send('42["go"]')
        got = [await client.receive() for _ in range(4)]
        assert got == [(f'42["{name}","{BIG}"]', name in "ad") for name in "abcd"]


async def test_compress_false_on_long_polling() -> None:
    async with serving(flag_server()) as address:
        p = await Polling.connect(address, path="/socket.io/")
        await p.send("0")  # Socket.IO's CONNECT, as an Engine.IO message
        assert str((await p.receive())[0]).startswith("40{")
        conn = await HttpConn.open(address)
        gzip_ok = [("Accept-Encoding", "gzip")]
        # Only compress(False) packets in the response: sent as they are, as Node does.
        await p.send('2["plain"]')
        res = await conn.request("GET", p.target, headers=gzip_ok)
        assert (res.header("content-encoding"), res.text) == (None, encode_payload([f'2["p","{BIG}"]']))
        await p.send('2["go"]')
        res = await conn.request("GET", p.target, headers=gzip_ok)
        assert res.header("content-encoding") == "gzip"
        expected = [f'2["{name}","{BIG}"]' for name in "abcd"]
        assert gzip.decompress(res.body).decode() == encode_payload(expected)
        await conn.aclose()
        await p.aclose()


async def test_the_official_client_gets_uncompressed_events_intact() -> None:
    async with serving(flag_server()) as address, node_sio(address, transports="websocket") as client:
        await client.emit("go")
        await client.emit("plain")
        for name in "abcdp":
            assert await client.receive(name) == [[BIG]]


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="per_message_deflate: unknown option 'treshold'"):
        Server(per_message_deflate={"treshold": 10})
    with pytest.raises(ValueError, match="server_max_window_bits must be 9 to 15"):
        Server(per_message_deflate={"server_max_window_bits": 8})
    with pytest.raises(TypeError, match="http_compression: unknown option 'level'"):
        Server(http_compression={"level": 1})


@pytest.mark.parametrize("sharded", [False, True], ids=["classic", "sharded"])
async def test_compress_false_crosses_redis(anyio_backend: str, sharded: bool) -> None:
    """Another server's ``compress(False)`` broadcast, and an emitter's, heard through Redis (the flag in Node's
    adapter format: ``flags: {compress: false}``): this server's permessage-deflate leaves them uncompressed, and
    compresses the others."""
    async with redis_server() as redis:
        a_cluster, b_cluster = RedisCluster(redis.url, sharded=sharded), RedisCluster(redis.url, sharded=sharded)
        a = Server(per_message_deflate=True, adapter=a_cluster.adapter)
        b = Server(adapter=b_cluster.adapter)
        async with a_cluster, b_cluster, serving(a) as address, serving(b), Emitter(redis.url) as emitter:
            client, _ = await deflate_session(address, path="/socket.io/")
            await client.ws.send("40")
            assert str((await client.receive())[0]).startswith("40{")
            with anyio.fail_after(10):
                while await b.server_count() < 2:  # both subscribed: nothing published is lost
                    pass
            await b.compress(False).emit("c", BIG)
            await b.emit("d", BIG)
            got = [await client.receive() for _ in range(2)]
            if not sharded:  # the emitter speaks the classic adapter's format only, as Node's
                await emitter.compress(False).emit("e", BIG)
                await emitter.emit("f", BIG)
                got += [await client.receive() for _ in range(2)]
    names = "cdef" if not sharded else "cd"
    assert got == [(f'42["{name}","{BIG}"]', name in "df") for name in names]
