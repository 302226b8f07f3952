"""The adapter seam (the seed's ``BroadcastAdaptor`` / ``SetAdaptor``, Node's ``Adapter``).

One adapter per namespace holds room membership and carries broadcasts. ``Adapter`` is the in-process default:
rooms live in Rust and a broadcast is encoded once and written to every local target from Rust. A cluster adapter
(the workers' bus, later Redis) subclasses it: each call does the local part with ``super()`` and forwards the
rest, unless ``opts.local`` is set.

An adapter sees its namespace through ``AdapterNamespace`` and the namespace's sockets through ``LocalSocket``:
the server layer above provides both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import anyio

from ..codec.wire import encode_args
from ..engineio.runtime import SioCore
from ..exceptions import AckTimeout, reply_value

if TYPE_CHECKING:
    # A disconnected socket's state as the core hands it between workers (``EngineCore.take_session``).
    from .._native import SessionTuple

AckResolver = Callable[[list[Any] | None], None]
#: Which rooms a link to other machines subscribes to one by one (the sharded Redis adapter's subscription modes):
#: none, those that are not socket ids, or all of them.
RoomsWanted = Literal["none", "public", "all"]


@dataclass(frozen=True)
class BroadcastOptions:
    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    local: bool = False
    volatile: bool = False


class Acks:
    """The acknowledgements awaited from each socket, by ack id: registered by emits with an ack (to one socket or
    broadcast), resolved with the client's arguments, or with None when the socket goes first."""

    def __init__(self) -> None:
        self._pending: dict[int, dict[int, AckResolver]] = {}
        self._ids = 0

    def next_id(self) -> int:
        ack_id = self._ids
        self._ids += 1
        return ack_id

    def expect(self, socket: int, ack_id: int, resolve: AckResolver) -> None:
        self._pending.setdefault(socket, {})[ack_id] = resolve

    def forget(self, socket: int, ack_id: int) -> None:
        pending = self._pending.get(socket)
        if pending is not None:
            pending.pop(ack_id, None)

    def resolve(self, socket: int, ack_id: int, args: list[Any]) -> None:
        pending = self._pending.get(socket)
        resolve = pending.pop(ack_id, None) if pending is not None else None
        if resolve is not None:
            resolve(args)

    def cancel(self, socket: int) -> None:
        """The socket is gone: every ack awaited from it resolves with None."""
        for resolve in list(self._pending.pop(socket, {}).values()):
            resolve(None)


class HandshakeInfo(Protocol):
    """What every socket, local or remote, tells of its handshake."""

    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def query(self) -> dict[str, str]: ...
    @property
    def address(self) -> str | None: ...
    @property
    def issued(self) -> int: ...
    @property
    def auth(self) -> Any: ...


class FetchedSocket(Protocol):
    """A socket as ``fetch_sockets`` gives it, in this process or another (Node's ``RemoteSocket``)."""

    @property
    def id(self) -> str: ...
    @property
    def rooms(self) -> set[str]: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def handshake(self) -> HandshakeInfo: ...
    async def emit(self, event: str, *args: Any) -> None: ...
    async def disconnect(self, close: bool = False) -> None: ...


class LocalSocket(FetchedSocket, Protocol):
    """A socket of this process, named in the core by its key."""

    @property
    def key(self) -> int: ...
    @property
    def connected(self) -> bool: ...


class AdapterNamespace(Protocol):
    """What an adapter needs from its namespace."""

    @property
    def name(self) -> str: ...
    @property
    def core(self) -> SioCore: ...
    @property
    def acks(self) -> Acks: ...
    def socket(self, key: int) -> LocalSocket | None:
        """The namespace's socket with this key (connected or still connecting), if any."""
        ...

    #: How many of its connected sockets have outgoing catch-all listeners: while none has, a broadcast does
    #: nothing more than write.
    outgoing_watchers: int

    def notify_outgoing(self, keys: list[int], data: str, attachments: list[bytes]) -> None:
        """Tell the outgoing catch-all listeners of the sockets ``keys`` of an event written to them (``data``:
        the JSON text of its name and arguments)."""
        ...

    def rooms_changing(self, keys: list[int], rooms: list[str], join: bool) -> None:
        """The sockets ``keys`` are about to join (or leave) ``rooms``: told before, so that what watches the
        namespace learns which rooms each socket was not (or was) in."""
        ...


class Adapter:
    def __init__(self, nsp: AdapterNamespace) -> None:
        self.nsp = nsp

    def add_all(self, socket: LocalSocket, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        self.nsp.rooms_changing([socket.key], rooms, True)
        self.nsp.core.join(socket.key, rooms)

    def delete(self, socket: LocalSocket, room: str) -> None:
        self.nsp.rooms_changing([socket.key], [room], False)
        self.nsp.core.leave(socket.key, room)

    def socket_rooms(self, socket: LocalSocket) -> list[str]:
        return self.nsp.core.rooms_of(socket.key)

    def socket_connected(self, socket: LocalSocket) -> None:
        """The socket is connected (it is in the room of its own id): a hook for cluster adapters."""

    def local_rooms(self) -> set[str]:
        """Every room of the namespace in this process, socket ids included."""
        rooms: set[str] = set()
        for key in self._targets(BroadcastOptions()):
            rooms.update(self.nsp.core.rooms_of(key))
        return rooms

    async def all_rooms(self) -> set[str]:
        """Node's ``allRooms``: every room of the namespace, on every server of the cluster."""
        return self.local_rooms()

    def _targets(self, opts: BroadcastOptions) -> list[int]:
        return self.nsp.core.targets(self.nsp.name, sorted(opts.rooms), sorted(opts.except_rooms))

    def broadcast_packet(
        self, data: str, attachments: list[bytes], opts: BroadcastOptions, ack_id: int | None = None
    ) -> list[int]:
        """Write an encoded event (JSON text of its arguments, and their attachments) to every local target;
        returns the keys of the sockets reached."""
        keys = self.nsp.core.broadcast_event(
            self.nsp.name, data, sorted(opts.rooms), sorted(opts.except_rooms), attachments, ack_id, opts.volatile
        )
        if self.nsp.outgoing_watchers:
            self.nsp.notify_outgoing(keys, data, attachments)
        return keys

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        """Send an event (``args[0]`` is its name) to every target; returns the keys of the sockets reached."""
        data, attachments = encode_args(args)
        return self.broadcast_packet(data, attachments, opts, ack_id)

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        """Broadcast with one ack id and gather every target's reply. Raises AckTimeout (with the replies that
        came) when some are missing after ``timeout``; sockets that disconnect meanwhile count as done."""
        acks = self.nsp.acks
        ack_id = acks.next_id()
        replies: list[Any] = []
        pending: set[int] = set()
        done = anyio.Event()

        def resolver(key: int) -> AckResolver:
            def resolve(values: list[Any] | None) -> None:
                pending.discard(key)
                if values is not None:
                    replies.append(reply_value(values))
                if not pending:
                    done.set()

            return resolve

        # Nothing runs between the broadcast and the registrations: replies are read only in a later turn.
        keys = await Adapter.broadcast(self, args, replace(opts, local=True), ack_id)
        pending.update(keys)
        for key in keys:
            acks.expect(key, ack_id, resolver(key))
        try:
            if pending:
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    await done.wait()
        except TimeoutError:
            raise AckTimeout(
                f"{len(pending)} of {len(keys)} sockets did not acknowledge {args[0]!r} in {timeout} s",
                list(replies),
            ) from None
        finally:
            for key in keys:
                acks.forget(key, ack_id)
        return replies

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        found: list[FetchedSocket] = []
        for key in self._targets(opts):
            socket = self.nsp.socket(key)
            if socket is not None and socket.connected:
                found.append(socket)
        return found

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        keys = self._targets(opts)
        self.nsp.rooms_changing(keys, rooms, True)
        for key in keys:
            self.nsp.core.join(key, rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        keys = self._targets(opts)
        self.nsp.rooms_changing(keys, rooms, False)
        for key in keys:
            for room in rooms:
                self.nsp.core.leave(key, room)

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        for key in self._targets(opts):
            self.nsp.core.disconnect(key, close)

    async def server_side_emit(self, args: list[Any]) -> None:
        """Node's ``serverSideEmit``: with one process there is no other server to tell."""
        del args

    async def server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        """Node's ``serverSideEmitWithAck``: one reply per other server (none with one process). Raises
        AckTimeout (with the replies that came) when some are missing after ``timeout``."""
        del args, timeout
        return []

    async def server_count(self) -> int:
        """Node's ``serverCount``: the servers of the cluster, this one included."""
        return 1

    def socket_count(self) -> int:
        return self.nsp.core.socket_count(self.nsp.name)

    async def restore_session(self, pid: str, offset: str) -> tuple[SessionTuple, dict[str, Any]] | None:
        """Node's ``restoreSession``, for a disconnected socket this process does not keep (its own are the
        core's): the state and ``data`` another server gives up, or None. With one process there is none."""
        del pid, offset
        return None


class MachineScope(Protocol):
    """What a link to other machines (the Redis adapter) does on this machine when they ask: every worker's
    sockets, not only this process's (``BusAdapter``, held by the worker that holds the link)."""

    async def machine_deliver(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        """Write an encoded event to the targets of every worker."""
        ...

    async def machine_fetch(self, opts: BroadcastOptions) -> list[FetchedSocket]: ...
    async def machine_join(self, opts: BroadcastOptions, rooms: list[str]) -> None: ...
    async def machine_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None: ...
    async def machine_disconnect(self, opts: BroadcastOptions, close: bool) -> None: ...
    async def machine_server_side(self, args: list[Any]) -> None:
        """Tell the other workers of a server-side event (this process runs its own handler)."""
        ...

    async def machine_ack_peers(
        self,
        rid: str,
        data: str,
        attachments: list[bytes],
        opts: BroadcastOptions,
        timeout: float,
        on_reply: Callable[[list[Any]], None],
    ) -> int:
        """Deliver an event with acks to the other workers' targets; returns how many they reached, then passes
        each client's reply (its arguments) to ``on_reply`` until ``machine_ack_done(rid)``."""
        ...

    def machine_ack_done(self, rid: str) -> None: ...
    async def machine_rooms(self) -> set[str]:
        """Every room of the namespace on every worker. Raises ClusterError when a worker did not answer."""
        ...


class Uplink(Protocol):
    """The other machines of a cluster, for one namespace: what a Redis adapter does beyond this machine (its
    remote half). Workers share one: the worker that holds the link, the others reach it over the bus."""

    async def remote_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None: ...
    async def remote_broadcast_with_ack(
        self, args: list[Any], opts: BroadcastOptions, timeout: float | None
    ) -> tuple[list[Any], bool]:
        """The other machines' replies, and whether some are missing."""
        ...

    async def remote_fetch(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        """The other machines' sockets, as ``RemoteSocket`` descriptions."""
        ...

    async def remote_join(self, opts: BroadcastOptions, rooms: list[str]) -> None: ...
    async def remote_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None: ...
    async def remote_disconnect(self, opts: BroadcastOptions, close: bool) -> None: ...
    async def remote_server_side_emit(self, args: list[Any]) -> None: ...
    async def remote_server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]: ...
    async def remote_all_rooms(self) -> set[str]: ...
    async def server_count(self) -> int: ...
    @property
    def rooms_wanted(self) -> RoomsWanted: ...
    def rooms_joined(self, rooms: list[str]) -> None:
        """Sockets of this machine joined rooms, which the link may subscribe to one by one."""
        ...


@runtime_checkable
class ClusterLink(Protocol):
    """A link from a machine to the others (``anysio.RedisCluster``), given to ``Server(adapter=link.adapter)``.
    With workers one worker holds it (enters it, and builds each namespace's ``uplink`` over its whole machine);
    the others reach it over the bus."""

    def uplink(self, nsp: AdapterNamespace, machine: MachineScope) -> Uplink: ...
    @property
    def rooms_wanted(self) -> RoomsWanted:
        """Which rooms the other workers report to the one that holds the link (``Uplink.rooms_joined``)."""
        ...

    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc: Any) -> bool | None: ...


def cluster_link(factory: Callable[..., Any]) -> ClusterLink | None:
    """The link behind an adapter factory (``RedisCluster.adapter``, or the cluster itself), if any."""
    for candidate in (factory, getattr(factory, "__self__", None)):
        if isinstance(candidate, ClusterLink):
            return candidate
    return None


@dataclass(frozen=True)
class RemoteHandshake:
    """The handshake of a socket of another server, as it described it."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    address: str | None = None
    issued: int = 0
    auth: Any = None


class RemoteSocket:
    """A socket of another server of the cluster, as ``fetch_sockets`` returns it (Node's ``RemoteSocket``).
    What it is asked to do goes through the adapter, addressed to the room named by its id."""

    def __init__(self, adapter: Adapter, desc: dict[str, Any]) -> None:
        self._adapter = adapter
        self.id: str = desc["id"]
        self.rooms: set[str] = set(desc["rooms"])
        self.data: dict[str, Any] = desc["data"]
        hs = desc["handshake"]
        self.handshake = RemoteHandshake(hs["headers"], hs["query"], hs["address"], hs["issued"], hs["auth"])

    def _opts(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=frozenset([self.id]))

    async def emit(self, event: str, *args: Any) -> None:
        await self._adapter.broadcast([event, *args], self._opts())

    async def join(self, *rooms: str) -> None:
        await self._adapter.add_sockets(self._opts(), list(rooms))

    async def leave(self, *rooms: str) -> None:
        await self._adapter.del_sockets(self._opts(), list(rooms))

    async def disconnect(self, close: bool = False) -> None:
        await self._adapter.disconnect_sockets(self._opts(), close)

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id}>"
