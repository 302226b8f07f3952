"""What travels on the adapters' channels, as Python sees it: Node's objects decoded and encoded by the Rust
codec (``rust/adapter/redis``), ids, message types, and the shapes both modes share (``docs/redis-adapter.md``)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..._native import redis_decode, redis_encode
from ...codec.wire import decode_args, encode_args
from ..base import BroadcastOptions, FetchedSocket

DEFAULT_KEY = "socket.io"
EMITTER_UID = "emitter"
_ID_ALPHABET = string.ascii_letters + string.digits + "_-"

# RequestType of @socket.io/redis-adapter (the classic adapter's requests; 8 and 9 are responses).
SOCKETS, ALL_ROOMS, REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT, REMOTE_FETCH, SERVER_SIDE_EMIT = range(7)
BROADCAST, BROADCAST_CLIENT_COUNT, BROADCAST_ACK = 7, 8, 9

# MessageType of socket.io-adapter's ClusterAdapter (the sharded adapter's messages).
(
    INITIAL_HEARTBEAT,
    HEARTBEAT,
    C_BROADCAST,
    C_SOCKETS_JOIN,
    C_SOCKETS_LEAVE,
    C_DISCONNECT_SOCKETS,
    C_FETCH_SOCKETS,
    C_FETCH_SOCKETS_RESPONSE,
    C_SERVER_SIDE_EMIT,
    C_SERVER_SIDE_EMIT_RESPONSE,
    C_BROADCAST_CLIENT_COUNT,
    C_BROADCAST_ACK,
    ADAPTER_CLOSE,
) = range(1, 14)


def new_id() -> str:
    """Six characters as ``uid2(6)``: a classic server's uid or a request id."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


def hex_id() -> str:
    """16 hex digits as ``randomBytes(8).toString("hex")``: a sharded server's uid or a request id."""
    return secrets.token_hex(8)


def encode(kind: str, message: Any) -> bytes:
    """Node's bytes for a message given as Node's object (values may hold bytes, dataclasses, models); ``kind``:
    "broadcast", "request", "response" or "cluster"."""
    text, attachments = encode_args([message])
    return redis_encode(kind, text[1:-1], attachments)


def decode(kind: str, data: bytes) -> Any:
    """A message as Node's object, bytes restored. Raises ValueError when malformed."""
    text, attachments = redis_decode(kind, data)
    return decode_args("[" + text + "]", attachments or None)[0]


def looks_like_a_socket_id(room: str) -> bool:
    """Node's ``looksLikeASocketId``: a string of 20 UTF-16 code units."""
    return len(room.encode("utf-16-le")) == 40


def rooms_of(value: Any) -> list[str]:
    """Room names from the wire (numbers are rooms too in JavaScript: their text is the name)."""
    return [str(r) for r in value or ()]


def opts_of(message: dict[str, Any], *, with_flags: bool = False) -> BroadcastOptions:
    """The local part of a message's ``opts`` (``{rooms, except, flags}``); ``with_flags``: its ``volatile`` and
    ``compress`` flags too (a broadcast's; the other requests' flags say nothing of delivery)."""
    opts = message.get("opts") or {}
    rooms, except_rooms = frozenset(rooms_of(opts.get("rooms"))), frozenset(rooms_of(opts.get("except")))
    flags = (opts.get("flags") or {}) if with_flags else {}
    volatile, compress = flags.get("volatile") is True, flags.get("compress") is not False
    return BroadcastOptions(rooms, except_rooms, local=True, volatile=volatile, compress=compress)


def ack_flags(opts: BroadcastOptions, timeout_ms: int) -> dict[str, Any]:
    """The flags of a broadcast with acks, as Node's operator sets them: ``volatile``, ``compress`` only when
    set, then ``timeout``."""
    flags: dict[str, Any] = {"volatile": True} if opts.volatile else {}
    if not opts.compress:
        flags["compress"] = False
    flags["timeout"] = timeout_ms
    return flags


def wire_opts(opts: BroadcastOptions, flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """``opts`` as the adapters send them: ``{rooms, except}``, and ``flags`` when given (the sharded adapter)."""
    out: dict[str, Any] = {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}
    if flags is not None:
        out["flags"] = flags
    return out


def describe(sockets: Iterable[FetchedSocket]) -> list[dict[str, Any]]:
    """Sockets as a fetch response describes them: ``{id, handshake, rooms, data}``, the handshake in Node's
    shape (``socket.handshake`` without ``sessionStore``)."""
    out = []
    for s in sockets:
        h = s.handshake
        handshake = {
            "headers": h.headers,
            "time": getattr(h, "time", ""),
            "address": h.address,
            "xdomain": getattr(h, "xdomain", False),
            "secure": getattr(h, "secure", False),
            "issued": h.issued,
            "url": getattr(h, "url", ""),
            "query": h.query,
            "auth": h.auth,
        }
        out.append({"id": s.id, "handshake": handshake, "rooms": sorted(s.rooms), "data": s.data})
    return out


def remote_descs(replies: Iterable[Any]) -> list[dict[str, Any]]:
    """The sockets of fetch responses, as ``RemoteSocket`` takes them (a malformed entry is left out)."""
    found = []
    for reply in replies:
        for desc in (reply.get("sockets") or ()) if isinstance(reply, dict) else ():
            if not isinstance(desc, dict) or "id" not in desc:
                continue
            hs = desc.get("handshake") or {}
            handshake = {
                "headers": hs.get("headers") or {},
                "query": hs.get("query") or {},
                "address": hs.get("address"),
                "issued": hs.get("issued") or 0,
                "auth": hs.get("auth"),
            }
            found.append(
                {"id": desc["id"], "rooms": desc.get("rooms") or [], "data": desc.get("data"), "handshake": handshake}
            )
    return found


@dataclass
class Gather:
    """Replies to one request, until ``expected`` of them came."""

    expected: int
    replies: list[Any] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)

    def add(self, reply: Any) -> None:
        self.replies.append(reply)
        if len(self.replies) >= self.expected:
            self.done.set()


@dataclass
class AckGather:
    """A broadcast with acks across servers: each server's client count, then that many replies."""

    servers: int | None = None  # other servers expected to answer (unknown until NUMSUB answered)
    counts: int = 0
    clients: int = 0
    replies: list[Any] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)

    def count(self, clients: int) -> None:
        self.counts += 1
        self.clients += clients
        self.check()

    def reply(self, value: Any) -> None:
        self.replies.append(value)
        self.check()

    def check(self) -> None:
        if self.servers is not None and self.counts >= self.servers and len(self.replies) >= self.clients:
            self.done.set()
