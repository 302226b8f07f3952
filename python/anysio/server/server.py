"""The Socket.IO server: Node's ``Server`` and ``Namespace`` in Python spelling.

The server owns the core, the namespaces and the dispatcher; its main namespace "/" answers ``sio.on``,
``sio.emit``, ``sio.to`` and the rest, as Node's ``Server`` delegates to ``io.of("/")``.
"""

from __future__ import annotations

import inspect
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

import anyio
import anyio.abc

from ..adapters.base import Acks, Adapter, BroadcastOptions, FetchedSocket
from ..codec.wire import decode_args
from ..engineio.http import StaticFiles
from ..engineio.runtime import (
    MAX_BUFFERED,
    AllowRequest,
    EngineEvents,
    EngineOptions,
    GenerateId,
    Runtime,
    SioCore,
    native_core,
    run_core,
    run_until_signalled,
)
from ..exceptions import checked_options
from .broadcast import BroadcastOperator
from .dispatcher import Dispatcher, DispatchNamespace
from .handler import Handler, Middleware
from .observer import Observer
from .pipeline import Chain, ErrorHandler
from .recovery import ConnectionStateRecovery, Recovery
from .socket import Socket

if TYPE_CHECKING:
    from .._native import SessionTuple

logger = logging.getLogger("anysio")
F = TypeVar("F", bound=Callable[..., Any])
#: How a namespace gets its adapter: an ``Adapter`` subclass, or any callable taking the namespace.
AdapterFactory = Callable[["Namespace"], Adapter]
#: What decides the children of a parent namespace (Node's ``ParentNspNameMatchFn``): called with the name a client
#: connects to and its auth; true (or an awaitable of true) creates the child namespace.
NamespaceMatcher = Callable[[str, Any], bool | Awaitable[bool]]


class Namespace:
    """A namespace: its handlers, middlewares, sockets and adapter (Node's ``io.of(name)``)."""

    def __init__(
        self, server: Server, name: str, adapter: AdapterFactory, parent: ParentNamespace | None = None
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
        self.adapter = adapter(self)

    # ---- what the adapter and the sockets see of their namespace (AdapterNamespace) ------------------------

    @property
    def core(self) -> SioCore:
        return self.server.core

    @property
    def acks(self) -> Acks:
        return self.server._dispatcher.acks

    def socket(self, key: int) -> Socket | None:
        """This namespace's socket with this core key (connected or still connecting), if any."""
        socket = self.server._dispatcher.sockets.get(key)
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
        observers = self.server._dispatcher.observers
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
            self.handlers[name] = Chain([*earlier, handler], self.server._dispatcher)

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
        recovery = self.server._dispatcher.recovery
        return recovery.take(self.name, pid, offset) if recovery is not None else None


class ParentNamespace(Namespace):
    """Node's parent namespace (``sio.of(re.compile(...))`` or ``sio.of(predicate)``): the namespaces it matches
    are its children, each created when a client first connects to it (or by ``sio.of(name)`` for a name a
    pattern matches). A child starts with the parent's handlers, middlewares and ``error`` handlers, and gets
    those registered on the parent later; what is registered on a child stays its own. ``emit``, ``to(...)``
    and ``except_(...)`` reach every child; ``fetch_sockets`` is not supported, as in Node."""

    _count = 0

    def __init__(self, server: Server, pattern: re.Pattern[str] | NamespaceMatcher) -> None:
        super().__init__(server, f"/_{ParentNamespace._count}", ParentBroadcastAdapter)
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


class ParentBroadcastAdapter(Adapter):
    """A parent namespace's broadcasts: each child's adapter does its own (Node's ``ParentBroadcastAdapter``)."""

    def __init__(self, nsp: Namespace) -> None:
        super().__init__(nsp)
        assert isinstance(nsp, ParentNamespace)
        self.parent = nsp

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        keys: list[int] = []
        for child in list(self.parent.children.values()):
            keys += await child.adapter.broadcast(args, opts, ack_id)
        return keys


class Server:
    """A Socket.IO v5 server. Options and defaults are Node's socket.io 4.x, in Python spelling.

    ``sio.on``, ``sio.emit``, ``sio.to`` and the rest act on the main namespace "/" (``sio.of("/")``);
    ``sio.of(name)`` reaches the others.

    ``connection_state_recovery`` (Node's ``connectionStateRecovery``, off by default): True, a dict or a
    ``ConnectionStateRecovery``; a client whose connection drops gets its socket back (id, rooms, data) and the
    events it missed when it reconnects within ``max_disconnection_duration`` (README, "Connection state
    recovery").
    """

    @checked_options(EngineOptions.__annotations__)
    def __init__(
        self,
        *,
        path: str = "/socket.io",
        connect_timeout: float = 45.0,
        allow_request: AllowRequest | None = None,
        generate_id: GenerateId | None = None,
        adapter: AdapterFactory = Adapter,
        static_files: Mapping[str, str | Path] | None = None,
        cleanup_empty_child_namespaces: bool = False,
        connection_state_recovery: ConnectionStateRecovery | Mapping[str, Any] | bool | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        recovery = ConnectionStateRecovery.of(connection_state_recovery)
        engine = native_core(
            path=path,
            defer_handshakes=allow_request is not None or generate_id is not None,
            socketio=True,
            connect_timeout=connect_timeout,
            serve_other_paths=static_files is not None,
            recovery=recovery.max_disconnection_duration if recovery is not None else None,
            **options,
        )
        self._core: SioCore = engine
        self.static_files = StaticFiles(static_files) if static_files is not None else None
        self._adapter: AdapterFactory = adapter
        self._namespaces: dict[str, Namespace] = {}
        max_waiting = options.get("max_buffered", MAX_BUFFERED)
        self._dispatcher = Dispatcher(
            self,
            self._namespaces,
            allow_request,
            generate_id,
            max_waiting,
            Recovery(recovery, engine) if recovery is not None else None,
        )
        #: What a driver (``serve``, ``anysio.ASGIApp``, a worker) needs: the core and where its events go.
        self.runtime = Runtime(engine, self._dispatcher.dispatch, self._dispatcher.dispatch_in_tasks)
        #: Node's ``io.engine`` events: ``@sio.engine.on("connection_error")``, ``"initial_headers"``, ``"headers"``.
        self.engine = EngineEvents(engine, self.runtime)
        #: Node's option: a child namespace goes when its last socket leaves (and is made again on a connect).
        self.cleanup_empty_child_namespaces = cleanup_empty_child_namespaces
        self._parents: list[ParentNamespace] = []
        #: This process's index among the workers of ``anysio run --workers N`` (None when it serves alone).
        self.worker: int | None = None
        self._main = self.of("/")

    @property
    def core(self) -> SioCore:
        """The core as the Socket.IO layer calls it (rooms, emits, connections)."""
        return self._core

    @property
    def address(self) -> tuple[str, int] | None:
        """The address served on, once ``serve`` listens."""
        return self.runtime.address

    @overload
    def of(self, name: str) -> Namespace: ...
    @overload
    def of(self, name: re.Pattern[str] | NamespaceMatcher) -> ParentNamespace: ...
    def of(self, name: str | re.Pattern[str] | NamespaceMatcher) -> Namespace:
        """The namespace ``name``, made if new; or, for a compiled pattern (matched with ``search``, as Node's
        ``test``) or a function ``(name, auth) -> bool`` (or an awaitable of it), a new parent namespace."""
        if not isinstance(name, str):
            return self._parent(name)
        if not name.startswith("/"):
            name = "/" + name
        nsp = self._namespaces.get(name)
        if nsp is None:
            for parent in self._parents:
                if isinstance(parent.pattern, re.Pattern) and parent.pattern.search(name):
                    return self._add_child(parent, name)
            nsp = self._namespaces[name] = Namespace(self, name, self._adapter)
            self._core.add_namespace(name)
        return nsp

    def _parent(self, pattern: re.Pattern[str] | NamespaceMatcher) -> ParentNamespace:
        parent = ParentNamespace(self, pattern)
        self._parents.append(parent)
        self._core.set_dynamic_namespaces(True)
        return parent

    def _add_child(self, parent: ParentNamespace, name: str) -> Namespace:
        child = self._namespaces[name] = Namespace(self, name, self._adapter, parent)
        parent.children[name] = child
        self._core.add_namespace(name)
        return child

    async def dynamic_namespace(self, name: str, auth: Any) -> Namespace | None:
        """The child ``name`` of the first parent namespace whose matcher takes it (Node's ``_checkNamespace``)."""
        for parent in list(self._parents):
            verdict = parent.matches(name, auth)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict:
                # Made meanwhile by another client's connect, or by ``of``: that one.
                return self._namespaces.get(name) or self._add_child(parent, name)
        return None

    def namespace_emptied(self, nsp: DispatchNamespace) -> None:
        """With ``cleanup_empty_child_namespaces``, an emptied child namespace goes (Node's option)."""
        if not self.cleanup_empty_child_namespaces or not isinstance(nsp, Namespace):
            return
        parent = nsp.parent
        if parent is not None and self._namespaces.get(nsp.name) is nsp:
            del self._namespaces[nsp.name]
            parent.children.pop(nsp.name, None)
            self._core.remove_namespace(nsp.name)

    @property
    def namespaces(self) -> dict[str, Namespace]:
        return dict(self._namespaces)

    def observe(self, observer: Observer) -> None:
        """Tell ``observer`` of every socket's connection, disconnection and rooms, and of every Engine.IO session
        (what ``anysio.instrument`` watches for the Admin UI)."""
        self._dispatcher.observers.add(observer)

    def on_serve(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``fn()`` in a task while the server is served (``serve``, ``run``, a worker, the ASGI app): started
        when it starts, cancelled when it stops."""
        self.runtime.background.append(fn)

    def add_static_files(self, mounts: Mapping[str, str | Path | bytes]) -> None:
        """Serve more files beside Socket.IO (as ``static_files=`` does; bytes are a file's contents, served at
        that exact path), also on a server made without ``static_files``."""
        if self.static_files is None:
            self.static_files = StaticFiles({})
        self.static_files.add(mounts)
        self.runtime.core.set_serve_other_paths(True)

    @property
    def engine_count(self) -> int:
        """Open Engine.IO sessions (the seed's ``Count()``; Node's ``io.engine.clientsCount``)."""
        return self.runtime.core.session_count

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
        sock: socket.socket | None = None,
    ) -> None:
        """Listen and serve until cancelled; then disconnect everyone ("server shutting down").

        With ``sock`` (bound and listening), serve on it instead of binding ``host:port``."""
        try:
            await run_core(self.runtime, host, port, task_status, sock)
        finally:
            with anyio.CancelScope(shield=True):
                await self._dispatcher.run_deferred(timeout=5.0)

    def run(self, host: str = "127.0.0.1", port: int = 5000, *, backend: str = "asyncio") -> None:
        """Serve until Ctrl-C or SIGTERM, blocking (``anyio.run(sio.serve, ...)`` for a script): prints
        ``anysio: listening on http://host:port`` once it listens; a signal shuts down as a cancelled ``serve``
        does, with no traceback. ``backend``: "asyncio", "uvloop" or "trio" (BackendUnavailable, naming the
        ``pip install`` that fixes it, when not installed). OSError when it cannot listen."""
        run_until_signalled(self.serve, host, port, backend)

    @property
    def adapter_factory(self) -> AdapterFactory:
        """What gives each namespace its adapter (``adapter=``, or the workers' once ``become_worker``)."""
        return self._adapter

    def become_worker(self, index: int, adapter: AdapterFactory, hand_off: Callable[[int, int], None]) -> None:
        """Serve as worker ``index`` of ``anysio.workers``: own the sessions whose sid carries it, give every
        namespace ``adapter`` (which shares rooms and broadcasts with the other workers), and pass connections
        that belong to another worker to ``hand_off(fd, owner)``."""
        self.runtime.core.set_worker(index)
        self.worker = index
        self._dispatcher.hand_off = hand_off
        self._adapter = adapter
        for nsp in self._namespaces.values():
            nsp.adapter = adapter(nsp)

    # ---- the main namespace "/" ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._main.name

    @property
    def adapter(self) -> Adapter:
        return self._main.adapter

    @property
    def sockets(self) -> dict[str, Socket]:
        """The sockets connected to "/", by id."""
        return self._main.sockets

    @property
    def handlers(self) -> dict[str, Handler]:
        return self._main.handlers

    @property
    def middlewares(self) -> list[Middleware]:
        return self._main.middlewares

    @overload
    def on(self, event: str) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F) -> F: ...
    def on(self, event: str, handler: F | None = None) -> Any:
        """``of("/").on``: see ``Namespace.on``."""
        return self._main.on(event, handler) if handler is not None else self._main.on(event)

    def event(self, fn: F) -> F:
        return self._main.event(fn)

    def use(self, middleware: Middleware) -> Middleware:
        return self._main.use(middleware)

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        return self._main.to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        return self._main.except_(*rooms)

    @property
    def local(self) -> BroadcastOperator:
        return self._main.local

    @property
    def volatile(self) -> BroadcastOperator:
        return self._main.volatile

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._main.timeout(seconds)

    async def emit(self, event: str, *args: Any, to: str | Iterable[str] = (), except_: Iterable[str] = ()) -> None:
        await self._main.emit(event, *args, to=to, except_=except_)

    async def fetch_sockets(self) -> list[FetchedSocket]:
        return await self._main.fetch_sockets()

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._main.disconnect_sockets(close)

    async def sockets_join(self, *rooms: str) -> None:
        await self._main.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        await self._main.sockets_leave(*rooms)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        await self._main.server_side_emit(event, *args)

    async def server_side_emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:
        return await self._main.server_side_emit_with_ack(event, *args, timeout=timeout)

    async def server_count(self) -> int:
        return await self._main.server_count()

    def on_server_side(self, event: str) -> Callable[[F], F]:
        return self._main.on_server_side(event)

    @property
    def count(self) -> int:
        """Sockets connected to "/" (in this process)."""
        return self._main.count
