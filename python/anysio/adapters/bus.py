"""The adapter that extends rooms, broadcasts and socket queries over the workers' bus (``anysio.ipc``).

Every worker keeps its own sockets and rooms (in Rust); a broadcast is written locally and published to the other
workers, which write it to their own targets. Queries (``fetch_sockets``, broadcasts with acks) gather every
worker's answer. Binary attachments travel base64-encoded.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from ..codec.wire import decode_args, encode_args
from ..exceptions import AckTimeout, ClusterError, reply_value
from ..ipc import Bus, Handler, Message
from .base import (
    Adapter,
    AdapterNamespace,
    BroadcastOptions,
    FetchedSocket,
    LocalSocket,
    RemoteSocket,
    RoomsWanted,
    Uplink,
)

if TYPE_CHECKING:
    from .._native import SessionTuple

logger = logging.getLogger("anysio")


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode() for b in items]


def _unb64(items: list[str]) -> list[bytes]:
    return [base64.b64decode(s) for s in items]


def _pack(values: list[Any]) -> Message:
    """Values (binary included) as a bus message's fields."""
    data, attachments = encode_args(values)
    return {"data": data, "att": _b64(attachments)}


def _unpack(msg: Message) -> list[Any]:
    values: list[Any] = decode_args(msg["data"], _unb64(msg["att"]) or None)
    return values


def _pack_replies(replies: list[Any]) -> Message:
    """A broadcast's ack replies (each ``reply_value``'s: one value, a tuple of several, None) as each one's
    values, so that ``_unpack_replies`` gives the same: a tuple sent as a plain array would come back a list."""
    return _pack([list(r) if isinstance(r, tuple) else [] if r is None else [r] for r in replies])


def _unpack_replies(msg: Message) -> list[Any]:
    return [reply_value(values) for values in _unpack(msg)]


#: The worker that holds the link to other machines (Redis), when there is one.
HOLDER = 0


class BusAdapter(Adapter):
    """The in-process adapter, extended over the bus to every worker on this machine, and through ``uplink`` (a
    Redis adapter's remote half, held by one worker and reached by the others over the bus) to other machines."""

    timeout = 5.0

    def __init__(self, nsp: AdapterNamespace, bus: Bus, uplink: Uplink | None = None) -> None:
        super().__init__(nsp)
        self.bus = bus
        self.uplink = uplink
        self._ack_forwards: dict[str, Callable[[list[Any]], None]] = {}

    def _opts_msg(self, opts: BroadcastOptions) -> Message:
        return {"nsp": self.nsp.name, "rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}

    # Rooms this worker's sockets join, told to the link (which may subscribe to them one by one).
    def add_all(self, socket: LocalSocket, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_all(socket, rooms)
        if self.uplink is not None and self.uplink.rooms_wanted != "none":
            self.uplink.rooms_joined(rooms)

    def socket_connected(self, socket: LocalSocket) -> None:
        if self.uplink is not None and self.uplink.rooms_wanted == "all":
            self.uplink.rooms_joined([socket.id])

    async def all_rooms(self) -> set[str]:
        rooms = await self.machine_rooms()
        return rooms | await self.uplink.remote_all_rooms() if self.uplink is not None else rooms

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        data, attachments = encode_args(args)  # once, for the local sockets, the bus and the uplink
        keys = self.broadcast_packet(data, attachments, opts, ack_id)
        if not opts.local:
            await self._publish_broadcast(data, attachments, opts)
            if self.uplink is not None:
                await self.uplink.remote_broadcast(data, attachments, opts)
        return keys

    async def _publish_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        msg = {"t": "broadcast", **self._opts_msg(opts), "data": data, "att": _b64(attachments)}
        await self.bus.publish({**msg, "volatile": opts.volatile, "compress": opts.compress})

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        """Local replies as the in-process adapter gathers them, plus every other worker's (and machine's)."""
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

        async def workers() -> None:
            nonlocal missing
            wait = (timeout if timeout is not None else self.timeout) + 1.0
            for reply in await self.bus.request(msg, wait):
                replies.extend(_unpack_replies(reply))
                missing += int(reply["missing"])

        async def machines(uplink: Uplink) -> None:
            nonlocal missing
            found, incomplete = await uplink.remote_broadcast_with_ack(args, opts, timeout)
            replies.extend(found)
            missing += int(incomplete)

        async with anyio.create_task_group() as tg:
            tg.start_soon(local)
            tg.start_soon(workers)
            if self.uplink is not None:
                tg.start_soon(machines, self.uplink)
        if missing:
            raise AckTimeout(f"some sockets did not acknowledge {args[0]!r} in {timeout} s", replies)
        return replies

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        if opts.local:
            return await super().fetch_sockets(opts)
        found = await self.machine_fetch(opts)
        if self.uplink is not None:
            found.extend(RemoteSocket(self, desc) for desc in await self.uplink.remote_fetch(opts))
        return found

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        if opts.local:
            return await super().add_sockets(opts, rooms)
        await self.machine_join(opts, rooms)
        if self.uplink is not None:
            await self.uplink.remote_join(opts, rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        if opts.local:
            return await super().del_sockets(opts, rooms)
        await self.machine_leave(opts, rooms)
        if self.uplink is not None:
            await self.uplink.remote_leave(opts, rooms)

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if opts.local:
            return await super().disconnect_sockets(opts, close)
        await self.machine_disconnect(opts, close)
        if self.uplink is not None:
            await self.uplink.remote_disconnect(opts, close)

    async def server_side_emit(self, args: list[Any]) -> None:
        await self.machine_server_side(args)
        if self.uplink is not None:
            await self.uplink.remote_server_side_emit(args)

    async def server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        """One reply per other machine: the workers of one machine are one server to the cluster."""
        if self.uplink is None:
            return await super().server_side_emit_with_ack(args, timeout)
        return await self.uplink.remote_server_side_emit_with_ack(args, timeout)

    async def server_count(self) -> int:
        return await self.uplink.server_count() if self.uplink is not None else await super().server_count()

    async def restore_session(self, pid: str, offset: str) -> tuple[SessionTuple, dict[str, Any]] | None:
        """A disconnected socket another worker keeps, whose client came back to this one: that worker gives
        it up (``restore``)."""
        msg = {"t": "restore", "nsp": self.nsp.name, "pid": pid, "offset": offset}
        for reply in await self.bus.request(msg, self.timeout):
            if reply.get("session") is not None:
                return _session_of(reply["session"]), reply["data"]
        return None

    # ---- the whole machine (MachineScope: what the uplink does here when other machines ask) ------------------

    async def machine_deliver(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        self.broadcast_packet(data, attachments, opts)
        await self._publish_broadcast(data, attachments, opts)

    async def machine_fetch(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        found = await super().fetch_sockets(opts)
        for reply in await self.bus.request({"t": "fetch", **self._opts_msg(opts)}, self.timeout):
            found.extend(RemoteSocket(self, s) for s in reply["sockets"])
        return found

    async def machine_join(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().add_sockets(opts, rooms)
        await self.bus.publish({"t": "join", **self._opts_msg(opts), "to": rooms})

    async def machine_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().del_sockets(opts, rooms)
        await self.bus.publish({"t": "leave", **self._opts_msg(opts), "to": rooms})

    async def machine_disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        await super().disconnect_sockets(opts, close)
        await self.bus.publish({"t": "disconnect", **self._opts_msg(opts), "close": close})

    async def machine_server_side(self, args: list[Any]) -> None:
        await self.bus.publish({"t": "server_side", "nsp": self.nsp.name, **_pack(args)})

    async def machine_ack_peers(
        self,
        rid: str,
        data: str,
        attachments: list[bytes],
        opts: BroadcastOptions,
        timeout: float,
        on_reply: Callable[[list[Any]], None],
    ) -> int:
        self._ack_forwards[rid] = on_reply
        msg = {"t": "acks", **self._opts_msg(opts), "data": data, "att": _b64(attachments), "rid": rid}
        msg.update(volatile=opts.volatile, timeout=timeout)
        return sum(int(reply["count"]) for reply in await self.bus.request(msg, min(timeout, self.timeout)))

    def machine_ack_done(self, rid: str) -> None:
        self._ack_forwards.pop(rid, None)

    async def machine_rooms(self) -> set[str]:
        rooms = self.local_rooms()
        replies = await self.bus.request({"t": "rooms", "nsp": self.nsp.name}, self.timeout)
        if len(replies) < len(self.bus.peers):
            raise ClusterError(f"{len(self.bus.peers) - len(replies)} workers did not tell their rooms")
        for reply in replies:
            rooms.update(reply["rooms"])
        return rooms

    def ack_reply(self, rid: str, values: list[Any]) -> None:
        """A client of another worker answered a broadcast from another machine (``machine_ack_peers``)."""
        forward = self._ack_forwards.get(rid)
        if forward is not None:
            forward(values)


class HolderLink:
    """The uplink of a worker that does not hold the link to other machines: each operation is asked of the
    worker that does (``HOLDER``), over the bus, and done there by its uplink."""

    def __init__(
        self, bus: Bus, nsp: str, holder: int = HOLDER, timeout: float = 5.0, rooms_wanted: RoomsWanted = "none"
    ) -> None:
        self.bus = bus
        self.nsp = nsp
        self.holder = holder
        self.timeout = timeout
        self.rooms_wanted = rooms_wanted
        self._unreachable = False

    def _msg(self, op: str, opts: BroadcastOptions | None = None, **extra: Any) -> Message:
        msg: Message = {"t": "up", "op": op, "nsp": self.nsp, **extra}
        if opts is not None:
            msg.update(rooms=sorted(opts.rooms), volatile=opts.volatile)
            msg["except"] = sorted(opts.except_rooms)
        return msg

    async def _tell(self, msg: Message) -> None:
        if await self.bus.send(self.holder, msg):
            self._unreachable = False
        elif not self._unreachable:  # one line per outage (the holder restarting, say)
            self._unreachable = True
            logger.warning("worker %d, which links this machine to the others, is unreachable: dropped", self.holder)

    async def _ask(self, msg: Message, timeout: float) -> Message:
        reply = await self.bus.ask(self.holder, msg, timeout)
        if reply is None:
            raise ClusterError(f"worker {self.holder}, which links this machine to the others, did not answer")
        if "error" in reply:
            raise ClusterError(reply["error"])
        return reply

    async def remote_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        await self._tell(self._msg("broadcast", opts, data=data, att=_b64(attachments)))

    async def remote_broadcast_with_ack(
        self, args: list[Any], opts: BroadcastOptions, timeout: float | None
    ) -> tuple[list[Any], bool]:
        wait = timeout if timeout is not None else self.timeout
        try:
            reply = await self._ask(self._msg("acks", opts, timeout=timeout, **_pack(args)), wait + 1.0)
        except ClusterError:
            return [], True
        return _unpack_replies(reply), bool(reply["missing"])

    async def remote_fetch(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        sockets: list[dict[str, Any]] = (await self._ask(self._msg("fetch", opts), self.timeout + 1.0))["sockets"]
        return sockets

    async def remote_join(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await self._tell(self._msg("join", opts, to=rooms))

    async def remote_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await self._tell(self._msg("leave", opts, to=rooms))

    async def remote_disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        await self._tell(self._msg("disconnect", opts, close=close))

    async def remote_server_side_emit(self, args: list[Any]) -> None:
        await self._tell(self._msg("server_side", **_pack(args)))

    async def remote_server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        wait = timeout if timeout is not None else self.timeout
        reply = await self._ask(self._msg("server_side_ack", timeout=timeout, **_pack(args)), wait + 1.0)
        if reply.get("timeout"):
            raise AckTimeout(reply["timeout"], _unpack(reply))
        return _unpack(reply)

    async def server_count(self) -> int:
        return int((await self._ask(self._msg("count"), self.timeout + 1.0))["count"])

    async def remote_all_rooms(self) -> set[str]:
        return set((await self._ask(self._msg("all_rooms"), self.timeout + 1.0))["rooms"])

    def rooms_joined(self, rooms: list[str]) -> None:
        if self.rooms_wanted != "none" and rooms:
            self.bus.spawn(self._tell, self._msg("rooms", to=rooms))


class ClusterNamespace(AdapterNamespace, Protocol):
    """What the bus needs from a namespace to serve the other workers' messages."""

    @property
    def adapter(self) -> Adapter: ...
    async def receive_server_side(self, args: list[Any]) -> Any:
        """Run the ``on_server_side`` handler of ``args[0]`` (an event another server emitted); returns its
        result."""
        ...

    def take_session(self, pid: str, offset: str) -> tuple[SessionTuple, dict[str, Any]] | None:
        """Give up a disconnected socket's state and data to the worker its client came back to."""
        ...


class ClusterServer(Protocol):
    def of(self, name: str) -> ClusterNamespace: ...


def _local_opts(msg: Message) -> BroadcastOptions:
    volatile, compress = bool(msg.get("volatile")), msg.get("compress") is not False
    return BroadcastOptions(frozenset(msg["rooms"]), frozenset(msg["except"]), True, volatile, compress)


class _Local:
    """Serves what other workers ask of this worker's own sockets (the local part of an operation:
    ``opts.local``). What needs no answer is done in order; what waits (for clients' acks, say) in a task of its
    own, so that the bus stream it came on is read on meanwhile."""

    def __init__(self, server: ClusterServer, bus: Bus) -> None:
        self.server = server
        self.bus = bus

    def nsp(self, msg: Message) -> ClusterNamespace:
        return self.server.of(msg["nsp"])

    def handlers(self) -> dict[str, Handler]:
        return {
            "broadcast": self.on_broadcast,
            "broadcast_ack": self.on_broadcast_ack,
            "fetch": self.on_fetch,
            "join": self.on_join,
            "leave": self.on_leave,
            "disconnect": self.on_disconnect,
            "server_side": self.on_server_side,
            "acks": self.on_acks,
            "ack_reply": self.on_ack_reply,
            "restore": self.on_restore,
            "rooms": self.on_rooms,
        }

    def on_broadcast(self, msg: Message) -> None:
        self.nsp(msg).adapter.broadcast_packet(msg["data"], _unb64(msg["att"]), _local_opts(msg))

    async def on_broadcast_ack(self, msg: Message) -> None:
        await self.bus.start(self._answer_broadcast_ack, msg)

    async def _answer_broadcast_ack(self, msg: Message, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        args = decode_args(msg["data"], _unb64(msg["att"]) or None)
        adapter = self.nsp(msg).adapter
        # The broadcast itself does not suspend: it is written before the messages after this one are read.
        task_status.started()
        try:
            replies, missing = await adapter.broadcast_with_ack(args, _local_opts(msg), msg["timeout"]), 0
        except AckTimeout as e:
            replies, missing = e.replies, 1
        await self.bus.reply(msg, {**_pack_replies(replies), "missing": missing})

    def on_acks(self, msg: Message) -> None:
        """A broadcast with acks from another machine, which the holder of the link relays: deliver, say how
        many sockets it reached, then pass each reply back as it comes."""
        n = self.nsp(msg)
        ack_id = n.acks.next_id()
        keys = n.adapter.broadcast_packet(msg["data"], _unb64(msg["att"]), _local_opts(msg), ack_id)
        bus = self.bus

        def forward(values: list[Any] | None) -> None:
            if values is not None:
                reply = {"t": "ack_reply", "nsp": msg["nsp"], "rid": msg["rid"], **_pack(values)}
                bus.spawn(bus.send, msg["from"], reply)

        for key in keys:
            n.acks.expect(key, ack_id, forward)
        bus.spawn(bus.reply, msg, {"count": len(keys)})
        if keys:
            bus.spawn(self._forget_acks, n, keys, ack_id, float(msg["timeout"]))

    @staticmethod
    async def _forget_acks(n: ClusterNamespace, keys: list[int], ack_id: int, wait: float) -> None:
        await anyio.sleep(wait)  # the origin's timeout: later replies are dropped, as Node's
        for key in keys:
            n.acks.forget(key, ack_id)

    def on_ack_reply(self, msg: Message) -> None:
        adapter = self.nsp(msg).adapter
        if isinstance(adapter, BusAdapter):
            adapter.ack_reply(msg["rid"], _unpack(msg))

    async def on_fetch(self, msg: Message) -> None:
        sockets = await self.nsp(msg).adapter.fetch_sockets(_local_opts(msg))
        described = [
            {"id": s.id, "rooms": sorted(s.rooms), "data": _jsonable(s.data), "handshake": _handshake(s)}
            for s in sockets
        ]
        await self.bus.reply(msg, {"sockets": described})

    async def on_join(self, msg: Message) -> None:
        await self.nsp(msg).adapter.add_sockets(_local_opts(msg), msg["to"])

    async def on_leave(self, msg: Message) -> None:
        await self.nsp(msg).adapter.del_sockets(_local_opts(msg), msg["to"])

    async def on_disconnect(self, msg: Message) -> None:
        await self.nsp(msg).adapter.disconnect_sockets(_local_opts(msg), msg["close"])

    async def on_server_side(self, msg: Message) -> None:
        await self.nsp(msg).receive_server_side(_unpack(msg))

    async def on_rooms(self, msg: Message) -> None:
        await self.bus.reply(msg, {"rooms": sorted(self.nsp(msg).adapter.local_rooms())})

    async def on_restore(self, msg: Message) -> None:
        taken = self.nsp(msg).take_session(msg["pid"], msg["offset"])
        body = {"session": None} if taken is None else {"session": _session_msg(taken[0]), "data": _jsonable(taken[1])}
        await self.bus.reply(msg, body)


class _Relay:
    """Serves what other workers ask of the link to other machines, which this worker holds (``HOLDER``)."""

    def __init__(self, local: _Local) -> None:
        self.local = local
        self.bus = local.bus

    async def on_up(self, msg: Message) -> None:
        adapter = self.local.nsp(msg).adapter
        uplink = adapter.uplink if isinstance(adapter, BusAdapter) else None
        if uplink is None:
            if "req" in msg:
                await self.bus.reply(msg, {"error": f"worker {self.bus.index} holds no link to other machines"})
            return
        op = msg["op"]
        o = BroadcastOptions(frozenset(msg.get("rooms", ())), frozenset(msg.get("except", ())))
        o = BroadcastOptions(o.rooms, o.except_rooms, volatile=bool(msg.get("volatile")))
        # What needs no answer is done in order, here; what waits for other machines, in a task of its own.
        if op == "broadcast":
            await uplink.remote_broadcast(msg["data"], _unb64(msg["att"]), o)
        elif op == "join":
            await uplink.remote_join(o, msg["to"])
        elif op == "leave":
            await uplink.remote_leave(o, msg["to"])
        elif op == "disconnect":
            await uplink.remote_disconnect(o, bool(msg["close"]))
        elif op == "server_side":
            await uplink.remote_server_side_emit(_unpack(msg))
        elif op == "rooms":
            uplink.rooms_joined(msg["to"])
        else:
            self.bus.spawn(self._answer, uplink, op, o, msg)

    async def _answer(self, uplink: Uplink, op: str, o: BroadcastOptions, msg: Message) -> None:
        body: Message
        try:
            if op == "fetch":
                body = {"sockets": [_jsonable(desc) for desc in await uplink.remote_fetch(o)]}
            elif op == "acks":
                replies, missing = await uplink.remote_broadcast_with_ack(_unpack(msg), o, msg["timeout"])
                body = {**_pack_replies(replies), "missing": missing}
            elif op == "server_side_ack":
                try:
                    body = _pack(await uplink.remote_server_side_emit_with_ack(_unpack(msg), msg["timeout"]))
                except AckTimeout as e:
                    body = {**_pack(e.replies), "timeout": str(e)}
            elif op == "count":
                body = {"count": await uplink.server_count()}
            elif op == "all_rooms":
                body = {"rooms": sorted(await uplink.remote_all_rooms())}
            else:
                body = {"error": f"unknown operation {op!r}"}
        except ClusterError as e:
            body = {"error": str(e)}
        await self.bus.reply(msg, body)


def attach(server: ClusterServer, bus: Bus) -> None:
    """Serve the bus's messages with ``server``'s namespaces (only their local part: ``opts.local``), and, in the
    worker that holds it, with the link to other machines."""
    local = _Local(server, bus)
    for kind, handler in {**local.handlers(), "up": _Relay(local).on_up}.items():
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


def _session_msg(session: SessionTuple) -> list[Any]:
    """A recovered state as JSON: binary messages (attachments) as {"b": base64}."""
    sid, pid, rooms, last, missed = session
    packets = [[off, [m if isinstance(m, str) else {"b": _b64([m])[0]} for m in msgs]] for off, msgs in missed]
    return [sid, pid, rooms, last, packets]


def _session_of(msg: list[Any]) -> SessionTuple:
    sid, pid, rooms, last, packets = msg
    missed = [(off, [m if isinstance(m, str) else _unb64([m["b"]])[0] for m in msgs]) for off, msgs in packets]
    return (sid, pid, list(rooms), last, missed)
