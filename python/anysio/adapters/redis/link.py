"""What both modes of the Redis adapter share (``LinkedAdapter``): an operation does its local part and its
remote half (``remote_*``: the ``Uplink`` that the workers of a machine share), requests gather the other
servers' responses, and what the other servers ask is done here: in this process, or, with workers, on every
worker of the machine (``machine``, a ``MachineScope``). The modes say how each message looks on the wire."""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from ...codec.wire import encode_args
from ...exceptions import AckTimeout, ClusterError
from ..base import (
    Adapter,
    AdapterNamespace,
    BroadcastOptions,
    FetchedSocket,
    LocalSocket,
    MachineScope,
    RemoteSocket,
    RoomsWanted,
)
from .exchange import Exchange
from .messages import DEFAULT_KEY, AckGather, Gather, opts_of, remote_descs

logger = logging.getLogger("anysio")

#: Each client's reply to a broadcast with acks, as the Socket.IO layer resolves it (None: the socket left).
AckValues = list[Any] | None


@dataclass(frozen=True)
class LinkOptions:
    """A cluster's options, as Node's adapters take them."""

    key: str = DEFAULT_KEY
    requests_timeout: float = 5.0
    #: The sharded adapter's ``subscriptionMode``: "static", "dynamic" or "dynamic-private".
    subscription_mode: str = "dynamic"
    #: How often the sharded adapter unsubscribes the channels of rooms that emptied meanwhile.
    room_sweep_interval: float = 5.0


class LinkedAdapter(Adapter, abc.ABC):
    """One namespace's adapter on a Redis ``Exchange``, in either mode."""

    def __init__(
        self, nsp: AdapterNamespace, exchange: Exchange, options: LinkOptions, machine: MachineScope | None = None
    ) -> None:
        super().__init__(nsp)
        self.exchange = exchange
        self.options = options
        #: With workers, every worker of this machine (what other machines ask is done there); else None.
        self.machine = machine
        self.uid = self.new_id()
        self._requests: dict[str, Gather] = {}
        self._ack_requests: dict[str, AckGather] = {}

    # ---- what each mode puts on the wire ----------------------------------------------------------------------

    @abc.abstractmethod
    def new_id(self) -> str:
        """A uid or a request id, as this mode's Node adapter makes them."""

    @abc.abstractmethod
    async def remote_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None: ...

    @abc.abstractmethod
    def ack_request(self, rid: str, args: list[Any], opts: BroadcastOptions, timeout_ms: int) -> tuple[str, bytes]:
        """A broadcast with acks: its channel and bytes."""

    @abc.abstractmethod
    def fetch_request(self, rid: str, opts: BroadcastOptions) -> tuple[str, bytes]: ...

    @abc.abstractmethod
    def server_side_request(self, rid: str | None, args: list[Any]) -> tuple[str, bytes]: ...

    @abc.abstractmethod
    def timeout_message(self, what: str, got: int, expected: int) -> str: ...

    @abc.abstractmethod
    def ack_response(self, requester: str, count: bool, body: dict[str, Any]) -> None:
        """Publish (without waiting) a response to another server's broadcast with acks: a client count
        (``body``: ``{requestId, clientCount}``) or a client's reply (``{requestId[, packet]}``)."""

    @abc.abstractmethod
    async def server_side_response(self, requester: str, rid: str, result: Any) -> None:
        """Answer another server's server-side emit with ack with this server's handler's ``result``."""

    @abc.abstractmethod
    async def remote_join(self, opts: BroadcastOptions, rooms: list[str]) -> None: ...

    @abc.abstractmethod
    async def remote_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None: ...

    @abc.abstractmethod
    async def remote_disconnect(self, opts: BroadcastOptions, close: bool) -> None: ...

    @abc.abstractmethod
    async def server_count(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening (a namespace's adapter replaced by another)."""

    async def remote_all_rooms(self) -> set[str]:
        """The other servers' rooms (the classic adapter asks them; socket.io-adapter's cluster adapter, which the
        sharded one is, has no such request)."""
        return set()

    @property
    def rooms_wanted(self) -> RoomsWanted:
        """Which rooms need a channel of their own (the sharded adapter's dynamic modes)."""
        return "none"

    def rooms_joined(self, rooms: list[str]) -> None:
        """Sockets of this machine joined these rooms."""

    def rooms_left(self, rooms: list[str]) -> None:
        """Sockets of this process left these rooms."""

    # ---- this process's sockets (the namespace's adapter, without workers) ------------------------------------

    def add_all(self, socket: LocalSocket, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_all(socket, rooms)
        if self.rooms_wanted != "none":
            self.rooms_joined(rooms)

    def delete(self, socket: LocalSocket, room: str) -> None:
        super().delete(socket, room)
        self.rooms_left([room])

    def socket_connected(self, socket: LocalSocket) -> None:
        if self.rooms_wanted == "all":
            self.rooms_joined([socket.id])

    # ---- what this server does (origin) ---------------------------------------------------------------------

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        data, attachments = encode_args(args)  # once, for the local sockets and for Redis
        keys = self.broadcast_packet(data, attachments, opts, ack_id)
        if not opts.local:
            await self.remote_broadcast(data, attachments, opts)
        return keys

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        if opts.local:
            return await super().broadcast_with_ack(args, opts, timeout)
        wait = timeout if timeout is not None else self.options.requests_timeout
        replies: list[Any] = []
        missing = False

        async def local() -> None:
            nonlocal missing
            try:
                replies.extend(await Adapter.broadcast_with_ack(self, args, replace(opts, local=True), timeout))
            except AckTimeout as e:
                replies.extend(e.replies)
                missing = True

        async def remote() -> None:
            nonlocal missing
            found, incomplete = await self.remote_broadcast_with_ack(args, opts, timeout)
            replies.extend(found)
            missing = missing or incomplete

        async with anyio.create_task_group() as tg:
            tg.start_soon(remote)  # first: it publishes the request before the local delivery
            tg.start_soon(local)
        if missing:
            raise AckTimeout(f"some clients did not acknowledge {args[0]!r} in {wait} s", replies)
        return replies

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        found = await super().fetch_sockets(opts)
        if not opts.local:
            found.extend(RemoteSocket(self, desc) for desc in await self.remote_fetch(opts))
        return found

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await self.here_join(opts, rooms)
        if not opts.local:
            await self.remote_join(opts, rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await self.here_leave(opts, rooms)
        if not opts.local:
            await self.remote_leave(opts, rooms)

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.local:
            await self.remote_disconnect(opts, close)
        await super().disconnect_sockets(opts, close)

    async def server_side_emit(self, args: list[Any]) -> None:
        await self.remote_server_side_emit(args)

    async def server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        return await self.remote_server_side_emit_with_ack(args, timeout)

    async def all_rooms(self) -> set[str]:
        """Node's ``allRooms``: every room of the namespace, on every server."""
        return await self.here_rooms() | await self.remote_all_rooms()

    # ---- the remote half (Uplink), shared by both modes ------------------------------------------------------

    async def remote_broadcast_with_ack(
        self, args: list[Any], opts: BroadcastOptions, timeout: float | None
    ) -> tuple[list[Any], bool]:
        """The other servers' replies, and whether some are missing: complete once every other server said how
        many clients it reached (NUMSUB, asked after the publish, says how many servers there are) and that many
        replies came."""
        wait = timeout if timeout is not None else self.options.requests_timeout
        rid = self.new_id()
        gather = self._ack_requests[rid] = AckGather()
        missing = False
        try:
            await self.exchange.publish_quietly(*self.ack_request(rid, args, opts, math.ceil(wait * 1000)))
            with anyio.move_on_after(wait):
                try:
                    gather.servers = max(0, await self.server_count() - 1)
                except ClusterError:
                    gather.servers = 0
                    missing = True
                gather.check()
                await gather.done.wait()
            missing = missing or not gather.done.is_set()
        finally:
            del self._ack_requests[rid]
        return gather.replies, missing

    async def gather(self, rid: str, request: tuple[str, bytes], expected: int, timeout: float) -> list[Any]:
        """Publish a request and return the responses that came within ``timeout`` (at most ``expected``)."""
        gather = self._requests[rid] = Gather(expected)
        try:
            await self.exchange.publish(*request)
            with anyio.move_on_after(timeout):
                await gather.done.wait()
        finally:
            del self._requests[rid]
        return gather.replies

    async def remote_fetch(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        others = await self.server_count() - 1
        if others <= 0:
            return []
        rid = self.new_id()
        replies = await self.gather(rid, self.fetch_request(rid, opts), others, self.options.requests_timeout)
        if len(replies) < others:
            raise ClusterError(self.timeout_message("fetchSockets", len(replies), others))
        return remote_descs(replies)

    async def remote_server_side_emit(self, args: list[Any]) -> None:
        await self.exchange.publish_quietly(*self.server_side_request(None, args))

    async def remote_server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        others = await self.server_count() - 1
        if others <= 0:
            return []
        rid = self.new_id()
        wait = timeout if timeout is not None else self.options.requests_timeout
        replies = await self.gather(rid, self.server_side_request(rid, args), others, wait)
        if len(replies) < others:
            raise AckTimeout(f"timeout reached: only {len(replies)} responses received out of {others}", replies)
        return replies

    # ---- responses ---------------------------------------------------------------------------------------------

    def resolve(self, rid: Any, value: Any) -> None:
        """A response to a request of ours (fetch, rooms, server-side emit with ack)."""
        gather = self._requests.get(rid) if isinstance(rid, str) else None
        if gather is not None:
            gather.add(value)

    def ack_counted(self, rid: Any, clients: Any) -> None:
        """Another server reached ``clients`` clients with a broadcast with acks of ours."""
        ack = self._ack_requests.get(rid) if isinstance(rid, str) else None
        if ack is not None:
            ack.count(int(clients or 0))

    def ack_replied(self, rid: Any, value: Any) -> None:
        ack = self._ack_requests.get(rid) if isinstance(rid, str) else None
        if ack is not None:
            ack.reply(value)

    # ---- what the others ask (receiver): here is this process, or every worker of the machine ---------------

    def here_deliver(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> Awaitable[None] | None:
        """A broadcast heard from Redis, written to the local targets in Rust (and relayed to the other workers)."""
        if self.machine is not None:
            return self.machine.machine_deliver(data, attachments, opts)
        self.broadcast_packet(data, attachments, opts)
        return None

    async def here_fetch(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        if self.machine is not None:
            return await self.machine.machine_fetch(opts)
        return await Adapter.fetch_sockets(self, opts)

    async def here_join(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        if self.machine is not None:
            await self.machine.machine_join(opts, rooms)
        else:
            await Adapter.add_sockets(self, opts, rooms)
        if self.rooms_wanted != "none":
            self.rooms_joined(rooms)

    async def here_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        if self.machine is not None:
            await self.machine.machine_leave(opts, rooms)
        else:
            await Adapter.del_sockets(self, opts, rooms)
            self.rooms_left(rooms)

    async def here_disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        if self.machine is not None:
            await self.machine.machine_disconnect(opts, close)
        else:
            await Adapter.disconnect_sockets(self, opts, close)

    async def here_rooms(self) -> set[str]:
        return await self.machine.machine_rooms() if self.machine is not None else self.local_rooms()

    async def answer_server_side(self, requester: str, rid: str | None, args: list[Any]) -> None:
        """A server-side event from another server: every worker hears it, and this one's handler answers (when
        the event has a request id ``rid``)."""
        if self.machine is not None:
            await self.machine.machine_server_side(args)
        receive: Callable[[list[Any]], Awaitable[Any]] | None = getattr(self.nsp, "receive_server_side", None)
        if receive is None:
            return
        try:
            result = await receive(args)
        except Exception:
            logger.exception("server-side event %r failed", args[0] if args else None)
            return
        if rid is not None:
            await self.server_side_response(requester, rid, result)

    def answer_broadcast(self, requester: str, rid: str, request: dict[str, Any]) -> None:
        """A broadcast with acks from another server (``request``: ``{packet, opts}``): deliver here with an ack id
        of our own, tell the origin how many clients got it (even none: a silent server makes Node's origin time
        out), then forward each client's reply as it comes, until the origin's timeout."""

        def count(n: int) -> None:
            self.ack_response(requester, True, {"requestId": rid, "clientCount": n})

        def forward(values: list[Any]) -> None:
            self.ack_response(requester, False, {"requestId": rid, **({"packet": values[0]} if values else {})})

        packet = request.get("packet") or {}
        flags = (request.get("opts") or {}).get("flags") or {}
        data, attachments = encode_args(packet.get("data") or [])
        opts = opts_of(request, with_flags=True)
        timeout = flags.get("timeout")
        wait = timeout / 1000 if isinstance(timeout, int | float) else self.options.requests_timeout

        def on_reply(values: AckValues) -> None:
            if values is not None:
                forward(values)

        acks = self.nsp.acks
        ack_id = acks.next_id()
        keys = self.broadcast_packet(data, attachments, opts, ack_id)
        for key in keys:
            acks.expect(key, ack_id, on_reply)
        if self.machine is not None:
            self.exchange.spawn(self._answer_for_machine, rid, data, attachments, opts, wait, len(keys), count, forward)
        else:
            count(len(keys))
        if keys:
            self.exchange.spawn(self._forget_acks, keys, ack_id, wait)

    async def _answer_for_machine(
        self,
        rid: str,
        data: str,
        attachments: list[bytes],
        opts: BroadcastOptions,
        wait: float,
        here: int,
        count: Callable[[int], None],
        forward: Callable[[list[Any]], None],
    ) -> None:
        """One client count for the whole machine: this process's sockets and the other workers'."""
        assert self.machine is not None
        try:
            count(here + await self.machine.machine_ack_peers(rid, data, attachments, opts, wait, forward))
            await anyio.sleep(wait)  # Node's cleanup timer: replies after the origin's timeout are dropped
        finally:
            self.machine.machine_ack_done(rid)

    async def _forget_acks(self, keys: list[int], ack_id: int, wait: float) -> None:
        await anyio.sleep(wait)  # Node's cleanup timer: replies after the origin's timeout are dropped
        for key in keys:
            self.nsp.acks.forget(key, ack_id)
