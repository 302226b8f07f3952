"""A client's connection to one namespace (Node's ``Socket``), and the ack callable handlers may take.

A socket sees its namespace through ``SocketNamespace`` (the namespace, in ``server.py``, stands above it)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from ..adapters.base import Adapter, AdapterNamespace
from ..codec.wire import encode_args
from ..engineio.http import Request
from ..exceptions import AckTimeout, Disconnected, reply_value
from .broadcast import BroadcastOperator


class SocketNamespace(AdapterNamespace, Protocol):
    """What a socket needs from its namespace: the adapter's view of it, and the adapter."""

    @property
    def adapter(self) -> Adapter: ...


@dataclass(frozen=True)
class Handshake:
    """What the client sent when it connected (Node's ``socket.handshake``)."""

    auth: Any
    headers: dict[str, str]
    query: dict[str, str]
    address: str | None
    time: str
    issued: int
    url: str
    xdomain: bool
    secure: bool = False

    @classmethod
    def of(cls, request: Request, auth: Any) -> Handshake:
        now = time.time()
        origin = request.header("origin")
        return cls(
            auth=auth,
            headers=dict(request.headers),
            query=request.query,
            address=request.remote[0] if request.remote else None,
            time=time.strftime("%a %b %d %Y %H:%M:%S GMT", time.gmtime(now)),
            issued=int(now * 1000),
            url=request.path + ("?" + request.query_string if request.query_string else ""),
            xdomain=origin is not None,
        )


@dataclass(eq=False)
class Socket:
    """One client in one namespace. ``id`` is per namespace; ``eio_sid`` names the underlying session."""

    nsp: SocketNamespace
    key: int
    id: str
    client: int
    eio_sid: str
    handshake: Handshake
    request: Request
    data: dict[str, Any] = field(default_factory=dict)
    connected: bool = False
    #: Whether this socket recovered the state of a disconnected one: its id, rooms, data and missed packets
    #: (Node's ``socket.recovered``; connection state recovery).
    recovered: bool = False
    #: The private session id the client sends back to recover (with recovery on): never share it, unlike ``id``.
    pid: str | None = None

    @property
    def namespace(self) -> str:
        return self.nsp.name

    @property
    def rooms(self) -> set[str]:
        return set(self.nsp.adapter.socket_rooms(self))

    def join(self, rooms: str | list[str] | set[str] | tuple[str, ...]) -> None:
        self.nsp.adapter.add_all(self, [rooms] if isinstance(rooms, str) else list(rooms))

    def leave(self, room: str) -> None:
        self.nsp.adapter.delete(self, room)

    def _send(self, args: list[Any], ack_id: int | None = None) -> None:
        data, attachments = encode_args(args)
        self.nsp.core.emit_to(self.key, data, attachments, ack_id)

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to this client only."""
        self._send([event, *args])

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and wait for the client's acknowledgement; returns its first argument (or a tuple
        of them when there are several). Raises AckTimeout after ``timeout`` seconds, and Disconnected when the
        socket is gone (or goes) before the acknowledgement."""
        if self.nsp.socket(self.key) is not self:
            raise Disconnected(f"{self.id} is disconnected; {event!r} was not sent")
        acks = self.nsp.acks
        ack_id = acks.next_id()
        done = anyio.Event()
        box: list[list[Any] | None] = []

        def resolve(values: list[Any] | None) -> None:
            box.append(values)
            done.set()

        acks.expect(self.key, ack_id, resolve)
        try:
            self._send([event, *args], ack_id)
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                await done.wait()
        except TimeoutError:
            raise AckTimeout(f"no acknowledgement of {event!r} from {self.id} in {timeout} s") from None
        finally:
            acks.forget(self.key, ack_id)
        values = box[0]
        if values is None:
            raise Disconnected(f"{self.id} disconnected before acknowledging {event!r}")
        return reply_value(values)

    def send(self, *args: Any) -> Any:
        """``emit("message", ...)``, as Node's ``socket.send``."""
        return self.emit("message", *args)

    def to(self, *rooms: str) -> BroadcastOperator:
        """Broadcast to the rooms' members except this socket."""
        return BroadcastOperator(self.nsp.adapter).to(*rooms).except_(self.id)

    in_ = to

    def except_(self, *rooms: str) -> BroadcastOperator:
        """Broadcast to the whole namespace except this socket and the rooms' members."""
        return BroadcastOperator(self.nsp.adapter).except_(self.id, *rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        """This socket only, dropping the event if its transport is not ready to send it right now."""
        return BroadcastOperator(self.nsp.adapter).to(self.id).volatile

    @property
    def broadcast(self) -> BroadcastOperator:
        """Broadcast to the whole namespace except this socket."""
        return BroadcastOperator(self.nsp.adapter).except_(self.id)

    async def disconnect(self, close: bool = False) -> None:
        """Leave the namespace (the client gets DISCONNECT); with ``close``, close the whole connection."""
        self.nsp.core.disconnect(self.key, close)

    def __repr__(self) -> str:
        return f"<Socket {self.id} in {self.namespace}>"


class Ack:
    """The acknowledgement callback a handler may take (annotate a parameter with ``anysio.Ack``).

    Call it once with the values to send back; later calls are ignored, as in Node.
    """

    __slots__ = ("_id", "_socket", "sent")

    def __init__(self, socket: Socket, ack_id: int | None) -> None:
        self._socket = socket
        self._id = ack_id
        self.sent = False

    @property
    def requested(self) -> bool:
        """Whether the client asked for an acknowledgement (calls are no-ops when it did not)."""
        return self._id is not None

    def __call__(self, *args: Any) -> None:
        if self.sent or self._id is None:
            return
        self.sent = True
        data, attachments = encode_args(list(args))
        self._socket.nsp.core.emit_to(self._socket.key, data, attachments, self._id, True)
