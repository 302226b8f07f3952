"""The Socket.IO server, Node's ``Server`` and ``Namespace`` in Python spelling: the server owns the core, the
namespaces and the dispatcher; its main namespace "/" answers ``sio.on`` and the rest (Node's ``io.of("/")``)."""

from __future__ import annotations

import inspect
import logging
import re
import socket
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Unpack, overload

import anyio
import anyio.abc

from ..adapters.base import Adapter, FetchedSocket
from ..engineio.http import Request, StaticFiles
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
from .flow import HIGH_WATER_MARK, Flow, RateLimit
from .handler import Handler, Middleware
from .metrics import Metrics, answer_http
from .namespace import AdapterFactory, Namespace, NamespaceMatcher, ParentNamespace
from .observer import Observer
from .recovery import ConnectionStateRecovery, Recovery
from .socket import Socket

logger = logging.getLogger("anysio")
F = TypeVar("F", bound=Callable[..., Any])


class Server:
    """A Socket.IO v5 server. Options and defaults are Node's socket.io 4.x, in Python spelling. ``sio.on``,
    ``sio.emit``, ``sio.to`` and the rest act on the main namespace "/" (``sio.of("/")``); ``sio.of(name)`` reaches
    the others.

    ``connection_state_recovery`` (Node's ``connectionStateRecovery``, off by default): True, a dict or a
    ``ConnectionStateRecovery`` (README, "Connection state recovery"). ``parser`` (Node's ``parser``): "default",
    or "msgpack" for ``socket.io-msgpack-parser``, which the clients must then use too.
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
        metrics: bool | str = False,
        high_water_mark: int | None = HIGH_WATER_MARK,
        drain_timeout: float | None = 30.0,
        event_rate_limit: RateLimit | float | Mapping[str, Any] | None = None,
        connection_rate_limit: RateLimit | float | Mapping[str, Any] | None = None,
        parser: Literal["default", "msgpack"] = "default",
        **options: Unpack[EngineOptions],
    ) -> None:
        recovery = ConnectionStateRecovery.of(connection_state_recovery)
        engine = native_core(
            path=path,
            defer_handshakes=allow_request is not None or generate_id is not None,
            socketio=True,
            connect_timeout=connect_timeout,
            serve_other_paths=static_files is not None or bool(metrics),
            recovery=recovery.max_disconnection_duration if recovery is not None else None,
            connection_rate=RateLimit.pair(connection_rate_limit),
            parser=parser,
            **options,
        )
        self._core: SioCore = engine
        #: Backpressure and the event rate limit (``high_water_mark``, ``drain_timeout``, ``event_rate_limit``).
        self.flow = Flow(engine, high_water_mark, drain_timeout, RateLimit.of(event_rate_limit))
        self.static_files = StaticFiles(static_files) if static_files is not None else None
        self._adapter: AdapterFactory = adapter
        self._namespaces: dict[str, Namespace] = {}
        max_waiting = options.get("max_buffered", MAX_BUFFERED)
        recovered = Recovery(recovery, engine) if recovery is not None else None
        self._dispatcher = Dispatcher(self, self._namespaces, allow_request, generate_id, max_waiting, recovered)
        #: What a driver (``serve``, ``anysio.ASGIApp``, a worker) needs: the core and where its events go.
        self.runtime = Runtime(engine, self._dispatcher.dispatch, self._dispatcher.dispatch_in_tasks)
        #: ``/metrics`` (``metrics=True``, or the path to serve them at), or None.
        self.metrics = Metrics.enable(metrics, self._core, self._dispatcher, self.flow)
        #: Node's ``io.engine`` events: ``@sio.engine.on("connection_error")``, ``"initial_headers"``, ``"headers"``.
        self.engine = EngineEvents(engine, self.runtime)
        #: Node's option: a child namespace goes when its last socket leaves (and is made again on a connect).
        self.cleanup_empty_child_namespaces = cleanup_empty_child_namespaces
        self._parents: list[ParentNamespace] = []
        self._new_namespace: list[Callable[[Namespace], Any]] = []
        #: This process's index among the workers of ``anysio run --workers N`` (None when it serves alone).
        self.worker: int | None = None
        self._main = self.of("/")

    @property
    def dispatcher(self) -> Dispatcher:
        return self._dispatcher

    @property
    def core(self) -> SioCore:
        """The core as the Socket.IO layer calls it (rooms, emits, connections)."""
        return self._core

    async def serve_http(self, conn: int, request: Request) -> None:
        """Answer a request outside the Socket.IO path: ``/metrics`` when on, a static file, or 404."""
        self._core.respond(conn, *await answer_http(self.metrics, self.static_files, request))

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
            self._announce(nsp)
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
        self._announce(child)
        return child

    def _announce(self, nsp: Namespace) -> None:
        for listener in list(self._new_namespace):
            self._dispatcher.notify_server("new_namespace", listener, nsp)

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
    def allow_eio3(self) -> bool:
        """Whether Engine.IO v3 clients (socket.io-client 2.x) are accepted: the ``allow_eio3=`` option (Node's
        ``allowEIO3``), which ``anysio run --allow-eio3`` turns on for a loaded server."""
        return self.runtime.core.allow_eio3

    @allow_eio3.setter
    def allow_eio3(self, allow: bool) -> None:
        self.runtime.core.allow_eio3 = allow

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
        """``of("/").on``: see ``Namespace.on``; but ``new_namespace`` (Node's) is the server's own: it receives
        each namespace made after it was registered, by ``of`` or as a parent namespace's child."""
        if event != "new_namespace":
            return self._main.on(event, handler) if handler is not None else self._main.on(event)

        def register(fn: F) -> F:
            self._new_namespace.append(fn)
            return fn

        return register(handler) if handler is not None else register

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

    def compress(self, value: bool) -> BroadcastOperator:  # Node's io.compress(false): sent uncompressed
        return self._main.compress(value)

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
