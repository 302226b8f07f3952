"""The Socket.IO server: Node's ``Server`` and ``Namespace`` in Python spelling.

The server owns the core, the namespaces and the dispatcher; its main namespace "/" answers ``sio.on``,
``sio.emit``, ``sio.to`` and the rest, as Node's ``Server`` delegates to ``io.of("/")``.
"""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Unpack, overload

import anyio
import anyio.abc

from ..adapters.base import Acks, Adapter, FetchedSocket
from ..engineio.http import StaticFiles
from ..engineio.runtime import (
    MAX_BUFFERED,
    AllowRequest,
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
from .dispatcher import Dispatcher
from .handler import Handler, Middleware
from .socket import Socket

logger = logging.getLogger("anysio")
F = TypeVar("F", bound=Callable[..., Any])
#: How a namespace gets its adapter: an ``Adapter`` subclass, or any callable taking the namespace.
AdapterFactory = Callable[["Namespace"], Adapter]


class Namespace:
    """A namespace: its handlers, middlewares, sockets and adapter (Node's ``io.of(name)``)."""

    def __init__(self, server: Server, name: str, adapter: AdapterFactory) -> None:
        self.server = server
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self.middlewares: list[Middleware] = []
        self.server_side_handlers: dict[str, Callable[..., Any]] = {}
        self.sockets: dict[str, Socket] = {}
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
        """

        def register(fn: F) -> F:
            name = "connect" if event == "connection" else event
            self.handlers[name] = Handler.of(fn, name)
            return fn

        return register(handler) if handler is not None else register

    def event(self, fn: F) -> F:
        """Register ``fn`` for the event named like it."""
        return self.on(fn.__name__, fn)

    def use(self, middleware: Middleware) -> Middleware:
        """Connection middleware: called with the socket before ``connect``; raise ConnectionRefused to refuse."""
        self.middlewares.append(middleware)
        return middleware

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


class Server:
    """A Socket.IO v5 server. Options and defaults are Node's socket.io 4.x, in Python spelling.

    ``sio.on``, ``sio.emit``, ``sio.to`` and the rest act on the main namespace "/" (``sio.of("/")``);
    ``sio.of(name)`` reaches the others.
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
        **options: Unpack[EngineOptions],
    ) -> None:
        engine = native_core(
            path=path,
            defer_handshakes=allow_request is not None or generate_id is not None,
            socketio=True,
            connect_timeout=connect_timeout,
            serve_other_paths=static_files is not None,
            **options,
        )
        self._core: SioCore = engine
        self.static_files = StaticFiles(static_files) if static_files is not None else None
        self._adapter: AdapterFactory = adapter
        self._namespaces: dict[str, Namespace] = {}
        max_waiting = options.get("max_buffered", MAX_BUFFERED)
        self._dispatcher = Dispatcher(self, self._namespaces, allow_request, generate_id, max_waiting)
        #: What a driver (``serve``, ``anysio.ASGIApp``, a worker) needs: the core and where its events go.
        self.runtime = Runtime(engine, self._dispatcher.dispatch, self._dispatcher.dispatch_in_tasks)
        self._main = self.of("/")

    @property
    def core(self) -> SioCore:
        """The core as the Socket.IO layer calls it (rooms, emits, connections)."""
        return self._core

    @property
    def address(self) -> tuple[str, int] | None:
        """The address served on, once ``serve`` listens."""
        return self.runtime.address

    def of(self, name: str) -> Namespace:
        if not name.startswith("/"):
            name = "/" + name
        nsp = self._namespaces.get(name)
        if nsp is None:
            nsp = self._namespaces[name] = Namespace(self, name, self._adapter)
            self._core.add_namespace(name)
        return nsp

    @property
    def namespaces(self) -> dict[str, Namespace]:
        return dict(self._namespaces)

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
