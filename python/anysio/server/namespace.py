"""Node's ``Namespace`` in Python spelling: a namespace's handlers, middlewares, sockets and adapter, and the
parent namespaces whose children are made on a client's first connect. The server (``server.Server``) makes them
and is seen here through ``NamespaceHost``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from ..adapters.base import Acks, Adapter, FetchedSocket, ParentBroadcastAdapter
from ..codec.wire import decode_args
from ..engineio.runtime import SioCore
from .broadcast import BroadcastOperator
from .dispatcher import Dispatcher
from .flow import Flow
from .handler import Handler, Middleware
from .pipeline import Chain, ErrorHandler
from .socket import Socket

if TYPE_CHECKING:
    from .._native import SessionTuple

F = TypeVar("F", bound=Callable[..., Any])
#: How a namespace gets its adapter: an ``Adapter`` subclass, or any callable taking the namespace.
AdapterFactory = Callable[["Namespace"], Adapter]
#: What decides the children of a parent namespace (Node's ``ParentNspNameMatchFn``): called with the name a client
#: connects to and its auth; true (or an awaitable of true) creates the child namespace.
NamespaceMatcher = Callable[[str, Any], bool | Awaitable[bool]]


class NamespaceHost(Protocol):
    """What a namespace needs of its server (``server.Server``)."""

    @property
    def core(self) -> SioCore: ...
    @property
    def dispatcher(self) -> Dispatcher: ...
    @property
    def flow(self) -> Flow: ...


class Namespace:
    """A namespace: its handlers, middlewares, sockets and adapter (Node's ``io.of(name)``)."""

    def __init__(
        self, server: NamespaceHost, name: str, adapter: AdapterFactory, parent: ParentNamespace | None = None
    ) -> None:
        self.server = server
        self.name = name
        #: The parent namespace this one is a child of (created when a client first connected to it).
        self.parent = parent
        self.handlers: dict[str, Handler] = dict(parent.handlers) if parent is not None else {}
        self.middlewares: list[Middleware] = list(parent.middlewares) if parent is not None else []
        self.error_handlers: list[ErrorHandler] = list(parent.error_handlers) if parent is not None else []
        self.server_side_handlers: dict[str, Callable[..., Any]] = {}
        self.sockets: dict[str, Socket] = {}
        self.outgoing_watchers = 0
        self.flow: Flow = server.flow
        self.adapter = adapter(self)

    # ---- what the adapter and the sockets see of their namespace (AdapterNamespace) ------------------------

    @property
    def core(self) -> SioCore:
        return self.server.core

    @property
    def acks(self) -> Acks:
        return self.server.dispatcher.acks

    def socket(self, key: int) -> Socket | None:
        """This namespace's socket with this core key (connected or still connecting), if any."""
        socket = self.server.dispatcher.sockets.get(key)
        return socket if socket is not None and socket.nsp is self else None

    def notify_outgoing(self, keys: list[int], data: str, attachments: list[bytes]) -> None:
        """Tell the outgoing catch-all listeners of the sockets ``keys`` of the event a broadcast wrote to them."""
        packet = decode_args(data, attachments or None)
        for key in keys:
            socket = self.socket(key)
            if socket is not None and socket.any_outgoing_listeners:
                socket.notify_outgoing(packet)

    def rooms_changing(self, keys: list[int], rooms: list[str], join: bool) -> None:
        """Tell the server's observers which of ``rooms`` each socket of ``keys`` joins anew (or leaves)."""
        observers = self.server.dispatcher.observers
        if not observers:
            return
        for key in keys:
            socket = self.socket(key)
            if socket is None or not socket.connected:
                continue
            had = set(self.core.rooms_of(key))
            for room in dict.fromkeys(rooms):
                if join and room not in had:
                    observers.room_joined(socket, room)
                elif not join and room in had:
                    observers.room_left(socket, room)

    # ---- handlers -----------------------------------------------------------------------------------------

    @overload
    def on(self, event: str) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F) -> F: ...
    def on(self, event: str, handler: F | None = None) -> Any:
        """Register a handler, as ``ns.on("chat", fn)`` or as the decorator ``@ns.on("chat")``.

        ``connect`` (alias ``connection``) receives (socket, auth) and may raise ConnectionRefused;
        ``disconnect`` receives (socket, reason); any other event receives (socket, *args) with the arguments
        coerced to the parameters' annotations. A parameter annotated ``Socket`` or ``Ack`` is injected
        wherever it stands; an unannotated first parameter receives the socket, as in python-socketio.

        Several handlers of one event run in registration order, each after the previous one finished, with
        the same ``Ack``: the first reply (an Ack call, or a return value; None counts only when no handler
        replied) answers the client, later ones are ignored. ``error`` receives (socket, exception): a handler
        or listener of this namespace that raised, a packet a ``socket.use`` middleware stopped, arguments that
        do not fit; on "/" (``@sio.on("error")``) it also receives those of namespaces without an ``error``
        handler, and bad input no socket is known for (socket None, an ``anysio.ProtocolError``). Each error is
        logged once whether or not a handler exists.
        """

        def register(fn: F) -> F:
            name = "connect" if event == "connection" else event
            if name == "error":
                self._add_error_handler(fn)
            else:
                self._add_handler(name, Handler.of(fn, name))
            return fn

        return register(handler) if handler is not None else register

    def _add_handler(self, name: str, handler: Handler) -> None:
        old = self.handlers.get(name)
        if old is None:
            self.handlers[name] = handler
        else:
            # A new chain each time: a child namespace shares its parent's until it adds its own.
            earlier = old.handlers if isinstance(old, Chain) else [old]
            self.handlers[name] = Chain([*earlier, handler], self.server.dispatcher)

    def _add_error_handler(self, fn: ErrorHandler) -> None:
        self.error_handlers.append(fn)

    def event(self, fn: F) -> F:
        """Register ``fn`` for the event named like it."""
        return self.on(fn.__name__, fn)

    def use(self, middleware: Middleware) -> Middleware:
        """Connection middleware: called with the socket before ``connect``; raise ConnectionRefused to refuse."""
        self._add_middleware(middleware)
        return middleware

    def _add_middleware(self, middleware: Middleware) -> None:
        self.middlewares.append(middleware)

    # ---- broadcasts ---------------------------------------------------------------------------------------

    @property
    def _all(self) -> BroadcastOperator:
        return BroadcastOperator(self.adapter)

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        return self._all.to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        return self._all.except_(*rooms)

    @property
    def local(self) -> BroadcastOperator:
        return self._all.local

    @property
    def volatile(self) -> BroadcastOperator:
        return self._all.volatile

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._all.timeout(seconds)

    def compress(self, value: bool) -> BroadcastOperator:
        return self._all.compress(value)

    async def emit(self, event: str, *args: Any, to: str | Iterable[str] = (), except_: Iterable[str] = ()) -> None:
        op = self._all.to(to) if to else self._all
        await op.except_(except_).emit(event, *args)

    async def fetch_sockets(self) -> list[FetchedSocket]:
        return await self._all.fetch_sockets()

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._all.disconnect_sockets(close)

    async def sockets_join(self, *rooms: str) -> None:
        await self._all.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        await self._all.sockets_leave(*rooms)

    # ---- the other servers of a cluster -------------------------------------------------------------------

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Node's ``serverSideEmit``: tell the other servers of the cluster (not this one)."""
        await self.adapter.server_side_emit([event, *args])

    def on_server_side(self, event: str) -> Callable[[F], F]:
        """Register a handler for ``server_side_emit`` from the other servers (Node's ``io.on(event)``)."""

        def register(fn: F) -> F:
            self.server_side_handlers[event] = fn
            return fn

        return register

    async def server_side_emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:
        """Node's ``serverSideEmitWithAck``: tell the other servers and gather one reply from each (the return
        value of its ``on_server_side`` handler). Raises AckTimeout (with the replies that came) when some are
        missing after ``timeout`` (the adapter's request timeout when None)."""
        return await self.adapter.server_side_emit_with_ack([event, *args], timeout)

    async def server_count(self) -> int:
        """Node's ``serverCount``: the servers of the cluster, this one included."""
        return await self.adapter.server_count()

    async def receive_server_side(self, args: list[Any]) -> Any:
        """Run the handler of an event another server emitted with ``server_side_emit`` (the adapter calls it);
        returns what the handler returned (the reply to ``server_side_emit_with_ack``)."""
        handler = self.server_side_handlers.get(args[0]) if args and isinstance(args[0], str) else None
        if handler is None:
            return None
        result = handler(*args[1:])
        if inspect.isawaitable(result):
            result = await result
        return result

    @property
    def count(self) -> int:
        """Sockets connected to this namespace (in this process)."""
        return self.adapter.socket_count()

    def take_session(self, pid: str, offset: str) -> tuple[SessionTuple, dict[str, Any]] | None:
        """Give up the state and data of a disconnected socket of this namespace kept here, to another worker that
        recovers it (the bus asks); None when it is not kept here, expired, or ``offset`` is not its last."""
        recovery = self.server.dispatcher.recovery
        return recovery.take(self.name, pid, offset) if recovery is not None else None


class ParentNamespace(Namespace):
    """Node's parent namespace (``sio.of(re.compile(...))`` or ``sio.of(predicate)``): its children, the names it
    matches, are created on a client's first connect (or by ``sio.of(name)``), with the parent's handlers,
    middlewares and ``error`` handlers, then and later; what is registered on a child stays its own. ``emit``,
    ``to(...)`` and ``except_(...)`` reach every child; ``fetch_sockets`` is not supported, as in Node."""

    _count = 0

    def __init__(self, server: NamespaceHost, pattern: re.Pattern[str] | NamespaceMatcher) -> None:
        super().__init__(server, f"/_{ParentNamespace._count}", lambda _: ParentBroadcastAdapter(self))
        ParentNamespace._count += 1
        self.pattern = pattern
        self.children: dict[str, Namespace] = {}

    def matches(self, name: str, auth: Any) -> bool | Awaitable[bool]:
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(name) is not None
        return self.pattern(name, auth)

    def _add_handler(self, name: str, handler: Handler) -> None:
        super()._add_handler(name, handler)
        for child in self.children.values():
            child._add_handler(name, handler)

    def _add_error_handler(self, fn: ErrorHandler) -> None:
        super()._add_error_handler(fn)
        for child in self.children.values():
            child._add_error_handler(fn)

    def _add_middleware(self, middleware: Middleware) -> None:
        super()._add_middleware(middleware)
        for child in self.children.values():
            child._add_middleware(middleware)

    async def fetch_sockets(self) -> list[FetchedSocket]:
        raise NotImplementedError("fetch_sockets() is not supported on parent namespaces")
