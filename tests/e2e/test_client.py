"""anysio.Client against Node's socket.io server and anysio's own, on asyncio and trio: connecting (long-polling
then the upgrade, or a WebSocket alone), typed handlers whose return value is the ack, emits with acks and
binary, the reserved events, refusals and servers that do not answer as Socket.IO."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

import anysio
from anysio import EngineServer, Session
from tests.e2e.client_helpers import NodePeer, node_peer
from tests.e2e.conftest import EchoServer
from tests.e2e.conftest import serving as eio_serving
from tests.e2e.sio_helpers import WAIT, Record, demo_server, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

TRANSPORTS = {"upgrade": ["polling", "websocket"], "websocket": ["websocket"], "polling": ["polling"]}


@dataclass
class Peer:
    kind: str
    url: str
    node: NodePeer | None = None
    record: Record | None = None


@asynccontextmanager
async def peer_server(kind: str, parser: str = "default") -> AsyncIterator[Peer]:
    """Node's server or anysio's, with socket.io-parser or (``parser="msgpack"``) socket.io-msgpack-parser."""
    if kind == "node":
        async with node_peer(*(["--msgpack"] if parser == "msgpack" else [])) as node:
            yield Peer(kind, node.url, node=node)
    else:
        sio, record = demo_server(parser=parser)
        async with serving(sio) as (host, port):
            yield Peer(kind, f"http://{host}:{port}", record=record)


@pytest.fixture(params=["node", "anysio"])
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    async with peer_server(request.param) as p:
        yield p


@dataclass
class Question:
    a: int
    tag: str


async def upgraded(client: anysio.Client) -> None:
    """Until the client is on WebSocket: each round trip lets the upgrade go on (no sleeping)."""
    with anyio.fail_after(WAIT):
        while client.transport != "websocket":
            await client.emit_with_ack("echo", "wait")


@pytest.mark.parametrize("transports", ["upgrade", "websocket", "polling"])
async def test_connect_emit_with_ack_and_binary_anywhere(peer: Peer, transports: str) -> None:
    with anyio.fail_after(WAIT):
        async with anysio.Client(peer.url, transports=TRANSPORTS[transports], reconnection=False) as client:
            assert client.connected and client.id
            if transports == "polling":
                assert client.transport == "polling"  # no upgrade asked for: none made
            else:
                await upgraded(client)
            if peer.node is not None:  # long-polling first, then the upgrade, as the official client
                [connection] = await peer.node.expect("connection")
                assert connection["transport"] == TRANSPORTS[transports][0]
                if transports == "upgrade":
                    await peer.node.expect("upgrade", transport="websocket")
            assert await client.emit_with_ack("echo", "one") == "one"
            assert await client.emit_with_ack("echo") is None
            args = (1, "two", {"nested": [b"\x00\x01", {"deep": b"\xff"}]}, b"top", None, 2.5)
            assert await client.emit_with_ack("echo", *args) == args
            text = "tab\tnew\nline \U0001f468\u200d\U0001f469\u200d\U0001f467 \u05e9\u05dc\u05d5\u05dd"
            assert await client.emit_with_ack("echo", text) == text
    assert not client.connected and client.id is None
    if peer.node is not None:
        await peer.node.expect("disconnect", reason="client namespace disconnect")
    else:
        assert peer.record is not None
        (_, _, reason), *_ = await peer.record.wait("disconnect")
        assert reason == "client namespace disconnect"


async def ask(peer: Peer, client: anysio.Client, *args: Any) -> Any:
    """Have the server ask the client (event, *args) with an ack, and return the client's reply as one value or a
    tuple: anysio's server acks it back, Node's sends it back as an "answered" event."""
    if peer.kind != "node":
        return await client.emit_with_ack("ask", *args)
    answered: list[list[Any]] = []
    done = anyio.Event()

    @client.on("answered")
    def on_answered(replies: list[Any]) -> None:
        answered.append(replies)
        done.set()

    await client.emit("ask", *args)
    await done.wait()
    [replies] = answered
    return replies[0] if len(replies) == 1 else tuple(replies)


async def test_writes_larger_than_the_socket_takes_at_once_arrive_whole(anyio_backend: str) -> None:
    """24 MB queued in one go: the socket takes part of it at once (on trio, written directly), the rest waits
    for the server to read, in order. The server acks each blob's digest (echoing 24 MB back would overflow its
    output bound for a client still busy writing)."""
    sio = anysio.Server(max_payload=64 * 2**20)

    @sio.on("digest")
    def digest(i: int, blob: bytes) -> tuple[int, str]:
        return i, hashlib.sha256(blob).hexdigest()

    blobs = [bytes([i]) * (4 * 2**20) + b"end" for i in range(6)]
    replies: dict[int, Any] = {}

    async def send(client: anysio.Client, i: int) -> None:
        replies[i] = await client.emit_with_ack("digest", i, blobs[i])

    async with (
        serving(sio) as (host, port),
        anysio.Client(f"http://{host}:{port}", transports=["websocket"], reconnection=False) as client,
    ):
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for i in range(len(blobs)):
                    tg.start_soon(send, client, i)
            assert await client.emit_with_ack("digest", 9, b"") == (9, hashlib.sha256(b"").hexdigest())
    assert replies == {i: (i, hashlib.sha256(blob).hexdigest()) for i, blob in enumerate(blobs)}


async def test_typed_handlers_answer_the_server_with_their_return_value(peer: Peer) -> None:
    client = anysio.Client(peer.url, reconnection=False)

    @client.on("question")
    async def question(q: Question, blob: bytes) -> tuple[str, bytes]:
        assert isinstance(q, Question)  # coerced from the hint, as on the server
        return f"answer {q.a} {q.tag}", blob[::-1]

    with anyio.fail_after(WAIT):
        async with client:
            reply = await ask(peer, client, "question", {"a": "7", "tag": "x"}, b"\x01\x02")
    assert reply == ("answer 7 x", b"\x02\x01")  # a tuple: acked with two values


async def test_an_argument_that_does_not_fit_is_answered_with_the_errors(peer: Peer) -> None:
    client = anysio.Client(peer.url, transports=["websocket"], reconnection=False)
    called: list[Question] = []

    @client.on("question")
    def question(q: Question) -> str:
        called.append(q)
        return "never"

    with anyio.fail_after(WAIT):
        async with client:
            reply = await ask(peer, client, "question", {"a": "not a number"})
    assert not called
    assert reply["error"].startswith("invalid argument 'q.a'")
    assert {e["loc"][-1] for e in reply["errors"]} == {"a", "tag"}


async def test_the_reserved_events_and_a_server_disconnect(peer: Peer) -> None:
    client = anysio.Client(peer.url, reconnection=False)
    seen: list[Any] = []
    gone = anyio.Event()

    @client.on("connect")
    def connect() -> None:
        seen.append(("connect", client.id))

    @client.on("disconnect")
    async def disconnect(reason: str) -> None:
        seen.append(("disconnect", reason))
        gone.set()

    with anyio.fail_after(WAIT):
        await client.connect()
        sid = client.id
        await client.emit("kick")
        await gone.wait()
        await client.wait()  # the last namespace left: the connection closes
    assert seen == [("connect", sid), ("disconnect", "io server disconnect")]
    assert not client.connected


async def test_a_refused_namespace_raises_the_servers_message(peer: Peer) -> None:
    client = anysio.Client(peer.url, namespace="/admin", auth={"token": "wrong"}, reconnection=False)
    errors: list[anysio.ConnectionError] = []
    client.on("connect_error")(errors.append)
    with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError) as info:
        await client.connect()
    expected = (
        ("not authorized", {"hint": "send a token"}) if peer.kind == "node" else ("unauthorized", {"hint": "token"})
    )
    assert (info.value.message, info.value.data) == expected
    assert errors == [info.value] and not client.connected


async def test_an_unknown_namespace_raises_invalid_namespace(peer: Peer) -> None:
    client = anysio.Client(peer.url, namespace="/nowhere", reconnection=False)
    with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError, match=r"^Invalid namespace$"):
        await client.connect()


async def test_an_ack_that_does_not_come_times_out(anyio_backend: str) -> None:
    sio, _ = demo_server()
    async with serving(sio) as (host, port), anysio.Client(f"http://{host}:{port}", reconnection=False) as client:
        with anyio.fail_after(WAIT), pytest.raises(anysio.AckTimeout):
            await client.emit_with_ack("hold", timeout=0.2)
        assert await client.emit_with_ack("add", 1, "2") == 3  # the connection goes on


@pytest.mark.parametrize("transports", ["upgrade", "websocket"])
async def test_a_closed_port_raises_with_the_cause(transports: str) -> None:
    with anyio.fail_after(WAIT):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        client = anysio.Client(f"http://127.0.0.1:{port}", transports=TRANSPORTS[transports], reconnection=False)
        errors: list[anysio.ConnectionError] = []
        client.on("connect_error")(errors.append)
        with pytest.raises(anysio.ConnectionError, match=f"^cannot connect to 127.0.0.1:{port}: ") as info:
            await client.connect()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert errors == [info.value]


_CLOSE = b"Connection: close\r\n\r\n"
BAD_ANSWERS = {
    "not http": b"SSH-2.0-OpenSSH_9.2\r\n",
    "http, not engine.io": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + _CLOSE + b"hello",
    "engine.io v3": b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n" + _CLOSE + b'25:0{"sid":"x","upgrades":[]}xx',
    "a refusal": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 36\r\n" + _CLOSE + b'{"code":4,"message":"Forbidden, no"}',
    "nothing": b"",
}


@pytest.mark.parametrize("answer", list(BAD_ANSWERS))
@pytest.mark.parametrize("transports", ["upgrade", "websocket"])
async def test_a_server_that_does_not_answer_as_socket_io_is_a_clear_error(answer: str, transports: str) -> None:
    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            if BAD_ANSWERS[answer]:
                await stream.send(BAD_ANSWERS[answer])

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = anysio.Client(f"http://127.0.0.1:{port}", transports=TRANSPORTS[transports], reconnection=False)
        with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError) as info:
            await client.connect()
        tg.cancel_scope.cancel()
    message = str(info.value)
    assert message and "\n" not in message
    if answer == "a refusal":
        assert message == "Forbidden, no"


async def test_an_engine_io_server_without_socket_io_is_refused_as_node_says(anyio_backend: str) -> None:
    """A CONNECT echoed back without a sid (an Engine.IO echo server, or Socket.IO v2): connect_error."""
    async with eio_serving(EchoServer(path="/socket.io")) as server:
        host, port = server.address
        client = anysio.Client(f"http://{host}:{port}", reconnection=False)
        with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError, match=r"Socket\.IO server in v2\.x"):
            await client.connect()
        await server.wait_for(lambda: server.closed)  # and the connection is closed, not left open


@pytest.mark.parametrize("transports", ["upgrade", "websocket"])
async def test_garbage_from_a_connected_server_closes_with_parse_error(
    transports: str, caplog: pytest.LogCaptureFixture
) -> None:
    eio = EngineServer(path="/socket.io", ping_interval=30, ping_timeout=30)

    @eio.on_message
    def answer(session: Session, data: str | bytes) -> None:
        session.send('0{"sid":"s1"}' if data == "0" else "this is not a Socket.IO packet")

    async with anyio.create_task_group() as tg:
        host, port = await tg.start(eio.serve, "127.0.0.1", 0)
        client = anysio.Client(f"http://{host}:{port}", transports=TRANSPORTS[transports], reconnection=False)
        reasons: list[str] = []
        client.on("disconnect")(reasons.append)
        with anyio.fail_after(WAIT):
            await client.connect()
            assert client.id == "s1"
            with pytest.raises(anysio.Disconnected):
                await client.emit_with_ack("anything")
            await client.wait()
        tg.cancel_scope.cancel()
    assert reasons == ["parse error"]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "anysio.client"]
    assert warning == "the server broke the protocol (unknown packet type: this is not a Socket.IO packet): closing"


@pytest.mark.parametrize("transports", ["upgrade", "websocket"])
async def test_emits_before_the_connection_leave_on_connect_with_headers_and_auth(
    anyio_backend: str, transports: str
) -> None:
    async with node_peer() as node:
        client = anysio.Client(
            node.url, transports=TRANSPORTS[transports], headers={"X-Token": "t0k"}, auth=lambda: {"n": 1}
        )
        await client.emit("tell", "early", {"blob": b"\x01\x02"})  # buffered until connected, as socket.io-client
        with anyio.fail_after(WAIT):
            async with client:
                [told] = await node.expect("told")
                [connection] = await node.expect("connection")
    assert told["args"] == ["early", {"blob": {"type": "Buffer", "data": [1, 2]}}]
    assert (connection["auth"], connection["xtoken"]) == ({"n": 1}, "t0k")


async def test_a_connect_the_server_never_answers_times_out(anyio_backend: str) -> None:
    eio = EngineServer(path="/socket.io", ping_interval=0.2, ping_timeout=0.2)  # the session itself stays alive
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(eio.serve, "127.0.0.1", 0)
        client = anysio.Client(f"http://{host}:{port}", timeout=0.5, reconnection=False)
        with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError, match=r"^timeout: no answer to CONNECT"):
            await client.connect()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("transports", ["polling", "websocket"])
async def test_a_disconnect_with_the_connection_closed_behind_it_is_the_servers(
    anyio_backend: str, transports: str
) -> None:
    """Node's socket.disconnect(true): the DISCONNECT and the close packet arrive together; the reason is still
    "io server disconnect", and there is no reconnection."""
    async with node_peer() as node:
        client = anysio.Client(node.url, transports=TRANSPORTS[transports])
        reasons: list[str] = []
        client.on("disconnect")(reasons.append)
        with anyio.fail_after(WAIT):
            await client.connect()
            await client.emit("kick-close")
            await client.wait()
    assert reasons == ["io server disconnect"]


async def test_volatile_emits_are_dropped_while_they_cannot_leave(anyio_backend: str) -> None:
    """socket.io-client's ``volatile``: before the connection a volatile event is dropped where a plain one is
    buffered; once connected it is sent."""
    async with node_peer() as node:
        client = anysio.Client(node.url, transports=["websocket"], reconnection=False)
        assert await client.volatile.emit("tell", "dropped") is False
        await client.emit("tell", "buffered")
        with anyio.fail_after(WAIT):
            async with client:
                assert await client.volatile.emit("tell", "sent") is True
                await node.expect("told", 2)
                assert await client.emit_with_ack("echo", "after") == "after"  # anything dropped would be here
            told = [line["args"] for line in node.lines if line["event"] == "told"]
    assert told == [["buffered"], ["sent"]]
    assert await client.volatile.emit("tell", "gone") is False
