"""Node's ``BroadcastOperator``: a set of targets in a namespace, and what can be done to them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..adapters.base import Adapter, BroadcastOptions, FetchedSocket


@dataclass(frozen=True)
class BroadcastOperator:
    """A set of targets (rooms, exceptions, flags) to emit to or act on; each method returns a new one."""

    adapter: Adapter
    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    is_local: bool = False
    is_volatile: bool = False
    ack_timeout: float | None = None
    is_compressed: bool = True

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        return replace(self, rooms=self.rooms | _names(rooms))

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        return replace(self, except_rooms=self.except_rooms | _names(rooms))

    @property
    def local(self) -> BroadcastOperator:
        return replace(self, is_local=True)

    @property
    def volatile(self) -> BroadcastOperator:
        return replace(self, is_volatile=True)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return replace(self, ack_timeout=seconds)

    def compress(self, value: bool) -> BroadcastOperator:
        """Node's ``compress(false)``: the event goes out uncompressed (permessage-deflate, polling's gzip)."""
        return replace(self, is_compressed=value)

    @property
    def _opts(self) -> BroadcastOptions:
        return BroadcastOptions(self.rooms, self.except_rooms, self.is_local, self.is_volatile, self.is_compressed)

    async def emit(self, event: str, *args: Any) -> None:
        await self.adapter.broadcast([event, *args], self._opts)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Emit and gather every target's acknowledgement. Raises AckTimeout (with the replies that came) when
        some are missing after ``timeout(...)``; sockets that disconnect meanwhile count as done."""
        return await self.adapter.broadcast_with_ack([event, *args], self._opts, self.ack_timeout)

    async def fetch_sockets(self) -> list[FetchedSocket]:
        """The targets, in this process (``Socket``s) or, with a cluster adapter, in others (``RemoteSocket``s)."""
        return await self.adapter.fetch_sockets(self._opts)

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        await self.adapter.add_sockets(self._opts, sorted(_names(rooms)))

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        await self.adapter.del_sockets(self._opts, sorted(_names(rooms)))

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self.adapter.disconnect_sockets(self._opts, close)


def _names(rooms: Iterable[str | Iterable[str]]) -> frozenset[str]:
    out: set[str] = set()
    for r in rooms:
        out.update([r] if isinstance(r, str) else r)
    return frozenset(out)
