"""A client's connection to one namespace (Node's ``Socket``), and the ack callable handlers may take.

A socket sees its namespace through ``SocketNamespace`` (the namespace, in ``server.py``, stands above it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio

from ..adapters.base import Adapter, AdapterNamespace
from ..codec.wire import encode_args
from ..engineio.http import Request
from ..exceptions import AckTimeout, Disconnected, reply_value
from .broadcast import BroadcastOperator
from .flow import Flow, RateLimit, TokenBucket

logger = logging.getLogger("anysio")


#: A catch-all listener: called with the event's name and arguments (Node's ``socket.onAny``).
AnyListener = Callable[..., Any]
#: A per-packet middleware: called with ``[event, *args]``; raising stops the packet (Node's ``socket.use``).
PacketMiddleware = Callable[[list[Any]], Any]


class SocketNamespace(AdapterNamespace, Protocol):
    """What a socket needs from its namespace: the adapter's view of it, the adapter, and its server's flow
    control."""

    @property
    def adapter(self) -> Adapter: ...
    @property
    def flow(self) -> Flow: ...


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
    #: True while a catch-all listener or a packet middleware is set: the dispatcher's one check per event.
    intercepting: bool = field(default=False, repr=False)
    #: Made on the first listener or middleware: most sockets never have one, and carry no lists for them.
    hooks: SocketHooks | None = field(default=None, repr=False)
    #: The socket's events against its rate limit (``rate_limit``); None: no limit.
    limiter: TokenBucket | None = field(default=None, repr=False)
    #: When its running handler's event started (ns on the metrics' clock, HandlerTimes; with metrics on).
    started: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        limit = self.nsp.flow.event_rate_limit
        if limit is not None:
            self.limiter = TokenBucket(limit)

    @property
    def rate_limit(self) -> RateLimit | None:
        """The limit on this socket's events (``Server(event_rate_limit=...)`` by default): an event over it is
        not handled, and the client gets ``{"error": ..., "retry_after": seconds}`` in its ack, or as an
        ``error`` event. Set it (a ``RateLimit``, events per second, or None) to change it for this socket."""
        return self.limiter.limit if self.limiter is not None else None

    @rate_limit.setter
    def rate_limit(self, limit: RateLimit | float | None) -> None:
        rate = RateLimit.of(limit)
        self.limiter = TokenBucket(rate) if rate is not None else None

    @property
    def buffered_amount(self) -> int:
        """Bytes written to this client that it has not read yet, as the browser's WebSocket ``bufferedAmount``
        says from the other side: the server's output not yet written to its socket, or the payload waiting for a
        long-polling client's next GET (what the kernel's socket buffers hold is not counted). 0 once gone."""
        return self.nsp.core.buffered_amount(self.key) or 0

    @property
    def any_listeners(self) -> list[AnyListener]:
        return self.hooks.incoming if self.hooks is not None else []

    @property
    def any_outgoing_listeners(self) -> list[AnyListener]:
        return self.hooks.outgoing if self.hooks is not None else []

    @property
    def packet_middlewares(self) -> list[PacketMiddleware]:
        return self.hooks.middlewares if self.hooks is not None else []

    @property
    def _hooks(self) -> SocketHooks:
        if self.hooks is None:
            self.hooks = SocketHooks()
        return self.hooks

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

    def _send(self, args: list[Any], ack_id: int | None = None, compress: bool = True) -> bool:
        data, attachments = encode_args(args)
        if compress:
            return self.nsp.core.emit_to(self.key, data, attachments, ack_id)
        return self.nsp.core.emit_to(self.key, data, attachments, ack_id, compress=False)

    async def emit(self, event: str, *args: Any, compress: bool = True) -> None:
        """Send an event to this client only (uncompressed with ``compress=False``, Node's ``compress(false)``).
        While the client has ``high_water_mark`` bytes or more waiting (``buffered_amount``), wait until it reads
        them down; DrainTimeout (nothing sent) after ``drain_timeout``."""
        flow = self.nsp.flow
        if flow.mark is not None and flow.full(self.key):
            await flow.drain(self.key, self.id)
        if self.hooks is not None and self.hooks.outgoing:
            self.notify_outgoing([event, *args])
        self._send([event, *args], compress=compress)

    def emit_nowait(self, event: str, *args: Any, compress: bool = True) -> bool:
        """``emit`` without waiting: False, and nothing sent, when the client has ``high_water_mark`` bytes or
        more waiting, or is gone (a stream's ``write`` returning false, as in Node)."""
        if self.nsp.flow.full(self.key):
            return False
        if self.hooks is not None and self.hooks.outgoing:
            self.notify_outgoing([event, *args])
        return self._send([event, *args], compress=compress)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None, compress: bool = True) -> Any:
        """Send an event and wait for the client's acknowledgement; returns its first argument (or a tuple
        of them when there are several). Raises AckTimeout after ``timeout`` seconds, and Disconnected when the
        socket is gone (or goes) before the acknowledgement."""
        if self.nsp.socket(self.key) is not self:
            raise Disconnected(f"{self.id} is disconnected; {event!r} was not sent")
        flow = self.nsp.flow
        if flow.mark is not None and flow.full(self.key):
            await flow.drain(self.key, self.id)
        acks = self.nsp.acks
        ack_id = acks.next_id()
        done = anyio.Event()
        box: list[list[Any] | None] = []

        def resolve(values: list[Any] | None) -> None:
            box.append(values)
            done.set()

        acks.expect(self.key, ack_id, resolve)
        try:
            if self.hooks is not None and self.hooks.outgoing:
                self.notify_outgoing([event, *args])
            self._send([event, *args], ack_id, compress)
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                await done.wait()
        except TimeoutError:
            acks.timed_out += 1
            raise AckTimeout(f"no acknowledgement of {event!r} from {self.id} in {timeout} s") from None
        finally:
            acks.forget(self.key, ack_id)
        values = box[0]
        if values is None:
            raise Disconnected(f"{self.id} disconnected before acknowledging {event!r}")
        return reply_value(values)

    def timeout(self, seconds: float) -> TimedSocket:
        """Node's ``socket.timeout(ms)``: ``await socket.timeout(5).emit_with_ack(...)`` raises AckTimeout when no
        acknowledgement came within ``seconds``."""
        return TimedSocket(self, seconds)

    def compress(self, value: bool) -> TimedSocket:
        """Node's ``socket.compress(false)``: ``await socket.compress(False).emit(...)`` sends the event
        uncompressed (no permessage-deflate, and no gzip of a polling response made only of such events)."""
        return TimedSocket(self, None, value)

    # ---- catch-all listeners and packet middlewares (Node's onAny, onAnyOutgoing, use) ----------------------

    def on_any(self, listener: AnyListener) -> AnyListener:
        """Call ``listener(event, *args)`` for every event the client sends, before the packet middlewares and
        the event's handlers, in the order the listeners were added; an ``anysio.Ack`` is the last argument
        when the client asked for an acknowledgement (the one the handlers get: the first reply wins). A
        coroutine listener runs in a task of its own. Usable as a decorator."""
        self._hooks.incoming.append(listener)
        self.intercepting = True
        return listener

    def prepend_any(self, listener: AnyListener) -> AnyListener:
        """``on_any``, called before the listeners already added."""
        self._hooks.incoming.insert(0, listener)
        self.intercepting = True
        return listener

    def off_any(self, listener: AnyListener | None = None) -> None:
        """Remove one catch-all listener, or all of them."""
        _remove(self._hooks.incoming, listener)
        self._recheck()

    def listeners_any(self) -> list[AnyListener]:
        return list(self.any_listeners)

    def on_any_outgoing(self, listener: AnyListener) -> AnyListener:
        """Call ``listener(event, *args)`` for every event sent to this client: its emits and the broadcasts
        that reach it (their arguments as the client receives them), before they are written."""
        self._watch_outgoing(lambda: self._hooks.outgoing.append(listener))
        return listener

    def prepend_any_outgoing(self, listener: AnyListener) -> AnyListener:
        self._watch_outgoing(lambda: self._hooks.outgoing.insert(0, listener))
        return listener

    def off_any_outgoing(self, listener: AnyListener | None = None) -> None:
        self._watch_outgoing(lambda: _remove(self._hooks.outgoing, listener))

    def listeners_any_outgoing(self) -> list[AnyListener]:
        return list(self.any_outgoing_listeners)

    def use(self, middleware: PacketMiddleware) -> PacketMiddleware:
        """Node's ``socket.use``: ``middleware([event, *args])`` runs for every event the client sends, before
        its handlers, in the order added (a coroutine is awaited). Raising stops the packet: its handlers are
        not called, and the exception goes to the namespace's ``error`` handler. Usable as a decorator."""
        self._hooks.middlewares.append(middleware)
        self.intercepting = True
        return middleware

    def _recheck(self) -> None:
        self.intercepting = bool(self.any_listeners or self.packet_middlewares)

    def _watch_outgoing(self, change: Callable[[], object]) -> None:
        before = bool(self.any_outgoing_listeners)
        change()
        after = bool(self.any_outgoing_listeners)
        if self.connected and before != after:
            self.nsp.outgoing_watchers += 1 if after else -1

    def notify_outgoing(self, packet: list[Any]) -> None:
        """Tell the outgoing catch-all listeners of an event sent to this client (``packet``: name, arguments).
        What a listener raises is logged and does not stop the event."""
        for listener in list(self.any_outgoing_listeners):
            try:
                listener(*packet)
            except Exception:
                logger.exception("outgoing catch-all listener of %s failed", self.id)

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
    def ack_id(self) -> int | None:
        return self._id

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


@dataclass
class SocketHooks:
    """A socket's catch-all listeners, incoming and outgoing, and its packet middlewares."""

    incoming: list[AnyListener] = field(default_factory=list)
    outgoing: list[AnyListener] = field(default_factory=list)
    middlewares: list[PacketMiddleware] = field(default_factory=list)


def _remove(listeners: list[AnyListener], listener: AnyListener | None) -> None:
    if listener is None:
        listeners.clear()
    elif listener in listeners:
        listeners.remove(listener)


@dataclass(frozen=True)
class TimedSocket:
    """A socket with an emit's flags: an acknowledgement timeout (Node's ``socket.timeout(ms)``) and the
    compress flag (``socket.compress(false)``); chainable as in Node."""

    socket: Socket
    seconds: float | None
    compressed: bool = True

    def timeout(self, seconds: float) -> TimedSocket:
        return replace(self, seconds=seconds)

    def compress(self, value: bool) -> TimedSocket:
        return replace(self, compressed=value)

    async def emit(self, event: str, *args: Any) -> None:
        await self.socket.emit(event, *args, compress=self.compressed)

    async def emit_with_ack(self, event: str, *args: Any) -> Any:
        """``socket.emit_with_ack(event, *args, timeout=seconds)``."""
        return await self.socket.emit_with_ack(event, *args, timeout=self.seconds, compress=self.compressed)
