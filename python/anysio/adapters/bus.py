"""The adapter that extends rooms, broadcasts and socket queries over the workers' bus (``anysio.ipc``).

Every worker keeps its own sockets and rooms (in Rust); a broadcast is written locally and published to the other
workers, which write it to their own targets. Queries (``fetch_sockets``, broadcasts with acks) gather every
worker's answer. Binary attachments travel base64-encoded.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

import anyio

from ..codec.wire import decode_args, encode_args
from ..exceptions import AckTimeout
from ..ipc import Bus, Message
from .base import Adapter, AdapterNamespace, BroadcastOptions, FetchedSocket, RemoteSocket


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode() for b in items]


def _unb64(items: list[str]) -> list[bytes]:
    return [base64.b64decode(s) for s in items]


class BusAdapter(Adapter):
    """The in-process adapter, extended over the bus to every worker on this machine."""

    timeout = 5.0

    def __init__(self, nsp: AdapterNamespace, bus: Bus) -> None:
        super().__init__(nsp)
        self.bus = bus

    def _opts_msg(self, opts: BroadcastOptions) -> Message:
        return {"nsp": self.nsp.name, "rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        keys = await super().broadcast(args, opts, ack_id)
        if not opts.local:
            data, attachments = encode_args(args)
            msg = {"t": "broadcast", **self._opts_msg(opts), "data": data, "att": _b64(attachments)}
            await self.bus.publish({**msg, "volatile": opts.volatile})
        return keys

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        """Local replies as the in-process adapter gathers them, plus every other worker's."""
        if opts.local:
            return await super().broadcast_with_ack(args, opts, timeout)
        data, attachments = encode_args(args)
        msg = {"t": "broadcast_ack", **self._opts_msg(opts), "data": data, "att": _b64(attachments)}
        msg["timeout"] = timeout if timeout is not None else self.timeout
        replies: list[Any] = []
        missing = 0

        async def local() -> None:
            nonlocal missing
            try:
                replies.extend(await super(BusAdapter, self).broadcast_with_ack(args, opts, timeout))
            except AckTimeout as e:
                replies.extend(e.replies)
                missing += 1

        async def remote() -> None:
            nonlocal missing
            wait = (timeout if timeout is not None else self.timeout) + 1.0
            for reply in await self.bus.request(msg, wait):
                replies.extend(reply["replies"])
                missing += int(reply["missing"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(local)
            tg.start_soon(remote)
        if missing:
            raise AckTimeout(f"some sockets did not acknowledge {args[0]!r} in {timeout} s", replies)
        return replies

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        found = await super().fetch_sockets(opts)
        if opts.local:
            return found
        for reply in await self.bus.request({"t": "fetch", **self._opts_msg(opts)}, self.timeout):
            found.extend(RemoteSocket(self, s) for s in reply["sockets"])
        return found

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().add_sockets(opts, rooms)
        if not opts.local:
            await self.bus.publish({"t": "join", **self._opts_msg(opts), "to": rooms})

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().del_sockets(opts, rooms)
        if not opts.local:
            await self.bus.publish({"t": "leave", **self._opts_msg(opts), "to": rooms})

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        await super().disconnect_sockets(opts, close)
        if not opts.local:
            await self.bus.publish({"t": "disconnect", **self._opts_msg(opts), "close": close})

    async def server_side_emit(self, args: list[Any]) -> None:
        data, attachments = encode_args(args)
        await self.bus.publish({"t": "server_side", "nsp": self.nsp.name, "data": data, "att": _b64(attachments)})


class ClusterNamespace(AdapterNamespace, Protocol):
    """What the bus needs from a namespace to serve the other workers' messages."""

    @property
    def adapter(self) -> Adapter: ...
    async def receive_server_side(self, args: list[Any]) -> None:
        """Run the ``on_server_side`` handler of ``args[0]`` (an event another server emitted)."""
        ...


class ClusterServer(Protocol):
    def of(self, name: str) -> ClusterNamespace: ...


def attach(server: ClusterServer, bus: Bus) -> None:
    """Serve the bus's messages with ``server``'s namespaces (only their local part: ``opts.local``)."""

    def nsp(msg: Message) -> ClusterNamespace:
        return server.of(msg["nsp"])

    def opts(msg: Message) -> BroadcastOptions:
        return BroadcastOptions(frozenset(msg["rooms"]), frozenset(msg["except"]), local=True)

    def on_broadcast(msg: Message) -> None:
        local = BroadcastOptions(frozenset(msg["rooms"]), frozenset(msg["except"]), True, msg["volatile"])
        nsp(msg).adapter.broadcast_packet(msg["data"], _unb64(msg["att"]), local)

    async def on_broadcast_ack(msg: Message) -> None:
        args = decode_args(msg["data"], _unb64(msg["att"]) or None)
        n = nsp(msg)
        try:
            replies, missing = await n.adapter.broadcast_with_ack(args, opts(msg), msg["timeout"]), 0
        except AckTimeout as e:
            replies, missing = e.replies, 1
        await bus.reply(msg, {"replies": replies, "missing": missing})

    async def on_fetch(msg: Message) -> None:
        sockets = await nsp(msg).adapter.fetch_sockets(opts(msg))
        described = [
            {"id": s.id, "rooms": sorted(s.rooms), "data": _jsonable(s.data), "handshake": _handshake(s)}
            for s in sockets
        ]
        await bus.reply(msg, {"sockets": described})

    async def on_join(msg: Message) -> None:
        await nsp(msg).adapter.add_sockets(opts(msg), msg["to"])

    async def on_leave(msg: Message) -> None:
        await nsp(msg).adapter.del_sockets(opts(msg), msg["to"])

    async def on_disconnect(msg: Message) -> None:
        await nsp(msg).adapter.disconnect_sockets(opts(msg), msg["close"])

    async def on_server_side(msg: Message) -> None:
        await nsp(msg).receive_server_side(decode_args(msg["data"], _unb64(msg["att"]) or None))

    for kind, handler in {
        "broadcast": on_broadcast,
        "broadcast_ack": on_broadcast_ack,
        "fetch": on_fetch,
        "join": on_join,
        "leave": on_leave,
        "disconnect": on_disconnect,
        "server_side": on_server_side,
    }.items():
        bus.on(kind, handler)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return {}
    return value


def _handshake(s: FetchedSocket) -> dict[str, Any]:
    h = s.handshake
    return {"headers": h.headers, "query": h.query, "address": h.address, "issued": h.issued, "auth": _jsonable(h.auth)}
