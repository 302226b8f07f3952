"""A payload that does not fit its handler, seen by the official socket.io-client: every problem comes back in
pydantic's structured form (loc, msg, type) next to the short message, the same in the ack, in the "error" event
and in the server's log line; the server goes on."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from anysio import Server, Socket

from .sio_helpers import node_sio, serving

pytestmark = pytest.mark.anyio

NOT_STR = "Input should be a valid string"


@dataclass
class Message:
    room: str
    text: str


def server() -> Server:
    sio = Server()

    @sio.on("chat")
    def chat(socket: Socket, msg: Message) -> str:  # arguments validated straight from the JSON text
        return "delivered"

    @sio.on("tagged")
    def tagged(socket: Socket, msg: Message, tags: list[bytes]) -> str:  # binary: the decoded path
        return "delivered"

    return sio


EXPECTED: dict[str, Any] = {
    "error": f"invalid argument 'msg.room': {NOT_STR} (+1 more)",
    "errors": [
        {"loc": ["msg", "room"], "msg": NOT_STR, "type": "string_type"},
        {"loc": ["msg", "text"], "msg": "Field required", "type": "missing"},
    ],
}


async def test_every_problem_in_the_ack_the_error_event_and_the_log(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "anysio")
    async with serving(server()) as address, node_sio(address) as client:
        # Both paths: validated from JSON text, and decoded first (a binary parameter).
        assert await client.call("chat", {"room": 5}) == [EXPECTED]
        assert await client.call("tagged", {"room": 5}, [b"x"]) == [EXPECTED]
        # Without an ack, the "error" event carries the same body and names the event.
        await client.emit("chat", {"room": 5})
        assert await client.receive("error") == [[{"event": "chat", **EXPECTED}]]
        assert await client.call("chat", {"room": "r", "text": "t"}) == ["delivered"]
    logged = [r.getMessage() for r in caplog.records if "does not fit its handler" in r.getMessage()]
    assert len(logged) == 3
    for line in logged:
        assert json.loads(line.split("does not fit its handler: ", 1)[1]) == EXPECTED
