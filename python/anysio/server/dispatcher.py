"""From the core's event tuples to the application's handlers: connections, events, acks, disconnects."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from pydantic_core import PydanticSerializationError

from ..adapters.base import Acks
from ..codec.coerce import CoercionError
from ..codec.wire import BadAttachments, Undecodable, decode_args, encode_args, refusal_json
from ..engineio.eager import Suspended, resume
from ..engineio.http import Request
from ..engineio.runtime import (
    MAX_BUFFERED,
    AllowRequest,
    EngineEvents,
    GenerateId,
    Runtime,
    SioCore,
    decide_handshake,
)
from ..exceptions import ConnectionRefused, ProtocolError
from .flow import Flow
from .handler import Args, Handler, Middleware
from .observer import Observers
from .pipeline import FAILED, ErrorHandler, Pipeline, Reporting, ack_args, invoke
from .recovery import Recovery
from .socket import Ack, Handshake, Socket, SocketNamespace

if TYPE_CHECKING:
    from .._native import CoreEvent

logger = logging.getLogger("anysio")
_NOT_STARTED: Any = object()
_INVALID_NAMESPACE = json.dumps({"message": "Invalid namespace"})
#: A handler waiting for its socket's running one: its arguments, ack id, Ack, and the bytes they hold.
Queued = tuple[Handler, Args, int | None, Ack | None, int]


class DispatchNamespace(SocketNamespace, Protocol):
    """What the dispatcher needs from a namespace: its handlers, and its table of connected sockets."""

    @property
    def handlers(self) -> Mapping[str, Handler]: ...
    @property
    def middlewares(self) -> Sequence[Middleware]: ...
    @property
    def error_handlers(self) -> Sequence[ErrorHandler]: ...
    @property
    def sockets(self) -> dict[str, Socket]: ...


class DispatchHost(Protocol):
    """What the dispatcher needs from its server."""

    @property
    def core(self) -> SioCore: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def flow(self) -> Flow: ...

    async def serve_http(self, conn: int, request: Request) -> None: ...

    @property
    def engine(self) -> EngineEvents: ...
    @property
    def cleanup_empty_child_namespaces(self) -> bool: ...

    async def dynamic_namespace(self, name: str, auth: Any) -> DispatchNamespace | None:
        """The child namespace ``name`` of the first parent namespace that takes it (made if new), or None."""
        ...

    def namespace_emptied(self, nsp: DispatchNamespace) -> None:
        """The last socket of ``nsp``, connected or connecting, is gone (a child namespace may go too)."""


def _close_fd(fd: int, owner: int) -> None:
    """A connection for another worker, with no workers: nothing to hand it to."""
    del owner
    os.close(fd)


async def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run a task for one client; whatever it raises is logged, never allowed to end the server's task group."""
    try:
        await fn(*args)
    except Exception:
        logger.exception("%s failed", getattr(fn, "__qualname__", fn))


class Dispatcher(Reporting):
    def __init__(
        self,
        host: DispatchHost,
        namespaces: Mapping[str, DispatchNamespace],
        allow_request: AllowRequest | None,
        generate_id: GenerateId | None,
        max_waiting: int = MAX_BUFFERED,
        recovery: Recovery | None = None,
    ) -> None:
        self.host = host
        self.recovery = recovery
        self.namespaces = namespaces
        self.allow_request = allow_request
        self.generate_id = generate_id
        #: Where a connection that belongs to another worker goes (set for workers).
        self.hand_off: Callable[[int, int], None] = _close_fd
        self.acks = Acks()
        #: What watches the sockets from the side (``Server.observe``: the Admin UI's instrument).
        self.observers = Observers()
        self.sockets: dict[int, Socket] = {}
        # The keys of each Engine.IO session's sockets: a session's close finds its own without a scan.
        self.by_client: dict[int, set[int]] = {}
        # Handlers waiting for a socket's running one, by socket key; absent when none runs.
        self.queues: dict[int, deque[Queued]] = {}
        # The bytes of the arguments in each socket's queue, bounded by max_waiting (max_buffered): a client that
        # sends faster than its handlers finish cannot grow the server's memory without end.
        self.waiting: dict[int, int] = {}
        self.max_waiting = max_waiting
        self.cut_off: set[int] = set()
        self.requests: dict[int, tuple[str, Request]] = {}
        self.clock = 0  # metrics: when the event being dispatched started (on ``times``' clock, in ns)
        # Disconnect handlers of the server's last turn, when its task group is already gone (shutdown).
        self.deferred: list[tuple[Handler, Socket, str]] = []

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        self.host.runtime.spawn(_guarded, fn, *args)

    def dispatch_in_tasks(self, events: list[CoreEvent]) -> None:
        """``dispatch`` without eager handlers, for drivers that cannot stay with one that suspends (ASGI)."""
        self.dispatch(events, eager=False)

    def dispatch(self, events: list[CoreEvent], eager: bool = True) -> Suspended | None:
        """Hand a batch of the core's events to the application.

        With ``eager``, coroutine handlers start here; the first one that suspends stops the batch, and the
        caller must finish it in its own task and leave the rest of the batch to a new one (see engineio/eager.py).
        Without, they run in a task per socket burst."""
        if self.times is not None:  # metrics: each event's time runs from the previous reply (``_reply``)
            self.clock = self.times.now()
        for i, ev in enumerate(events):
            match ev:
                case ("event", key, name, args, argc, ack_id, attachments):
                    finish = self._on_event(key, name, args, argc, ack_id, attachments, eager)
                    if finish is not None:
                        return Suspended(finish, events[i + 1 :])
                case ("ack", key, data, ack_id, attachments):
                    self._on_ack(key, data, ack_id, attachments)
                case ("connect", key, client, nsp, sid, auth):
                    self._on_connect(key, client, nsp, sid, auth)
                case ("disconnect", key, reason):
                    self._on_disconnect(key, reason)
                case ("drained", key):
                    self.host.flow.drained(key)
                case ("expired", pid) if self.recovery is not None:
                    self.recovery.expired(pid)
                case ("open", client, eio_sid, _, req):
                    self.requests[client] = (eio_sid, Request.from_tuple(req))
                    self.observers.client_opened()
                case ("close", client, reason):
                    self.requests.pop(client, None)
                    self.observers.client_closed(reason)
                    self._close_client(client)
                case ("handshake", conn, req):
                    self._spawn(
                        decide_handshake,
                        self.host.core,
                        conn,
                        Request.from_tuple(req),
                        self.allow_request,
                        self.generate_id,
                    )
                case ("handoff", fd, owner):
                    self.hand_off(fd, owner)
                case ("request", conn, req, _):
                    self._spawn(self.host.serve_http, conn, Request.from_tuple(req))
                case ("connection_error", code, detail, req):
                    self.host.engine.connection_error(code, detail, req)
                case ("error", message, remote):
                    logger.info("bad input from %s: %s", remote, message)
                    self.report(None, ProtocolError(message, remote))
        return None

    # ---- connections ----------------------------------------------------------------------------------------

    def _on_connect(self, key: int, client: int, nsp_name: str, sid: str, auth_json: str | None) -> None:
        eio_sid, request = self.requests.get(client, ("", None))
        if request is None:
            return
        # Node's default when the client sends no auth payload.
        auth = json.loads(auth_json) if auth_json else {}
        nsp = self.namespaces.get(nsp_name)
        if nsp is None:
            # A namespace the core hands over unknown: the parent namespaces decide (Node's _checkNamespace).
            self._spawn(self._connect_dynamic, key, client, nsp_name, sid, auth, eio_sid, request)
            return
        socket = Socket(nsp, key, sid, client, eio_sid, Handshake.of(request, auth), request)
        self._add(socket)
        self._spawn(self._connect, socket, nsp, auth)

    def _add(self, socket: Socket) -> None:
        self.sockets[socket.key] = socket
        self.by_client.setdefault(socket.client, set()).add(socket.key)
        if self.recovery is not None:
            self.recovery.opened(socket)

    async def _connect_dynamic(
        self, key: int, client: int, name: str, sid: str, auth: Any, eio_sid: str, request: Request
    ) -> None:
        try:
            nsp = await self.host.dynamic_namespace(name, auth)
        except Exception as e:
            self.failed(f"parent namespace check of {name!r}", None, e)
            nsp = None
        if nsp is None:
            self.host.core.refuse(key, _INVALID_NAMESPACE)
            return
        socket = Socket(nsp, key, sid, client, eio_sid, Handshake.of(request, auth), request)
        self._add(socket)
        await self._connect(socket, nsp, auth)

    async def _connect(self, socket: Socket, nsp: DispatchNamespace, auth: Any) -> None:
        core = self.host.core
        recovery = self.recovery
        try:
            recovered = recovery is not None and await recovery.restore(socket, auth, nsp.adapter)
            # Node skips the middlewares of a recovered socket unless told not to (skipMiddlewares).
            skip = recovered and recovery is not None and recovery.options.skip_middlewares
            for mw in () if skip else nsp.middlewares:
                result = mw(socket)
                if inspect.isawaitable(result):
                    await result
            handler = nsp.handlers.get("connect")
            if handler is not None and await handler.call(socket, [auth], None) is False:
                raise ConnectionRefused()
        except (ConnectionRefused, CoercionError) as e:
            # Auth that does not fit the connect handler: connect_error's data lists the problems.
            message, data = (e.message, e.data) if isinstance(e, ConnectionRefused) else (str(e), {"errors": e.errors})
            core.refuse(socket.key, refusal_json(message, data))
            self._drop(socket.key)
            return
        except Exception as e:
            self.failed(f"connect handler of {nsp.name}", socket, e, f"; refusing {socket.id}")
            core.refuse(socket.key, refusal_json("Internal server error", None))
            self._drop(socket.key)
            return
        if core.accept(socket.key):
            socket.connected = True
            nsp.sockets[socket.id] = socket
            if socket.any_outgoing_listeners:
                nsp.outgoing_watchers += 1
            nsp.adapter.socket_connected(socket)
            self.observers.socket_connected(socket)
        else:
            self._drop(socket.key)

    def _close_client(self, client: int) -> None:
        """The session is gone: drop its sockets still connecting (the connected ones had their disconnect)."""
        for key in list(self.by_client.get(client, ())):
            socket = self.sockets.get(key)
            if socket is not None and not socket.connected:
                self._drop(key)

    def _drop(self, key: int) -> Socket | None:
        self.cut_off.discard(key)
        socket = self.sockets.pop(key, None)
        if socket is None:
            return None
        keys = self.by_client.get(socket.client)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_client[socket.client]
        nsp = self.namespaces.get(socket.namespace)
        if nsp is not None and nsp.sockets.pop(socket.id, None) is socket and socket.any_outgoing_listeners:
            nsp.outgoing_watchers -= 1
        if (
            self.host.cleanup_empty_child_namespaces
            and nsp is not None
            and not nsp.sockets
            and not any(s.nsp is nsp for s in self.sockets.values())
        ):
            self.host.namespace_emptied(nsp)
        return socket

    def _on_disconnect(self, key: int, reason: str) -> None:
        socket = self.sockets.get(key)
        # Looked up first: the last socket of a child namespace takes the namespace with it (cleanup).
        nsp = self.namespaces.get(socket.namespace) if socket is not None else None
        self._drop(key)
        self.acks.cancel(key)
        if socket is None or nsp is None:
            return
        socket.connected = False
        if self.recovery is not None:
            self.recovery.disconnected(socket, reason)
        self.observers.socket_disconnected(socket, reason)
        handler = nsp.handlers.get("disconnect")
        if handler is not None and self.host.runtime.task_group is None:
            self.deferred.append((handler, socket, reason))
        elif handler is not None:
            self._spawn(self._disconnected, handler, socket, reason)

    async def _disconnected(self, handler: Handler, socket: Socket, reason: str) -> None:
        try:
            await handler.call(socket, [reason], None)
        except Exception as e:
            self.failed(handler.name, socket, e)

    async def run_deferred(self, timeout: float) -> None:
        """Run the disconnect handlers of a shutdown ("server shutting down"), as Node does, for at most
        ``timeout`` seconds."""
        deferred, self.deferred = self.deferred, []
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                for handler, socket, reason in deferred:
                    tg.start_soon(self._disconnected, handler, socket, reason)

    # ---- errors: logged once, then the error handlers -----------------------------------------------------

    def error_handlers(self, socket: Socket | None) -> Sequence[ErrorHandler]:
        nsp = self.namespaces.get(socket.namespace) if socket is not None else None
        if nsp is not None and nsp.error_handlers:
            return nsp.error_handlers
        main = self.namespaces.get("/")
        return main.error_handlers if main is not None else ()

    def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        return self.host.runtime.spawn(_guarded, fn, *args)

    def undecodable(self, socket: Socket, error: Exception) -> None:
        """A packet Python cannot read (nesting JSON.parse takes, a placeholder that names no attachment): the
        connection is closed, as Node's is for a packet it cannot decode."""
        logger.info("bad packet from %s: %s", socket.id, error)
        self.host.core.close(socket.client)
        self.report(socket, error)

    # ---- events and acks --------------------------------------------------------------------------------

    def _on_event(
        self,
        key: int,
        name: str | None,
        args_json: str,
        argc: int,
        ack_id: int | None,
        attachments: list[bytes] | None,
        eager: bool,
    ) -> Callable[[], Awaitable[None]] | None:
        """``name`` is None when the event is named by a number (``args_json`` then holds it as its first value).
        Returns what finishes a coroutine handler that suspended (eager only)."""
        socket = self.sockets.get(key)
        if socket is None:
            return None
        if socket.limiter is not None and not socket.limiter.take():
            self.host.flow.limited(key, socket.id, socket.limiter, name, ack_id)
            return None
        if socket.intercepting:
            return self._intercept(socket, name, args_json, ack_id, attachments, eager)
        handlers = self.namespaces[socket.namespace].handlers
        handler = handlers.get(name) if name is not None else None
        args: Args
        if handler is not None and attachments is None:
            # Decoded by the handler's plan, validated straight from the text where it can be.
            args = (args_json, argc)
        else:
            decoded = self._decode(socket, args_json, attachments)
            if decoded is None:
                return None
            args = decoded
            if handler is None:
                handler = handlers.get("*")
                if handler is None:
                    return None
                if name is not None:
                    args = [name, *decoded]
        # A handler that takes an Ack always gets one, callable whether or not the client asked (a no-op then);
        # for the others the return value is the ack, sent without building one.
        ack = None if handler.plan.returns_ack else Ack(socket, ack_id)
        return self._start(handler, socket, args, ack_id, ack, eager, args_json, attachments)

    def _intercept(
        self,
        socket: Socket,
        name: str | None,
        args_json: str,
        ack_id: int | None,
        attachments: list[bytes] | None,
        eager: bool,
    ) -> Callable[[], Awaitable[None]] | None:
        """An event of a socket with catch-all listeners or packet middlewares: the listeners now, then the
        middlewares and the handler in turn, as the socket's other events (``Pipeline``)."""
        decoded = self._decode(socket, args_json, attachments)
        if decoded is None:
            return None
        packet = [name, *decoded] if name is not None else decoded
        ack = Ack(socket, ack_id)
        self.notify_any(socket, packet, ack)
        handlers = self.namespaces[socket.namespace].handlers
        handler = handlers.get(name) if name is not None else None
        args: Args = decoded
        if handler is None:
            handler = handlers.get("*")
            args = packet
        if handler is None and not socket.packet_middlewares:
            return None
        return self._start(Pipeline(handler, packet, self), socket, args, ack_id, ack, eager, args_json, attachments)

    def _start(
        self,
        handler: Handler,
        socket: Socket,
        args: Args,
        ack_id: int | None,
        ack: Ack | None,
        eager: bool,
        args_json: str,
        attachments: list[bytes] | None,
    ) -> Callable[[], Awaitable[None]] | None:
        """Run the handler now (eagerly when ``eager``), or queue it behind the socket's running one (the
        packet's text and attachments are what it holds there)."""
        key = socket.key
        queue = self.queues.get(key)
        if queue is not None:
            size = len(args_json) + (sum(map(len, attachments)) if attachments else 0)
            if self._wait(socket, size):
                queue.append((handler, args, ack_id, ack, size))
            return None
        if not handler.plan.is_async:
            # A plain function with nothing queued before it runs to completion here, with no task to start.
            self._handle(handler, socket, args, ack_id, ack)
            return None
        if not eager:
            self.queues[key] = deque([(handler, args, ack_id, ack, 0)])
            self._spawn(self._drain, socket)
            return None
        coro = self._handle(handler, socket, args, ack_id, ack)
        if coro is None:
            return None
        if type(coro) is not CoroutineType:  # an awaitable of another kind: awaited in a task
            self.queues[key] = deque()
            self._spawn(self._finish, socket, handler, ack_id, coro, _NOT_STARTED)
            return None
        try:
            first = coro.send(None)
        except StopIteration as done:
            self._reply(handler, socket, ack_id, done.value)
            return None
        except Exception as e:
            self.failed(handler.name, socket, e)
            return None
        # Suspended: this socket's next events wait for it, in order.
        self.queues[key] = deque()
        return partial(self._finish, socket, handler, ack_id, coro, first)

    def _handle(self, handler: Handler, socket: Socket, args: Args, ack_id: int | None, ack: Ack | None) -> Any:
        """Coerce and call. A plain function is answered here; a coroutine function's coroutine is returned.
        Errors are answered and reported here (None then)."""
        socket.started = self.clock
        result = invoke(handler, socket, args, ack, ack_id, self)
        if result is FAILED:
            return None
        if handler.plan.is_async:
            return result
        self._reply(handler, socket, ack_id, result)
        return None

    async def _finish(self, socket: Socket, handler: Handler, ack_id: int | None, awaitable: Any, first: Any) -> None:
        """Finish a handler that suspended (``first`` is what its coroutine yielded, which may be None;
        _NOT_STARTED for an awaitable of another kind), then the handlers of the socket's events that arrived
        meanwhile."""
        try:
            try:
                result = await (awaitable if first is _NOT_STARTED else resume(awaitable, first))
            except Exception as e:
                self.failed(handler.name, socket, e)
            else:
                self._reply(handler, socket, ack_id, result)
            await self._run_queue(socket)
        finally:
            del self.queues[socket.key]
            self.waiting.pop(socket.key, None)

    async def _drain(self, socket: Socket) -> None:
        """Run a socket's queued handlers one after the other, in the order their events arrived.

        One task per burst rather than per event: handlers that never really wait (most: emits and broadcasts
        return at once) then run back to back, and what they send to each client leaves in one write."""
        try:
            await self._run_queue(socket)
        finally:
            del self.queues[socket.key]
            self.waiting.pop(socket.key, None)

    async def _run_queue(self, socket: Socket) -> None:
        queue = self.queues[socket.key]
        while queue:
            handler, args, ack_id, ack, size = queue.popleft()
            if size:
                self.waiting[socket.key] -= size
            if self.times is not None:
                self.clock = self.times.now()
            pending = self._handle(handler, socket, args, ack_id, ack)
            if pending is None:
                continue
            try:
                result = await pending
            except Exception as e:
                self.failed(handler.name, socket, e)
                continue
            self._reply(handler, socket, ack_id, result)

    def _wait(self, socket: Socket, size: int) -> bool:
        """Count an event queued behind the socket's running handler; past max_waiting bytes the client's
        connection is closed instead (logged once), as a client that does not read its output is dropped."""
        waiting = self.waiting.get(socket.key, 0) + size
        if waiting <= self.max_waiting:
            self.waiting[socket.key] = waiting
            return True
        if socket.key not in self.cut_off:
            self.cut_off.add(socket.key)
            logger.info("events from %s waiting for its handlers over %d bytes: closing", socket.id, self.max_waiting)
            self.host.core.close(socket.client)
        return False

    def _decode(self, socket: Socket, data: str, attachments: list[bytes] | None) -> list[Any] | None:
        """An EVENT's or ACK's arguments, or None when its placeholders name no attachment: Node's decoder throws
        then, and its Client closes the whole connection ("forced close" for every socket of it), sending no
        DISCONNECT."""
        try:
            return decode_args(data, attachments)
        except (BadAttachments, Undecodable) as e:
            self.undecodable(socket, e)
            return None

    def unfit(
        self, handler: Handler, socket: Socket, ack_id: int | None, error: CoercionError, ack: Ack | None = None
    ) -> None:
        """Arguments that do not fit ``handler``: the problems go back in the ack, or as an ``error`` event."""
        body = error.body()
        logger.warning("event %r from %s does not fit its handler: %s", handler.name, socket.id, json.dumps(body))
        if ack is not None and ack.requested:
            ack(body)  # a no-op when an earlier handler of the event replied
        elif ack_id is not None:
            self._send_ack(handler, socket, ack_id, [body])
        else:
            data, attachments = encode_args(["error", {"event": handler.name, **body}])
            self.host.core.emit_to(socket.key, data, attachments)
        self.report(socket, error)

    def _reply(self, handler: Handler, socket: Socket, ack_id: int | None, result: Any) -> None:
        if (times := self.times) is not None:  # one call per event: this reply ends it, and starts the next
            self.clock = times.lap(socket.started)
        if ack_id is None or not handler.plan.returns_ack:
            return
        to_json = handler.plan.ack_to_json
        # The serializer planned for the return annotation, unless the value asks for the general path: None is
        # no argument, a tuple several, which the annotation does not describe.
        if to_json is None or result is None or type(result) is tuple:
            self._send_ack(handler, socket, ack_id, ack_args(result))
            return
        try:
            data = to_json((result,), warnings=False)
        except PydanticSerializationError as e:
            logger.error("handler for %r returned what cannot be sent (socket %s): %s", handler.name, socket.id, e)
            return
        self.host.core.emit_to(socket.key, data, [], ack_id, True)

    def _send_ack(self, handler: Handler, socket: Socket, ack_id: int, args: list[Any]) -> None:
        try:
            data, attachments = encode_args(args)
        except (TypeError, ValueError, RecursionError) as e:
            logger.error("handler for %r returned what cannot be sent (socket %s): %s", handler.name, socket.id, e)
            return
        self.host.core.emit_to(socket.key, data, attachments, ack_id, True)

    def _on_ack(self, key: int, data: str, ack_id: int, attachments: list[bytes] | None) -> None:
        socket = self.sockets.get(key)
        if socket is None:
            return
        # Decoded before the lookup: bad placeholders close the connection even when no ack is pending, as in
        # Node, whose decoder reassembles every packet first.
        args = self._decode(socket, data, attachments)
        if args is None:
            return
        self.acks.resolve(key, ack_id, args)
