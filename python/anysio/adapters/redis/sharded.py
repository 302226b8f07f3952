"""The sharded mode (Node's ``createShardedAdapter``: socket.io-adapter's ``ClusterAdapter`` on Redis 7's sharded
pub/sub, SSUBSCRIBE and SPUBLISH). Every message is ``{type, data, uid, nsp}`` on the namespace's channel
``<key>#<nsp>#``, a room's channel ``<key>#<nsp>#<room>#`` or the requester's ``<key>#<nsp>#<uid>#``.

A room's channel is subscribed while this server (with workers: this machine) has the room, as Node's
``subscriptionMode`` says: "static" never, "dynamic" (the default) for rooms that are not socket ids,
"dynamic-private" for every room. Rooms empty when sockets leave or disconnect: their channels are unsubscribed
at once when a socket of this process leaves, and by a sweep every ``room_sweep_interval`` otherwise. In "dynamic"
mode a room is taken for a socket id as Node's publishers take it (``looksLikeASocketId``: 20 characters), not
as its subscribers do (a socket id of that server): the same channels carry the same messages, but a public room
of 20 characters gets no channel of its own here (none ever publishes on it)."""

from __future__ import annotations

from typing import Any

from ..._native import redis_cluster_broadcast, redis_encode_broadcast
from ...exceptions import ClusterError
from ..base import AdapterNamespace, BroadcastOptions, MachineScope, RoomsWanted
from .exchange import Exchange
from .link import LinkedAdapter, LinkOptions
from .messages import (
    C_BROADCAST,
    C_BROADCAST_ACK,
    C_BROADCAST_CLIENT_COUNT,
    C_DISCONNECT_SOCKETS,
    C_FETCH_SOCKETS,
    C_FETCH_SOCKETS_RESPONSE,
    C_SERVER_SIDE_EMIT,
    C_SERVER_SIDE_EMIT_RESPONSE,
    C_SOCKETS_JOIN,
    C_SOCKETS_LEAVE,
    ack_flags,
    decode,
    describe,
    encode,
    hex_id,
    looks_like_a_socket_id,
    opts_of,
    rooms_of,
    wire_opts,
)

SUBSCRIPTION_MODES: dict[str, RoomsWanted] = {"static": "none", "dynamic": "public", "dynamic-private": "all"}


class ShardedRedisAdapter(LinkedAdapter):
    """One namespace's adapter in the sharded mode: Node's ``ShardedRedisAdapter``."""

    def __init__(
        self, nsp: AdapterNamespace, exchange: Exchange, options: LinkOptions, machine: MachineScope | None = None
    ) -> None:
        super().__init__(nsp, exchange, options, machine)
        self.main = f"{options.key}#{nsp.name}#"
        self.own = f"{self.main}{self.uid}#"
        self._room_channels: set[str] = set()
        self._joined_since_sweep: set[str] = set()
        exchange.listen("SSUBSCRIBE", self.main, self.on_message)
        exchange.listen("SSUBSCRIBE", self.own, self.on_message)

    def close(self) -> None:
        # The namespace's channel is shared by its next adapter (the same name): this uid's and the rooms' go.
        self.exchange.unlisten(self.own)
        for room in list(self._room_channels):
            self._unlisten_room(room)

    def new_id(self) -> str:
        return hex_id()

    def _message(self, kind: int, data: dict[str, Any]) -> bytes:
        return encode("cluster", {"type": kind, "data": data, "uid": self.uid, "nsp": self.nsp.name})

    # ---- room channels ---------------------------------------------------------------------------------------

    def _channel(self, name: str) -> str:
        """The channel of a room, or of a server (``name``: its uid), in this namespace."""
        return f"{self.main}{name}#"

    @property
    def rooms_wanted(self) -> RoomsWanted:
        return SUBSCRIPTION_MODES[self.options.subscription_mode]

    def has_channel(self, room: str) -> bool:
        """Whether a broadcast to this one room goes to the room's own channel (Node's ``computeChannel``: in
        "dynamic" mode not for a room that looks like a socket id, whose broadcasts go to the namespace's)."""
        wanted = self.rooms_wanted
        return wanted == "all" or (wanted == "public" and not looks_like_a_socket_id(room))

    def rooms_joined(self, rooms: list[str]) -> None:
        for room in rooms:
            if self.has_channel(room):
                self._joined_since_sweep.add(room)
                self._listen_room(room)

    def _listen_room(self, room: str) -> None:
        if room not in self._room_channels:
            self._room_channels.add(room)
            self.exchange.listen("SSUBSCRIBE", self._channel(room), self.on_message)

    def rooms_left(self, rooms: list[str]) -> None:
        for room in rooms:
            if room in self._room_channels and not self.nsp.core.targets(self.nsp.name, [room], []):
                self._unlisten_room(room)

    def _unlisten_room(self, room: str) -> None:
        self._room_channels.discard(room)
        self.exchange.unlisten(self._channel(room))

    async def sweep_rooms(self) -> None:
        """Make the room channels those of the rooms this server (every worker) has: unsubscribe the rooms gone
        (rooms joined while it asks stay), subscribe any whose report was missed (a worker 0 that restarted)."""
        self._joined_since_sweep = set()
        try:
            rooms = await self.here_rooms()
        except ClusterError:
            return  # a worker did not answer: every channel stays until the next sweep
        for room in self._room_channels - rooms - self._joined_since_sweep:
            self._unlisten_room(room)
        for room in rooms - self._room_channels:
            if self.has_channel(room):
                self._listen_room(room)

    # ---- the remote half ------------------------------------------------------------------------------------

    def _broadcast_channel(self, opts: BroadcastOptions) -> str:
        """Node's ``computeChannel``: a room's own channel for a broadcast (without ack) to exactly that room."""
        if len(opts.rooms) == 1:
            (room,) = opts.rooms
            if self.has_channel(room):
                return self._channel(room)
        return self.main

    async def remote_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        rooms, except_rooms, name = sorted(opts.rooms), sorted(opts.except_rooms), self.nsp.name
        volatile, compress = opts.volatile, opts.compress
        message = redis_encode_broadcast(
            self.uid, name, data, attachments, rooms, except_rooms, volatile, sharded=True, compress=compress
        )
        await self.exchange.publish_quietly(self._broadcast_channel(opts), message)

    def ack_request(self, rid: str, args: list[Any], opts: BroadcastOptions, timeout_ms: int) -> tuple[str, bytes]:
        opts_out = wire_opts(opts, ack_flags(opts, timeout_ms))
        data = {"packet": {"type": 2, "data": args}, "requestId": rid, "opts": opts_out}
        return self.main, self._message(C_BROADCAST, data)

    def fetch_request(self, rid: str, opts: BroadcastOptions) -> tuple[str, bytes]:
        return self.main, self._message(C_FETCH_SOCKETS, {"opts": wire_opts(opts, {}), "requestId": rid})

    def server_side_request(self, rid: str | None, args: list[Any]) -> tuple[str, bytes]:
        data = {"packet": args} if rid is None else {"requestId": rid, "packet": args}
        return self.main, self._message(C_SERVER_SIDE_EMIT, data)

    def timeout_message(self, what: str, got: int, expected: int) -> str:
        return f"timeout reached: only {got} responses received out of {expected}"

    async def remote_join(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        message = self._message(C_SOCKETS_JOIN, {"opts": wire_opts(opts, {}), "rooms": rooms})
        await self.exchange.publish_quietly(self.main, message)
        # This machine's sockets may join them too (with workers, on other workers): the sweep drops the
        # channels of rooms that stay empty here.
        self.rooms_joined(rooms)

    async def remote_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        message = self._message(C_SOCKETS_LEAVE, {"opts": wire_opts(opts, {}), "rooms": rooms})
        await self.exchange.publish_quietly(self.main, message)

    async def remote_disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        message = self._message(C_DISCONNECT_SOCKETS, {"opts": wire_opts(opts, {}), "close": close})
        await self.exchange.publish_quietly(self.main, message)

    async def server_count(self) -> int:
        return await self.exchange.numsub(self.main)

    # ---- what the others ask (receiver) ----------------------------------------------------------------------

    async def on_message(self, channel: bytes, data: bytes) -> None:
        fast = redis_cluster_broadcast(data)  # a broadcast without ack: from its bytes to the sockets in Rust
        if fast is not None:
            uid, nsp, rooms, except_rooms, volatile, compress, data_json, attachments = fast
            if uid != self.uid and nsp == self.nsp.name:
                opts = BroadcastOptions(frozenset(rooms), frozenset(except_rooms), True, volatile, compress)
                delivered = self.here_deliver(data_json, attachments, opts)
                if delivered is not None:
                    await delivered
            return
        message = decode("cluster", data)
        requester = message.get("uid")
        if requester == self.uid or message.get("nsp") != self.nsp.name:
            return
        kind, body = message.get("type"), message.get("data") or {}
        rid = body.get("requestId")
        if kind == C_BROADCAST and isinstance(rid, str):  # with ack (the others took the fast path)
            self.answer_broadcast(requester, rid, body)
        elif kind in (C_SOCKETS_JOIN, C_SOCKETS_LEAVE):
            join = self.here_join if kind == C_SOCKETS_JOIN else self.here_leave
            await join(opts_of(body), rooms_of(body.get("rooms")))
        elif kind == C_DISCONNECT_SOCKETS:
            await self.here_disconnect(opts_of(body), bool(body.get("close")))
        elif kind == C_FETCH_SOCKETS:
            sockets = describe(await self.here_fetch(opts_of(body)))
            await self._respond(requester, C_FETCH_SOCKETS_RESPONSE, {"requestId": rid, "sockets": sockets})
        elif kind == C_SERVER_SIDE_EMIT:
            self.exchange.spawn(self.answer_server_side, requester, rid, body.get("packet") or [])
        else:
            self._on_response(kind, rid, body)

    def _on_response(self, kind: Any, rid: Any, body: dict[str, Any]) -> None:
        if kind == C_FETCH_SOCKETS_RESPONSE:
            self.resolve(rid, body)
        elif kind == C_SERVER_SIDE_EMIT_RESPONSE:
            self.resolve(rid, body.get("packet"))
        elif kind == C_BROADCAST_CLIENT_COUNT:
            self.ack_counted(rid, body.get("clientCount"))
        elif kind == C_BROADCAST_ACK:
            self.ack_replied(rid, body.get("packet"))

    async def _respond(self, requester: str, kind: int, data: dict[str, Any]) -> None:
        await self.exchange.publish_quietly(self._channel(requester), self._message(kind, data))

    async def server_side_response(self, requester: str, rid: str, result: Any) -> None:
        await self._respond(requester, C_SERVER_SIDE_EMIT_RESPONSE, {"requestId": rid, "packet": result})

    def ack_response(self, requester: str, count: bool, body: dict[str, Any]) -> None:
        message = self._message(C_BROADCAST_CLIENT_COUNT if count else C_BROADCAST_ACK, body)
        self.exchange.publish_soon(self._channel(requester), message)
