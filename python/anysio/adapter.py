"""The adapter seam (the seed's ``BroadcastAdaptor`` / ``SetAdaptor``, Node's ``Adapter``).

One adapter per namespace holds room membership and carries broadcasts. ``Adapter`` is the in-process default:
rooms live in Rust and a broadcast is encoded once and written to every local target from Rust. A worker bus or a
Redis adapter subclasses it: each call does the local part with ``super()`` and forwards the rest, unless
``opts.local`` is set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._wire import encode_args

if TYPE_CHECKING:
    from .server import Namespace
    from .socket import Socket


@dataclass(frozen=True)
class BroadcastOptions:
    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    local: bool = False
    volatile: bool = False


class Adapter:
    def __init__(self, nsp: Namespace) -> None:
        self.nsp = nsp
        self._core = nsp.server._core

    def add_all(self, socket: Socket, rooms: Iterable[str]) -> None:
        self._core.join(socket.key, list(rooms))

    def delete(self, socket: Socket, room: str) -> None:
        self._core.leave(socket.key, room)

    def socket_rooms(self, socket: Socket) -> list[str]:
        return self._core.rooms_of(socket.key)

    def _targets(self, opts: BroadcastOptions) -> list[int]:
        return self._core.targets(self.nsp.name, sorted(opts.rooms), sorted(opts.except_rooms))

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        """Send an event (``args[0]`` is its name) to every target; returns the keys of the sockets reached."""
        data, attachments = encode_args(args)
        return self._core.broadcast_event(
            self.nsp.name, data, sorted(opts.rooms), sorted(opts.except_rooms), attachments, ack_id
        )

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket]:
        sockets = self.nsp._by_key
        return [s for k in self._targets(opts) if (s := sockets.get(k)) is not None and s.connected]

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        for key in self._targets(opts):
            self._core.join(key, rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        for key in self._targets(opts):
            for room in rooms:
                self._core.leave(key, room)

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        for key in self._targets(opts):
            self._core.disconnect(key, close)

    async def server_side_emit(self, args: list[Any]) -> None:
        """Node's ``serverSideEmit``: with one process there is no other server to tell."""

    def socket_count(self) -> int:
        return self._core.socket_count(self.nsp.name)
