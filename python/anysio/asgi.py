"""Serve an anysio server from an ASGI server (uvicorn, hypercorn, ...), beside another ASGI application.

The ASGI server parses HTTP and WebSocket framing; each request under ``/{socketio_path}/`` becomes a *virtual
connection* of the same Rust core the standalone server drives (``_native.VirtualCore``): sessions, upgrades,
heartbeats, rooms and acks behave as they do standalone, and events reach the same dispatcher and handlers.

One background task (started at lifespan startup, or on the first request when the ASGI server sends no lifespan
events) runs the core's timers, settles what the requests fed in (a WebSocket's messages are settled there, one
batch per turn), dispatches the events, collects what the application's calls produced, and wakes the requests
waiting for it: a parked long-polling GET, or a WebSocket's writer.

Use it instead of ``Server.serve``, not beside it, and wrap a server in one ASGIApp only: the core serves one
driver at a time. Under uvicorn a parked long-polling GET delays a graceful shutdown until it is answered (the
next ping at the latest); ``--timeout-graceful-shutdown`` bounds that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from ._native import VirtualCore
from .engineio.http import StaticFiles
from .engineio.runtime import drive
from .engineio.server import EngineServer
from .exceptions import checked_options
from .server.server import Server

if TYPE_CHECKING:
    from ._native import CoreEvent
    from ._native import VirtualOutput as Output
    from .engineio.eager import Suspended

logger = logging.getLogger("anysio")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]


def _headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    return [(bytes(k), bytes(v)) for k, v in scope.get("headers", ())]


def _client(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else None


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers]


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette's rule: ``path`` includes ``root_path``)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


class _Waiter(Protocol):
    """What a request waits on for its connection's output: an asyncio future, or an ``_EventWaiter``."""

    def done(self) -> bool: ...
    def set_result(self, result: None, /) -> None: ...
    def __await__(self) -> Generator[Any, None, Any]: ...


class _EventWaiter:
    """A waiter on an event loop other than asyncio's (trio): an anyio Event, with a future's interface."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: None, /) -> None:
        self._event.set()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._event.wait().__await__()


def _waiter_factory() -> Callable[[], _Waiter]:
    """New waiters for the running event loop: on asyncio a bare future, cheaper than an Event per wait."""
    try:
        return asyncio.get_running_loop().create_future
    except RuntimeError:
        return _EventWaiter


async def _plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    if headers is None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ASGIApp:
    """An ASGI application serving ``sio`` under ``/{socketio_path}/``.

    Other requests go to ``other_app`` when given (a Starlette or FastAPI app, say), else to ``static_files``
    (URL prefix -> directory or file) or the server's own (``Server(static_files=)``, ``add_static_files``: the
    Admin UI's), else get a 404. Lifespan events are forwarded to ``other_app``.
    """

    @checked_options()
    def __init__(
        self,
        sio: Server | EngineServer,
        other_app: ASGIApplication | None = None,
        static_files: Mapping[str, str | Path] | None = None,
        socketio_path: str = "socket.io",
    ) -> None:
        self.sio = sio
        self.other_app = other_app
        self.static_files = StaticFiles(static_files) if static_files else None
        trimmed = socketio_path.strip("/")
        self.prefix = f"/{trimmed}/" if trimmed else "/"
        self._runtime = sio.runtime
        self._core = VirtualCore(self._runtime.core)
        # Events that the requests' tasks fed in, for the driver loop to dispatch (`_collect`): a request's task
        # must go back to its client, so it cannot stay with a coroutine handler that suspends (see eager.py).
        self._pending: list[CoreEvent] = []
        self._engine_path = self._core.path
        self._waiters: dict[int, _Waiter] = {}
        self._running = False
        # After the lifespan shutdown: requests are refused instead of starting the background task again.
        self._closed = False
        self._starting: anyio.Event | None = None
        # The lazily started runner's asyncio task: the loop keeps only a weak reference to it.
        self._detached: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(scope, receive, send)
        path = _route_path(scope) if kind in ("http", "websocket") else ""
        if path.startswith(self.prefix):
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            target = self._engine_path + path[len(self.prefix) :] + (f"?{query}" if query else "")
            if kind == "http":
                return await self._http(scope, receive, send, target)
            return await self._websocket(scope, receive, send, target)
        if self.other_app is not None:
            return await self.other_app(scope, receive, send)
        if kind == "http":
            # Else the files the server itself serves (``Server.add_static_files``: the Admin UI's).
            files = self.static_files or (self.sio.static_files if isinstance(self.sio, Server) else None)
            if files is not None:
                status, headers, body = await files.respond(scope["method"], path)
                return await _plain(send, status, body, _encode_headers(headers))
            return await _plain(send, 404, b"Not Found")
        if kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    # ---- the background task -------------------------------------------------------------------------------

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the core's timers, collect the application's output and host the handlers, until cancelled."""
        if self._running:
            task_status.started()
            return
        try:
            async with anyio.create_task_group() as tg:
                with self._runtime.hosting(tg):
                    self._running = True
                    task_status.started()
                    if self._starting is not None:
                        self._starting.set()
                    # As run_core's: woken by the application's calls and by requests that fed events in.
                    core = self._core
                    tg.start_soon(drive, tg, core.fileno(), core.next_timeout, self._collect, self._dispatch, [])
                    # Handlers are hosted until cancelled, whichever task runs the loop by then.
                    await anyio.sleep_forever()
        finally:
            self._running = False
            self._starting = None

    def _collect(self) -> list[CoreEvent]:
        """The driver loop's next events: what the requests fed in, then the core's own (timers, the
        application's calls); requests with output waiting are woken."""
        turned, ready = self._core.turn()
        self._wake(ready)
        pending, self._pending = self._pending, []
        return pending + turned if pending else turned

    def _dispatch(self, events: list[CoreEvent]) -> Suspended | None:
        """Dispatch a batch, then settle at once: what its handlers sent goes to the writers now, not after
        another wait of the driver loop. Events that settling made wait for the loop's next turn."""
        suspended = self._runtime.dispatch(events)
        if suspended is None:
            turned, ready = self._core.turn()
            self._wake(ready)
            if turned:
                self._pending.extend(turned)
                self._core.wake()
        return suspended

    async def _run_detached(self) -> None:
        starting = self._starting
        try:
            await self._run()
        except Exception:
            logger.exception("the anysio ASGI background task failed")
        finally:
            if starting is not None:
                starting.set()

    async def _ensure_running(self) -> bool:
        """Start the background task on the first request when no lifespan startup did. False once the
        lifespan shutdown is done.

        The task must outlive the request that starts it, which a task group inside the request cannot give:
        it is spawned as a loop-level task (asyncio) or a system task (trio), and dies with the event loop.
        """
        if self._running or self._closed:
            return not self._closed
        starting = self._starting
        if starting is None:
            logger.debug("no lifespan startup: starting the background task with the first request")
            starting = self._starting = anyio.Event()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                import trio

                trio.lowlevel.spawn_system_task(self._run_detached)
            else:
                self._detached = loop.create_task(self._run_detached())
        await starting.wait()
        if not self._running:
            raise RuntimeError("the anysio ASGI background task did not start")
        return True

    def _apply(self, events: list[CoreEvent], ready: list[int]) -> None:
        """Hand what a request fed in to the background task's next dispatch (at once, with handlers in tasks,
        when there is none: at shutdown), then wake the requests that have output."""
        if events:
            if self._running and not self._closed:
                self._pending.extend(events)
                self._core.wake()
            else:
                try:
                    self._runtime.dispatch_in_tasks(events)
                except Exception:
                    logger.exception("dispatching events failed")
        self._wake(ready)

    def _wake(self, ready: list[int]) -> None:
        waiters = self._waiters
        for conn in ready:
            waiter = waiters.pop(conn, None)
            # Done already when its request was cancelled while waiting.
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _next(self, conn: int, new_waiter: Callable[[], _Waiter]) -> list[Output]:
        """The outputs of `conn`, waiting until there are some."""
        take = self._core.take
        while True:
            outputs: list[Output] = take(conn)
            if outputs:
                return outputs
            waiter = self._waiters[conn] = new_waiter()
            await waiter

    def _release(self, conn: int) -> None:
        """The request is over; a connection the engine still holds is dropped as if its peer went away."""
        self._waiters.pop(conn, None)
        self._apply(*self._core.disconnect(conn))

    def _shutdown(self) -> None:
        """Close every session ("server shutting down"); the requests still open deliver the goodbyes."""
        self._closed = True
        self._apply(*self._core.shutdown())

    # ---- lifespan ------------------------------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_first_ours() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                # Before the other application's shutdown: handlers may use what it is about to release.
                self._shutdown()
            return message

        self._closed = False
        async with anyio.create_task_group() as tg:
            await tg.start(self._run)
            try:
                if self.other_app is not None:
                    await self.other_app(scope, receive_first_ours, send)
                    return
                while True:
                    message = await receive_first_ours()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            finally:
                tg.cancel_scope.cancel()

    # ---- HTTP (long-polling) -------------------------------------------------------------------------------

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when the client left. Past max_payload reading stops: the engine answers 413
        from the length alone."""
        limit = self._core.max_payload + 1
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = bytes(message.get("body", b""))
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit or not message.get("more_body", False):
                return b"".join(chunks)[:limit]

    async def _http(self, scope: Scope, receive: Receive, send: Send, target: str) -> None:
        if not await self._ensure_running():
            return await _plain(send, 503, b"Service Unavailable")
        body = await self._read_body(receive)
        if body is None:
            return
        conn, events, ready = self._core.request(scope["method"], target, _headers(scope), body, _client(scope))
        try:
            self._apply(events, ready)
            outputs = self._core.take(conn) or await self._wait_or_disconnect(conn, receive)
            for output in outputs:
                match output:
                    case ("response", status, headers, body):
                        return await _plain(send, status, body, _encode_headers(headers))
            if outputs:
                # The engine dropped the connection without an answer (it never does for a valid request).
                await _plain(send, 500, b"")
        finally:
            self._release(conn)

    async def _wait_or_disconnect(self, conn: int, receive: Receive) -> list[Output]:
        """Wait for the answer of a parked request; [] when the client leaves first."""
        outputs: list[Output] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            outputs = await self._next(conn, _waiter_factory())
            tg.cancel_scope.cancel()
        return outputs

    # ---- WebSocket -----------------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, target: str) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if not await self._ensure_running():
            return await send({"type": "websocket.close", "code": 1001})
        conn, events, ready = self._core.websocket(target, _headers(scope), _client(scope))
        try:
            self._apply(events, ready)
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    feed = self._core.message
                    while True:
                        message = await receive()
                        kind = message["type"]
                        if kind == "websocket.receive":
                            text = message.get("text")
                            data = text if text is not None else message.get("bytes")
                            if data is not None:
                                # Settled by the driver loop's next turn, with the other messages of the batch.
                                feed(conn, data)
                                if self._closed or not self._running:
                                    # No loop to turn: settled now, its events dispatched in tasks.
                                    self._apply(*self._core.turn())
                        elif kind == "websocket.disconnect":
                            break
                    tg.cancel_scope.cancel()

                tg.start_soon(read)
                await self._write_websocket(scope, send, conn)
                tg.cancel_scope.cancel()
        finally:
            self._release(conn)

    async def _write_websocket(self, scope: Scope, send: Send, conn: int) -> None:
        try:
            await self._write_websocket_outputs(scope, send, conn)
        except OSError:
            # The client left while we were writing (uvicorn's ClientDisconnected): the reader hears of it too.
            logger.debug("WebSocket client gone while sending")

    async def _write_websocket_outputs(self, scope: Scope, send: Send, conn: int) -> None:
        accepted = False
        new_waiter = _waiter_factory()
        while True:
            for output in await self._next(conn, new_waiter):
                if type(output) is dict:  # a message, as its "websocket.send" event
                    await send(output)
                    continue
                match output:
                    case ("accept", headers):
                        await send({"type": "websocket.accept", "headers": _encode_headers(headers)})
                        accepted = True
                    case ("response", status, headers, body):
                        return await self._refuse_websocket(scope, send, status, headers, body)
                    case ("close", code):
                        await send({"type": "websocket.close", "code": code if accepted and code else 1000})
                        return

    async def _refuse_websocket(
        self, scope: Scope, send: Send, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """The engine refused the handshake (unknown sid, say): its answer as is where the server can send
        one (the ASGI "websocket.http.response" extension), else a plain refusal (403)."""
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": _encode_headers(headers)})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
