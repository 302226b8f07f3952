"""The adapter seam (the seed's ``BroadcastAdaptor`` / ``SetAdaptor``, Node's ``Adapter``).

One adapter per namespace holds room membership and carries broadcasts. ``Adapter`` is the in-process default:
rooms live in Rust and a broadcast is encoded once and written to every local target from Rust. A worker bus or a
Redis adapter subclasses it: each call does the local part with ``super()`` and forwards the rest, unless
``opts.local`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio

from ..codec.wire import encode_args
from ..exceptions import AckTimeout, reply_value

if TYPE_CHECKING:
    from ..server.server import Namespace
    from ..server.socket import Socket


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
            self.nsp.name, data, sorted(opts.rooms), sorted(opts.except_rooms), attachments, ack_id, opts.volatile
        )

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        """Broadcast with one ack id and gather every target's reply. Raises AckTimeout (with the replies that
        came) when some are missing after ``timeout``; sockets that disconnect meanwhile count as done."""
        dispatcher = self.nsp.server._dispatcher
        ack_id = self.nsp._next_id()
        replies: list[Any] = []
        pending: set[int] = set()
        done = anyio.Event()

        def resolver(key: int) -> Callable[[list[Any] | None], None]:
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
            dispatcher.expect_ack(key, ack_id, resolver(key))
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
                dispatcher.forget_ack(key, ack_id)
        return replies

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
        del args

    def socket_count(self) -> int:
        return self._core.socket_count(self.nsp.name)
