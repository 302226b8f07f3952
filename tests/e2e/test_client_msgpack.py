"""anysio.Client with ``parser="msgpack"`` against Node's socket.io on socket.io-msgpack-parser and against
``Server(parser="msgpack")``, on asyncio and trio: events, acks and binary both ways on each transport, typed
handlers, refusals; and a client whose parser is not the server's gets a clear error instead of hanging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import anyio
import pytest

import anysio
from tests.e2e.sio_helpers import WAIT
from tests.e2e.test_client import TRANSPORTS, Peer, Question, ask, peer_server, upgraded

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture(params=["node", "anysio"])
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    async with peer_server(request.param, "msgpack") as p:
        yield p


@pytest.mark.parametrize("transports", ["upgrade", "websocket", "polling"])
async def test_events_acks_and_binary_both_ways(peer: Peer, transports: str) -> None:
    client = anysio.Client(peer.url, transports=TRANSPORTS[transports], reconnection=False, parser="msgpack")
    welcomed: list[tuple[str, str]] = []
    client.on("welcome")(lambda nsp, sid: welcomed.append((nsp, sid)))
    with anyio.fail_after(WAIT):
        async with client:
            if transports != "polling":
                await upgraded(client)
            assert client.transport == TRANSPORTS[transports][-1]
            nested = {"a": [b"\x00\x01", {"b": bytes(range(256)) * 8, "empty": b""}], "n": [1, 2.5, None, True]}
            args = ("text \t\n\U0001f468\u200d\U0001f469 \u05e9\u05dc\u05d5\u05dd", nested, b"top", -7)
            assert await client.emit_with_ack("echo", *args) == args
            assert await client.emit_with_ack("echo", "one") == "one"
            assert await client.emit_with_ack("echo") is None
            if peer.node is not None:  # Node's server emitted on connection: a msgpack EVENT from the server
                assert welcomed == [("/", client.id)]
                await client.emit("tell", b"\x05", {"k": [b"\x06"]})
                [told] = await peer.node.expect("told")
                assert told["args"][0] == {"binary": "05"}


async def test_typed_handlers_answer_in_msgpack(peer: Peer) -> None:
    client = anysio.Client(peer.url, reconnection=False, parser="msgpack")

    @client.on("question")
    async def question(q: Question, blob: bytes) -> tuple[str, bytes]:
        assert isinstance(q, Question)
        return f"answer {q.a} {q.tag}", blob[::-1]

    with anyio.fail_after(WAIT):
        async with client:
            reply = await ask(peer, client, "question", {"a": "7", "tag": "x"}, b"\x01\x02")
    assert reply == ("answer 7 x", b"\x02\x01")


async def test_a_refused_namespace_carries_the_servers_data(peer: Peer) -> None:
    client = anysio.Client(peer.url, namespace="/admin", auth={"token": "wrong"}, reconnection=False, parser="msgpack")
    with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError) as info:
        await client.connect()
    expected = (
        ("not authorized", {"hint": "send a token"}) if peer.kind == "node" else ("unauthorized", {"hint": "token"})
    )
    assert (info.value.message, info.value.data) == expected


@dataclass
class Mismatch:
    client: Literal["default", "msgpack"]
    server: Literal["default", "msgpack"]


@pytest.mark.parametrize("kind", ["node", "anysio"])
@pytest.mark.parametrize("mismatch", [Mismatch("msgpack", "default"), Mismatch("default", "msgpack")])
async def test_a_parser_unlike_the_servers_is_a_clear_error(kind: str, mismatch: Mismatch) -> None:
    """The server closes the connection at the first packet it cannot read (Node's and anysio's alike): connect()
    raises instead of waiting for a CONNECT answer that never comes."""
    async with peer_server(kind, mismatch.server) as p:
        client = anysio.Client(p.url, reconnection=False, parser=mismatch.client)
        with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError) as info:
            await client.connect()
    assert str(info.value) == "the connection closed before the namespace was connected"


def test_an_unknown_parser_is_refused() -> None:
    with pytest.raises(ValueError, match="parser must be 'default' or 'msgpack'"):
        anysio.Client("http://127.0.0.1:1", parser="json")  # type: ignore[arg-type]
