"""``Emitter``: publishes to the servers of a Redis cluster from a process that is not one, as Node's
``@socket.io/redis-emitter`` does (the classic protocol, uid ``"emitter"``)::

    async with anysio.Emitter("redis://127.0.0.1:6379") as io:
        await io.to("room").emit("event", data)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from .messages import DEFAULT_KEY, EMITTER_UID, REMOTE_DISCONNECT, REMOTE_JOIN, REMOTE_LEAVE, SERVER_SIDE_EMIT, encode
from .resp import CONNECTION_ERRORS, RedisAddress, RespConnection, close_quietly

RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


class Emitter:
    """The emitter of one namespace (``of`` gives another, on the same connection). Each operation publishes at
    once and raises ``ClusterError`` when Redis is unreachable (a lost connection is opened again once)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379", *, key: str = DEFAULT_KEY, nsp: str = "/") -> None:
        self.address = RedisAddress.parse(url)
        self.key = key
        self.nsp = nsp if nsp.startswith("/") else "/" + nsp
        self._conn: RespConnection | None = None
        self._lock = anyio.Lock()
        self._shared: Emitter | None = None
        self.connect_timeout = 5.0

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        await close_quietly(conn)

    def of(self, nsp: str) -> Emitter:
        """The same emitter (and connection) for another namespace."""
        other = Emitter.__new__(Emitter)
        other.__dict__.update(self.__dict__)
        other.nsp = nsp if nsp.startswith("/") else "/" + nsp
        other._shared = self._shared or self
        return other

    @property
    def request_channel(self) -> str:
        return f"{self.key}-request#{self.nsp}#"

    async def publish(self, channel: str, data: bytes) -> None:
        owner = self._shared or self
        async with owner._lock:
            for attempt in range(2):
                try:
                    if owner._conn is None:
                        owner._conn = await RespConnection.open(owner.address, owner.connect_timeout)
                    await owner._conn.command("PUBLISH", channel, data)
                    return
                except CONNECTION_ERRORS as e:
                    await owner.aclose()
                    if attempt:
                        raise owner.address.unreachable(e) from e

    @property
    def _all(self) -> EmitterOperator:
        return EmitterOperator(self)

    def to(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return self._all.to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return self._all.except_(*rooms)

    @property
    def volatile(self) -> EmitterOperator:
        return self._all.volatile

    def compress(self, compress: bool) -> EmitterOperator:
        return self._all.compress(compress)

    async def emit(self, event: str, *args: Any) -> None:
        await self._all.emit(event, *args)

    async def sockets_join(self, *rooms: str) -> None:
        await self._all.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        await self._all.sockets_leave(*rooms)

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._all.disconnect_sockets(close)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        request = {"uid": EMITTER_UID, "type": SERVER_SIDE_EMIT, "data": [event, *args]}
        await self.publish(self.request_channel, encode("request", request))


def _names(rooms: Iterable[str | Iterable[str]]) -> list[str]:
    out: list[str] = []
    for r in rooms:
        for name in [r] if isinstance(r, str) else r:
            if name not in out:
                out.append(name)
    return out


@dataclass(frozen=True)
class EmitterOperator:
    """Targets and flags of an emitter's message (the emitter's ``BroadcastOperator``)."""

    emitter: Emitter
    rooms: tuple[str, ...] = ()
    except_rooms: tuple[str, ...] = ()
    flags: tuple[tuple[str, bool], ...] = ()

    def to(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return replace(self, rooms=tuple(_names([self.rooms, *rooms])))

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return replace(self, except_rooms=tuple(_names([self.except_rooms, *rooms])))

    def _flag(self, name: str, value: bool) -> EmitterOperator:
        flags = dict(self.flags)
        flags[name] = value
        return replace(self, flags=tuple(flags.items()))

    @property
    def volatile(self) -> EmitterOperator:
        return self._flag("volatile", True)

    def compress(self, compress: bool) -> EmitterOperator:
        return self._flag("compress", compress)

    async def emit(self, event: str, *args: Any) -> None:
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        e = self.emitter
        packet = {"type": 2, "data": [event, *args], "nsp": e.nsp}
        opts = {"rooms": list(self.rooms), "flags": dict(self.flags), "except": list(self.except_rooms)}
        channel = f"{e.key}#{e.nsp}#" + (f"{self.rooms[0]}#" if len(self.rooms) == 1 else "")
        await e.publish(channel, encode("broadcast", [EMITTER_UID, packet, opts]))

    async def _request(self, kind: int, **extra: Any) -> None:
        """A request without uid, as the emitter sends them (no server takes it for its own)."""
        request = {"type": kind, "opts": {"rooms": list(self.rooms), "except": list(self.except_rooms)}, **extra}
        await self.emitter.publish(self.emitter.request_channel, encode("request", request))

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        await self._request(REMOTE_JOIN, rooms=_names(rooms))

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        await self._request(REMOTE_LEAVE, rooms=_names(rooms))

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._request(REMOTE_DISCONNECT, close=close)
