"""The Socket.IO server: Node's ``Server``, ``Namespace`` and ``BroadcastOperator`` in Python spelling."""

from __future__ import annotations

import inspect
import json
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

import anyio
import anyio.abc

from ..adapters.base import Adapter, BroadcastOptions
from ..codec.coerce import to_jsonable
from ..codec.wire import encode_args
from ..engineio.http import StaticFiles
from ..engineio.runtime import AllowRequest, EngineOptions, GenerateId, native_core, run_core
from ..exceptions import AckTimeout, Disconnected, reply_value
from .dispatcher import Dispatcher, Handler
from .socket import Socket

if TYPE_CHECKING:
    from ..adapters.bus import Bus

logger = logging.getLogger("anysio")
F = TypeVar("F", bound=Callable[..., Any])
Middleware = Callable[[Socket], Any]


@dataclass(frozen=True)
class BroadcastOperator:
    """A set of targets (rooms, exceptions, flags) to emit to or act on; each method returns a new one."""

    nsp: Namespace
    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    is_local: bool = False
    is_volatile: bool = False
    ack_timeout: float | None = None

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

    @property
    def _opts(self) -> BroadcastOptions:
        return BroadcastOptions(self.rooms, self.except_rooms, self.is_local, self.is_volatile)

    async def emit(self, event: str, *args: Any) -> None:
        await self.nsp.adapter.broadcast([event, *args], self._opts)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Emit and gather every target's acknowledgement. Raises AckTimeout (with the replies that came) when
        some are missing after ``timeout(...)``; sockets that disconnect meanwhile count as done."""
        return await self.nsp.adapter.broadcast_with_ack([event, *args], self._opts, self.ack_timeout)

    async def fetch_sockets(self) -> list[Socket]:
        return await self.nsp.adapter.fetch_sockets(self._opts)

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        await self.nsp.adapter.add_sockets(self._opts, sorted(_names(rooms)))

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        await self.nsp.adapter.del_sockets(self._opts, sorted(_names(rooms)))

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self.nsp.adapter.disconnect_sockets(self._opts, close)


def _names(rooms: Iterable[str | Iterable[str]]) -> frozenset[str]:
    out: set[str] = set()
    for r in rooms:
        out.update([r] if isinstance(r, str) else r)
    return frozenset(out)


class Namespace:
    """A namespace: its handlers, middlewares, sockets and adapter (Node's ``io.of(name)``)."""

    def __init__(self, server: Server, name: str, adapter: type[Adapter]) -> None:
        self.server = server
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self.middlewares: list[Middleware] = []
        self.server_side_handlers: dict[str, Callable[..., Any]] = {}
        self.sockets: dict[str, Socket] = {}
        self._by_key: dict[int, Socket] = {}
        self._ids = 0
        self.adapter = adapter(self)

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

    @property
    def _all(self) -> BroadcastOperator:
        return BroadcastOperator(self)

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

    async def fetch_sockets(self) -> list[Socket]:
        return await self._all.fetch_sockets()

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._all.disconnect_sockets(close)

    async def sockets_join(self, *rooms: str) -> None:
        await self._all.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        await self._all.sockets_leave(*rooms)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Node's ``serverSideEmit``: tell the other servers of the cluster (not this one)."""
        await self.adapter.server_side_emit([event, *args])

    def on_server_side(self, event: str) -> Callable[[F], F]:
        """Register a handler for ``server_side_emit`` from the other servers (Node's ``io.on(event)``)."""

        def register(fn: F) -> F:
            self.server_side_handlers[event] = fn
            return fn

        return register

    async def _server_side_event(self, args: list[Any]) -> None:
        handler = self.server_side_handlers.get(args[0]) if args and isinstance(args[0], str) else None
        if handler is not None:
            result = handler(*args[1:])
            if inspect.isawaitable(result):
                await result

    @property
    def count(self) -> int:
        """Sockets connected to this namespace (in this process)."""
        return self.adapter.socket_count()

    def _next_id(self) -> int:
        ack_id = self._ids
        self._ids += 1
        return ack_id


class Server(Namespace):
    """A Socket.IO v5 server. Options and defaults are Node's socket.io 4.x, in Python spelling.

    The server is also its main namespace "/": ``sio.on``, ``sio.emit``, ``sio.to`` act there;
    ``sio.of(name)`` reaches the others.
    """

    def __init__(
        self,
        *,
        path: str = "/socket.io",
        connect_timeout: float = 45.0,
        allow_request: AllowRequest | None = None,
        generate_id: GenerateId | None = None,
        adapter: type[Adapter] = Adapter,
        static_files: Mapping[str, str | Path] | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        self._core = native_core(
            path=path,
            defer_handshakes=allow_request is not None or generate_id is not None,
            socketio=True,
            connect_timeout=connect_timeout,
            serve_other_paths=static_files is not None,
            **options,
        )
        self.static_files = StaticFiles(static_files) if static_files is not None else None
        self._adapter_class = adapter
        self._namespaces: dict[str, Namespace] = {}
        self._dispatcher = Dispatcher(self, allow_request, generate_id)
        super().__init__(self, "/", adapter)
        self._namespaces["/"] = self
        self._core.add_namespace("/")
        self._tg: anyio.abc.TaskGroup | None = None
        self._bus: Bus | None = None
        self.address: tuple[str, int] | None = None

    def of(self, name: str) -> Namespace:
        if not name.startswith("/"):
            name = "/" + name
        nsp = self._namespaces.get(name)
        if nsp is None:
            nsp = self._namespaces[name] = Namespace(self, name, self._adapter_class)
            self._core.add_namespace(name)
        return nsp

    @property
    def namespaces(self) -> dict[str, Namespace]:
        return dict(self._namespaces)

    @property
    def engine_count(self) -> int:
        """Open Engine.IO sessions (the seed's ``Count()``; Node's ``io.engine.clientsCount``)."""
        return self._core.session_count

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
            await run_core(self._core, host, port, self._dispatcher.dispatch, self, task_status, sock)
        finally:
            with anyio.CancelScope(shield=True):
                await self._dispatcher.run_deferred(timeout=5.0)

    def _become_worker(self, index: int, bus: Bus) -> None:
        """Serve as worker ``index``: own the sessions whose sid carries it, and share rooms and broadcasts
        with the other workers over ``bus`` (see workers.py)."""
        from ..adapters.bus import BusAdapter, attach

        self._core.set_worker(index)
        self._bus = bus
        BusAdapter.bus = bus
        self._adapter_class = BusAdapter
        for nsp in self._namespaces.values():
            nsp.adapter = BusAdapter(nsp)
        attach(self, bus)

    # ---- used by Socket, BroadcastOperator and the dispatcher ---------------------------------------------

    def _emit_to(self, socket: Socket, args: list[Any], ack_id: int | None = None) -> None:
        data, attachments = encode_args(args)
        self._core.emit_to(socket.key, data, attachments, ack_id)

    async def _emit_with_ack(self, socket: Socket, args: list[Any], timeout: float | None) -> Any:
        if socket.key not in self._dispatcher.sockets:
            raise Disconnected(f"{socket.id} is disconnected; {args[0]!r} was not sent")
        ack_id = socket.nsp._next_id()
        done = anyio.Event()
        box: list[list[Any] | None] = []

        def resolve(values: list[Any] | None) -> None:
            box.append(values)
            done.set()

        self._dispatcher.expect_ack(socket.key, ack_id, resolve)
        try:
            self._emit_to(socket, args, ack_id)
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                await done.wait()
        except TimeoutError:
            raise AckTimeout(f"no acknowledgement of {args[0]!r} from {socket.id} in {timeout} s") from None
        finally:
            self._dispatcher.forget_ack(socket.key, ack_id)
        values = box[0]
        if values is None:
            raise Disconnected(f"{socket.id} disconnected before acknowledging {args[0]!r}")
        return reply_value(values)


def refusal_json(message: str, data: Any) -> str:
    """CONNECT_ERROR data as Node sends it: {"message": ..., "data": ...}. Data that JSON cannot carry is left
    out (and logged) rather than leaving the client without an answer."""
    body: dict[str, Any] = {"message": str(message)}
    try:
        if data is not None:
            body["data"] = to_jsonable(data)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        logger.error("ConnectionRefused data cannot be sent as JSON: %s", e)
        return json.dumps({"message": str(message)}, separators=(",", ":"), ensure_ascii=False)
