"""The classic mode (Node's ``createAdapter``, plain pub/sub): broadcasts as msgpack ``[uid, packet, opts]`` on
``<key>#<nsp>#`` (``<key>#<nsp>#<room>#`` for one room), requests on ``<key>-request#<nsp>#``, responses on
``<key>-response#<nsp>#``. ``docs/redis-adapter.md`` is the protocol."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ..._native import redis_broadcast, redis_encode_broadcast
from ...exceptions import ClusterError
from ..base import AdapterNamespace, BroadcastOptions, MachineScope
from .exchange import Exchange
from .link import LinkedAdapter, LinkOptions
from .messages import (
    ALL_ROOMS,
    BROADCAST,
    BROADCAST_ACK,
    BROADCAST_CLIENT_COUNT,
    REMOTE_DISCONNECT,
    REMOTE_FETCH,
    REMOTE_JOIN,
    REMOTE_LEAVE,
    SERVER_SIDE_EMIT,
    SOCKETS,
    ack_flags,
    decode,
    describe,
    encode,
    new_id,
    opts_of,
    rooms_of,
    wire_opts,
)


class RedisAdapter(LinkedAdapter):
    """One namespace's adapter in the classic mode: Node's ``RedisAdapter``."""

    def __init__(
        self, nsp: AdapterNamespace, exchange: Exchange, options: LinkOptions, machine: MachineScope | None = None
    ) -> None:
        super().__init__(nsp, exchange, options, machine)
        key, name = options.key, nsp.name
        self.broadcast_prefix = f"{key}#{name}#"
        self.request_channel = f"{key}-request#{name}#"
        self.response_channel = f"{key}-response#{name}#"
        self.own_response_channel = f"{self.response_channel}{self.uid}#"
        exchange.listen("PSUBSCRIBE", self.broadcast_prefix + "*", self.on_broadcast)
        exchange.listen("SUBSCRIBE", self.request_channel, self.on_request)
        exchange.listen("SUBSCRIBE", self.response_channel, self.on_response)
        exchange.listen("SUBSCRIBE", self.own_response_channel, self.on_response)

    def close(self) -> None:
        # The namespace's other channels are shared by its next adapter (the same names): only this uid's goes.
        self.exchange.unlisten(self.own_response_channel)

    def new_id(self) -> str:
        return new_id()

    def _request(self, message: dict[str, Any]) -> tuple[str, bytes]:
        return self.request_channel, encode("request", {"uid": self.uid, **message})

    # ---- the remote half ------------------------------------------------------------------------------------

    async def remote_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        rooms, except_rooms = sorted(opts.rooms), sorted(opts.except_rooms)
        message = redis_encode_broadcast(
            self.uid, self.nsp.name, data, attachments, rooms, except_rooms, opts.volatile, compress=opts.compress
        )
        channel = f"{self.broadcast_prefix}{rooms[0]}#" if len(rooms) == 1 else self.broadcast_prefix
        await self.exchange.publish_quietly(channel, message)

    def ack_request(self, rid: str, args: list[Any], opts: BroadcastOptions, timeout_ms: int) -> tuple[str, bytes]:
        packet = {"type": 2, "data": args, "nsp": self.nsp.name}
        opts_out = wire_opts(opts, ack_flags(opts, timeout_ms))
        return self._request({"requestId": rid, "type": BROADCAST, "packet": packet, "opts": opts_out})

    def fetch_request(self, rid: str, opts: BroadcastOptions) -> tuple[str, bytes]:
        return self._request({"requestId": rid, "type": REMOTE_FETCH, "opts": wire_opts(opts)})

    def server_side_request(self, rid: str | None, args: list[Any]) -> tuple[str, bytes]:
        ids = {} if rid is None else {"requestId": rid}
        return self._request({**ids, "type": SERVER_SIDE_EMIT, "data": args})

    def timeout_message(self, what: str, got: int, expected: int) -> str:
        return f"timeout reached while waiting for {what} response"

    async def remote_join(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        request = {"type": REMOTE_JOIN, "opts": wire_opts(opts), "rooms": rooms}
        await self.exchange.publish_quietly(*self._request(request))

    async def remote_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        request = {"type": REMOTE_LEAVE, "opts": wire_opts(opts), "rooms": rooms}
        await self.exchange.publish_quietly(*self._request(request))

    async def remote_disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        request = {"type": REMOTE_DISCONNECT, "opts": wire_opts(opts), "close": close}
        await self.exchange.publish_quietly(*self._request(request))

    async def server_count(self) -> int:
        return await self.exchange.numsub(self.request_channel)

    async def remote_all_rooms(self) -> set[str]:
        others = await self.server_count() - 1
        if others <= 0:
            return set()
        rid = self.new_id()
        request = self._request({"requestId": rid, "type": ALL_ROOMS})
        replies = await self.gather(rid, request, others, self.options.requests_timeout)
        if len(replies) < others:
            raise ClusterError(self.timeout_message("allRooms", len(replies), others))
        return {r for reply in replies for r in rooms_of(reply.get("rooms"))}

    # ---- what the others ask (receiver) ----------------------------------------------------------------------

    def on_broadcast(self, channel: bytes, data: bytes) -> Awaitable[None] | None:
        """A broadcast from another server or an emitter: decoded in Rust, written to the local targets."""
        uid, nsp, rooms, except_rooms, volatile, compress, data_json, attachments = redis_broadcast(data)
        if uid == self.uid or nsp != self.nsp.name:
            return None
        opts = BroadcastOptions(frozenset(rooms), frozenset(except_rooms), True, volatile, compress)
        return self.here_deliver(data_json, attachments, opts)

    async def on_request(self, channel: bytes, data: bytes) -> None:
        request = decode("request", data)
        if request.get("uid") == self.uid:
            return  # our own: done locally already
        kind, rid = request.get("type"), request.get("requestId")
        if kind == BROADCAST and isinstance(rid, str):
            self.answer_broadcast(str(request.get("uid")), rid, request)
        elif kind == REMOTE_FETCH:
            sockets = describe(await self.here_fetch(opts_of(request)))
            await self._respond({"requestId": rid, "sockets": sockets})
        elif kind in (REMOTE_JOIN, REMOTE_LEAVE) and "opts" in request:
            join = self.here_join if kind == REMOTE_JOIN else self.here_leave
            await join(opts_of(request), rooms_of(request.get("rooms")))
        elif kind == REMOTE_DISCONNECT and "opts" in request:
            await self.here_disconnect(opts_of(request), bool(request.get("close")))
        elif kind == SERVER_SIDE_EMIT:
            self.exchange.spawn(self.answer_server_side, str(request.get("uid")), rid, request.get("data") or [])
        elif kind == ALL_ROOMS:
            await self._respond({"requestId": rid, "rooms": sorted(await self.here_rooms())})
        elif kind == SOCKETS:
            opts = BroadcastOptions(frozenset(rooms_of(request.get("rooms"))), local=True)
            await self._respond({"requestId": rid, "sockets": [s.id for s in await self.here_fetch(opts)]})

    async def _respond(self, response: dict[str, Any]) -> None:
        await self.exchange.publish_quietly(self.response_channel, encode("response", response))

    async def server_side_response(self, requester: str, rid: str, result: Any) -> None:
        await self._respond({"type": SERVER_SIDE_EMIT, "requestId": rid, "data": result})

    def ack_response(self, requester: str, count: bool, body: dict[str, Any]) -> None:
        response = {"type": BROADCAST_CLIENT_COUNT if count else BROADCAST_ACK, **body}
        self.exchange.publish_soon(self.response_channel, encode("response", response))

    def on_response(self, channel: bytes, data: bytes) -> None:
        response = decode("response", data)
        rid, kind = response.get("requestId"), response.get("type")
        if kind == BROADCAST_CLIENT_COUNT:
            self.ack_counted(rid, response.get("clientCount"))
        elif kind == BROADCAST_ACK:
            self.ack_replied(rid, response.get("packet"))
        elif kind == SERVER_SIDE_EMIT:
            self.resolve(rid, response.get("data"))
        else:
            self.resolve(rid, response)
