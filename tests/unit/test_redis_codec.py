"""The Redis adapter's codec as Python sees it (``anysio._native.redis_*`` through ``anysio.adapters.redis``),
against Node's traffic in tests/vectors/redis_adapter.json: every message decodes to Node's object and encodes
back to Node's bytes; messages anysio builds (its broadcasts, the emitter's) are Node's bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anysio._native import redis_broadcast, redis_encode_broadcast
from anysio.adapters.redis import RedisAddress, decode, encode

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "redis_adapter.json").read_text())


def kind_of(m: dict[str, Any]) -> str:
    if m["mode"] == "sharded":
        return "cluster"
    channel = m["channel"]
    return "request" if "-request#" in channel else "response" if "-response#" in channel else "broadcast"


def as_node(value: Any) -> Any:
    """A decoded value in the vectors' JSON form (bytes as {"binary": hex}), numbers as JavaScript holds them."""
    if isinstance(value, bytes):
        return {"binary": value.hex()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return float(value)
    if isinstance(value, list):
        return [as_node(v) for v in value]
    if isinstance(value, dict):
        return {k: as_node(v) for k, v in value.items()}
    return value


MESSAGES = [m for m in VECTORS["messages"] if m["op"] != "broadcast_odd_values"]


@pytest.mark.parametrize("m", MESSAGES, ids=[f"{m['mode']}-{m['op']}-{i}" for i, m in enumerate(MESSAGES)])
def test_vectors_decode_to_nodes_object_and_encode_back(m: dict[str, Any]) -> None:
    raw = bytes.fromhex(m["hex"])
    obj = decode(kind_of(m), raw)
    assert as_node(obj) == as_node(m["decoded"])
    assert encode(kind_of(m), obj) == raw


def test_broadcast_fast_path() -> None:
    m = next(m for m in VECTORS["messages"] if m["op"] == "broadcast_binary")
    uid, nsp, rooms, except_rooms, volatile, compress, data_json, attachments = redis_broadcast(bytes.fromhex(m["hex"]))
    assert (uid, nsp, rooms, except_rooms, volatile, compress) == (m["decoded"][0], "/", [], [], False, True)
    assert json.loads(data_json)[1] == {"_placeholder": True, "num": 0}
    assert attachments == [bytes([1, 2, 3]), bytes([7] * 300), bytes([9])]


def test_emitter_messages_are_node_emitters_bytes() -> None:
    by_op = {m["op"]: m for m in VECTORS["messages"] if m["mode"] == "emitter"}
    room = {"type": 2, "data": ["e_room", {"a": 1}], "nsp": "/"}
    opts = {"rooms": ["r3"], "flags": {}, "except": []}
    assert encode("broadcast", ["emitter", room, opts]).hex() == by_op["emit_room"]["hex"]
    binary = {"type": 2, "data": ["e_vol", b"\xff\x00"], "nsp": "/"}
    flags = {"rooms": [], "flags": {"volatile": True, "compress": True}, "except": []}
    assert encode("broadcast", ["emitter", binary, flags]).hex() == by_op["emit_flags_binary"]["hex"]
    join = {"type": 2, "opts": {"rooms": ["r3"], "except": []}, "rooms": ["r8"]}
    assert encode("request", join).hex() == by_op["sockets_join"]["hex"]


def test_malformed_messages_raise_value_error() -> None:
    for kind, data in [("broadcast", b"\x93"), ("request", b"{"), ("response", b"{}"), ("cluster", b"")]:
        with pytest.raises(ValueError):
            decode(kind, data)
    with pytest.raises(ValueError):
        encode("request", {"type": 42})


def test_redis_urls() -> None:
    assert RedisAddress.parse("redis://127.0.0.1:7000") == RedisAddress("127.0.0.1", 7000)
    assert RedisAddress.parse("redis://:s%40cret@h/2") == RedisAddress("h", 6379, "s@cret", None, 2)
    with pytest.raises(ValueError):
        RedisAddress.parse("http://h")


def test_anysio_broadcasts_are_nodes_bytes() -> None:
    """What RedisAdapter.broadcast publishes, from the JSON text and attachments it delivers locally, is what Node
    publishes for the same emit."""
    checked = 0
    for m in VECTORS["messages"]:
        if m["mode"] != "classic" or kind_of(m) != "broadcast" or m["op"] == "broadcast_odd_values":
            continue
        uid, packet, opts = m["decoded"]
        if set(opts["flags"]) - {"volatile", "compress"}:
            continue  # flags anysio does not send (expectSingleResponse)
        text = m["socketio"][0]
        data_json = text[text.index("[") :]
        attachments = [bytes.fromhex(a["binary"]) for a in m["socketio"][1:]]
        volatile, compress = bool(opts["flags"].get("volatile")), opts["flags"].get("compress", True)
        rooms, except_rooms = opts["rooms"], opts["except"]
        ours = redis_encode_broadcast(
            uid, packet["nsp"], data_json, attachments, rooms, except_rooms, volatile, compress=compress
        )
        assert ours.hex() == m["hex"], m["op"]
        assert redis_broadcast(ours)[5] is compress, m["op"]  # and read back as sent
        checked += 1
    assert checked >= 10  # broadcast_compress among them


def test_anysio_sharded_broadcasts_are_nodes_bytes() -> None:
    """The same for the sharded adapter's BROADCAST without ack (JSON, or msgpack when it holds binary)."""
    checked = 0
    for m in VECTORS["messages"]:
        body = m["decoded"].get("data") if m["mode"] == "sharded" else None
        if body is None or m["decoded"]["type"] != 3 or "requestId" in body:
            continue
        text = m["socketio"][0]
        data_json = text[text.index("[") :]
        attachments = [bytes.fromhex(a["binary"]) for a in m["socketio"][1:]]
        opts = body["opts"]
        volatile = bool(opts["flags"].get("volatile"))
        uid, nsp = m["decoded"]["uid"], m["decoded"]["nsp"]
        rooms, except_rooms = opts["rooms"], opts["except"]
        ours = redis_encode_broadcast(uid, nsp, data_json, attachments, rooms, except_rooms, volatile, sharded=True)
        assert ours.hex() == m["hex"], m["op"]
        checked += 1
    assert checked == 5
