"""The runtime every server shares: the Rust core built from the Engine.IO options, the driver loop that waits on
its file descriptor with anyio (so it runs unchanged on asyncio, uvloop and trio), the handshake decision, and the
interface the Socket.IO layer calls on the core.

Nothing here knows a server class: a server hands its core and its dispatch function over as a ``Runtime``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import math
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar, Unpack, overload

import anyio
import anyio.abc
import anyio.lowlevel

from .._native import EngineCore
from ..exceptions import BackendUnavailable
from .eager import Suspended
from .http import Request

if TYPE_CHECKING:
    from .._native import CoreEvent, RequestTuple

logger = logging.getLogger("anysio")
F = TypeVar("F", bound=Callable[..., Any])
#: The event loops a server runs on; uvloop is asyncio's loop replaced by uvloop's.
BACKENDS = ("asyncio", "uvloop", "trio")
#: What each backend needs installed beyond anyio: the requirement of the extra of the same name (pyproject.toml).
BACKEND_REQUIREMENTS = {"uvloop": "uvloop>=0.19", "trio": "trio>=0.25"}


def check_backend(backend: str) -> None:
    """Raise ValueError for an unknown backend, BackendUnavailable (one line: the pip install that fixes it) for
    one that is not installed."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    requirement = BACKEND_REQUIREMENTS.get(backend)
    if requirement is not None and importlib.util.find_spec(backend) is None:
        raise BackendUnavailable(
            f"the {backend} backend needs {backend}, which is not installed: pip install '{requirement}'"
            f" (the extra anysio[{backend}])"
        )


def run_backend(main: Callable[[], Awaitable[None]], backend: str) -> None:
    """``anyio.run(main)`` on ``backend`` (one of ``BACKENDS``), after ``check_backend``."""
    check_backend(backend)
    name, options = ("asyncio", {"use_uvloop": True}) if backend == "uvloop" else (backend, {})
    anyio.run(main, backend=name, backend_options=options)


def url(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_until_signalled(serve: Callable[..., Coroutine[Any, Any, None]], host: str, port: int, backend: str) -> None:
    """A server's blocking ``run``: ``serve(host, port)`` on ``backend`` until SIGINT (Ctrl-C) or SIGTERM, then
    the orderly shutdown of a cancelled ``serve`` (clients hear "server shutting down"), with no traceback.
    Prints ``anysio: listening on http://host:port`` once it listens. OSError when it cannot listen."""

    failed: list[OSError] = []

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                try:
                    address = await tg.start(serve, host, port)
                except OSError as e:  # raised alone, not in an exception group
                    failed.append(e)
                    return
                print(f"anysio: listening on {url(address)}", flush=True)
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()

    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C before the signal receiver is in place
        run_backend(main, backend)
    if failed:
        raise failed[0]


@dataclass(frozen=True)
class Cookie:
    """The session cookie set on the handshake (off unless given, as in Node)."""

    name: str = "io"
    path: str = "/"
    http_only: bool = True
    same_site: str | None = "Lax"


class RequestRefused(Exception):
    """Raised (or returned as a message) by an allow-request hook to refuse a handshake with 403."""


AllowRequest = Callable[[Request], bool | str | Awaitable[bool | str | None] | None]
GenerateId = Callable[[Request], str | Awaitable[str]]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


#: ``max_buffered``'s default: 16 MiB.
MAX_BUFFERED = 16 * 1024 * 1024


class EngineOptions(TypedDict, total=False):
    """The Engine.IO options every server takes: Node's engine.io options, in Python spelling, with Node's
    defaults: ping_interval 25 s, ping_timeout 20 s, upgrade_timeout 10 s, max_payload 1e6 bytes, both
    transports, upgrades allowed, no CORS, no cookie (True for Node's ``io``), no connection limit; and one
    that Node lacks, max_buffered (16 MiB)."""

    ping_interval: float
    ping_timeout: float
    upgrade_timeout: float
    max_payload: int
    transports: Iterable[str]
    allow_upgrades: bool
    cors_allowed_origins: str | Iterable[str] | None
    cors_credentials: bool
    cookie: Cookie | bool | None
    max_connections: int | None
    #: Bytes that may wait for a client before it is dropped as too slow: a WebSocket's unwritten output, or
    #: the payload queued for a long-polling client's next GET (its session then closes: "transport error").
    max_buffered: int
    #: A request must arrive whole within this many seconds of its first byte, else 408 and close (Node's
    #: headersTimeout, 60 s); and an idle keep-alive connection is closed after keep_alive_timeout (Node's
    #: keepAliveTimeout, 5 s). The standalone server's: under ASGI, the ASGI server's own apply.
    request_timeout: float
    keep_alive_timeout: float
    #: Prepended to generated sids (workers use it to name a session's owner).
    sid_prefix: str


def native_core(
    *,
    path: str,
    defer_handshakes: bool,
    socketio: bool = False,
    connect_timeout: float = 45.0,
    serve_other_paths: bool = False,
    recovery: float | None = None,
    **options: Unpack[EngineOptions],
) -> EngineCore:
    """The Rust core for the options every server shares (``recovery``: connection state recovery's maximum
    disconnection, in seconds; None is off)."""
    origins = options.get("cors_allowed_origins")
    if isinstance(origins, str):
        origins = [origins]
    cookie = options.get("cookie")
    c = Cookie() if cookie is True else cookie if isinstance(cookie, Cookie) else None
    return EngineCore(
        ping_interval=options.get("ping_interval", 25.0),
        ping_timeout=options.get("ping_timeout", 20.0),
        upgrade_timeout=options.get("upgrade_timeout", 10.0),
        max_payload=options.get("max_payload", 1_000_000),
        transports=list(options.get("transports", ("polling", "websocket"))),
        allow_upgrades=options.get("allow_upgrades", True),
        path=path,
        cors_origins=None if origins is None else list(origins),
        cors_credentials=options.get("cors_credentials", False),
        cookie_name=c.name if c else None,
        cookie_path=c.path if c else "/",
        cookie_http_only=c.http_only if c else True,
        cookie_same_site=c.same_site if c else None,
        max_connections=options.get("max_connections"),
        max_buffered=options.get("max_buffered", MAX_BUFFERED),
        request_timeout=options.get("request_timeout", 60.0),
        keep_alive_timeout=options.get("keep_alive_timeout", 5.0),
        defer_handshakes=defer_handshakes,
        sid_prefix=options.get("sid_prefix", ""),
        socketio=socketio,
        connect_timeout=connect_timeout,
        serve_other_paths=serve_other_paths,
        recovery=recovery,
    )


class HandshakeCore(Protocol):
    """The core's answers to a handshake it holds (``defer_handshakes=True``)."""

    def accept_handshake(self, conn: int, sid: str | None = None) -> None: ...
    def refuse_handshake(self, conn: int, code: int, message: str | None = None) -> None: ...


#: Node's engine.io error messages, by code (``Server.errorMessages``).
ERROR_MESSAGES = {
    0: "Transport unknown",
    1: "Session ID unknown",
    2: "Bad handshake method",
    3: "Bad request",
    4: "Forbidden",
    5: "Unsupported protocol version",
}
#: Response headers as a headers listener changes them: a name's value, or its values (several Set-Cookie).
Headers = dict[str, str | list[str]]
HeadersListener = Callable[[Headers, Request], None]
ENGINE_EVENTS = ("connection_error", "initial_headers", "headers")


@dataclass(frozen=True)
class ConnectionErrorInfo:
    """What a ``connection_error`` listener receives (Node's ``err``): the refused request, Node's code and
    message (``ERROR_MESSAGES``), and Node's context: ``{"transport": ...}`` (0), ``{"sid": ...}`` (1),
    ``{"method": ...}`` (2), ``{"name": ...}`` (3), ``{"message": ...}`` (4, the refusal's own message, as from
    ``allow_request``), ``{"protocol": ...}`` (5)."""

    req: Request
    code: int
    message: str
    context: dict[str, Any]

    @classmethod
    def of(cls, code: int, detail: str | None, req: Request) -> ConnectionErrorInfo:
        q = req.query
        eio = q.get("EIO", "")
        contexts: dict[int, dict[str, Any]] = {
            0: {"transport": q.get("transport")},
            1: {"sid": q.get("sid")},
            2: {"method": req.method},
            3: {"name": "TRANSPORT_MISMATCH" if "sid" in q else "TRANSPORT_HANDSHAKE_ERROR"},
            4: {"message": detail} if detail else {},
            5: {"protocol": int(eio) if eio.isdigit() else eio},
        }
        return cls(req, code, ERROR_MESSAGES.get(code, "Bad request"), contexts.get(code, {}))


class EngineEvents:
    """Node's ``io.engine`` events: ``sio.engine.on("connection_error")`` (a ``ConnectionErrorInfo``), and
    ``on("initial_headers")`` / ``on("headers")``, called with the response headers (a dict to change: the
    session cookie is in it when ``cookie=`` is set) and the ``Request``, for each response that carries a
    session (``initial_headers`` for the handshake's only). Headers listeners run while the response is built:
    plain functions, no coroutines. A ``connection_error`` listener may be a coroutine function (it runs in a
    task)."""

    def __init__(self, core: EngineCore, runtime: Runtime) -> None:
        self._core = core
        self._runtime = runtime
        self.listeners: dict[str, list[Callable[..., Any]]] = {name: [] for name in ENGINE_EVENTS}

    @overload
    def on(self, event: str) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, listener: F) -> F: ...
    def on(self, event: str, listener: F | None = None) -> Any:
        """Add a listener, as ``engine.on("headers", fn)`` or as the decorator ``@engine.on("headers")``."""
        if event not in self.listeners:
            raise ValueError(f"unknown engine event {event!r}: one of {', '.join(ENGINE_EVENTS)}")

        def register(fn: F) -> F:
            self.listeners[event].append(fn)
            if event != "connection_error":
                self._core.set_headers_hook(self._headers)
            return fn

        return register(listener) if listener is not None else register

    def connection_error(self, code: int, detail: str | None, req: RequestTuple) -> None:
        """A refused request (the core's "connection_error" event): logged once, then the listeners."""
        request = Request.from_tuple(req)
        logger.info("bad input from %s: refused: %s", request.remote, detail or ERROR_MESSAGES.get(code))
        listeners = self.listeners["connection_error"]
        if not listeners:
            return
        info = ConnectionErrorInfo.of(code, detail, request)
        for fn in list(listeners):
            try:
                result = fn(info)
            except Exception:
                logger.exception("connection_error listener %s failed", getattr(fn, "__qualname__", fn))
                continue
            if inspect.isawaitable(result) and not self._runtime.spawn(_await_logged, result):
                _discard(result)

    def _headers(self, initial: bool, req: RequestTuple, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The core's headers hook: the listeners change the headers; what they leave is sent."""
        headers: Headers = {}
        for name, value in pairs:
            old = headers.get(name)
            headers[name] = value if old is None else [*([old] if isinstance(old, str) else old), value]
        request = Request.from_tuple(req)
        listeners = self.listeners["headers"]
        if initial:
            listeners = self.listeners["initial_headers"] + listeners
        for fn in listeners:
            try:
                result = fn(headers, request)
            except Exception:
                logger.exception("headers listener %s failed", getattr(fn, "__qualname__", fn))
                continue
            if inspect.isawaitable(result):
                _discard(result)
                logger.error("headers listener %s is a coroutine function: headers listeners must be plain", fn)
        return [(str(k), str(v)) for k, vs in headers.items() for v in ([vs] if isinstance(vs, str) else vs)]


async def _await_logged(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("listener failed")


def _discard(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


class SioCore(HandshakeCore, Protocol):
    """What the Socket.IO layer (dispatcher, sockets, adapters) calls on the core: ``EngineCore(socketio=True)``,
    or a test's fake. Sockets are named by the keys of the core's "connect" events, sessions by their clients'."""

    def add_namespace(self, nsp: str) -> None: ...
    def remove_namespace(self, nsp: str) -> bool: ...
    def set_dynamic_namespaces(self, on: bool) -> None: ...
    def accept(self, socket: int) -> bool: ...
    def refuse(self, socket: int, data_json: str) -> None: ...
    def disconnect(self, socket: int, close: bool = False) -> None: ...
    def close(self, key: int) -> None: ...
    def respond(self, conn: int, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...
    def emit_to(
        self,
        socket: int,
        data_json: str | bytes,
        attachments: list[bytes] = ...,
        id: int | None = None,
        ack_reply: bool = False,
    ) -> bool: ...
    def broadcast_event(
        self,
        nsp: str,
        data_json: str | bytes,
        rooms: list[str] = ...,
        except_rooms: list[str] = ...,
        attachments: list[bytes] = ...,
        id: int | None = None,
        volatile: bool = False,
    ) -> list[int]: ...
    def targets(self, nsp: str, rooms: list[str] = ..., except_rooms: list[str] = ...) -> list[int]: ...
    def join(self, socket: int, rooms: list[str]) -> None: ...
    def leave(self, socket: int, room: str) -> None: ...
    def rooms_of(self, socket: int) -> list[str]: ...
    def socket_count(self, nsp: str) -> int: ...


async def decide_handshake(
    core: HandshakeCore,
    conn: int,
    request: Request,
    allow_request: AllowRequest | None,
    generate_id: GenerateId | None,
) -> None:
    """Run the allow-request hook and the id generator for a handshake the core holds, then answer it."""
    try:
        if allow_request is not None:
            verdict = await _maybe_await(allow_request(request))
            if verdict is False or isinstance(verdict, str):
                core.refuse_handshake(conn, 4, verdict if isinstance(verdict, str) else None)
                return
        sid = None
        if generate_id is not None:
            sid = str(await _maybe_await(generate_id(request)))
    except RequestRefused as e:
        core.refuse_handshake(conn, 4, str(e) or None)
        return
    except Exception:
        logger.exception("allow_request / generate_id failed; refusing the handshake")
        core.refuse_handshake(conn, 4, None)
        return
    core.accept_handshake(conn, sid)


#: Hands a batch of events to the application; a coroutine handler that suspends stops the batch (see eager.py).
Dispatch = Callable[[list["CoreEvent"]], Suspended | None]


class Runtime:
    """A server as its driver (``run_core``, or the ASGI app) sees it: the native core, the functions its events
    go to, and the task group its handlers run in while it is served.

    ``dispatch`` may start coroutine handlers eagerly: its caller then finishes the one that suspended and leaves
    the rest of the batch to a new task. ``dispatch_in_tasks`` (``dispatch`` when not given) never returns a
    suspended handler: it is for drivers that dispatch from tasks they cannot keep (the ASGI app's requests)."""

    def __init__(
        self, core: EngineCore, dispatch: Dispatch, dispatch_in_tasks: Callable[[list[CoreEvent]], object] | None = None
    ) -> None:
        self.core = core
        self.dispatch = dispatch
        self.dispatch_in_tasks = dispatch_in_tasks if dispatch_in_tasks is not None else dispatch
        self.task_group: anyio.abc.TaskGroup | None = None
        self.address: tuple[str, int] | None = None
        #: Tasks that run while the server is served, beside its handlers (started in its task group).
        self.background: list[Callable[[], Coroutine[Any, Any, Any]]] = []

    def host(self, tg: anyio.abc.TaskGroup) -> None:
        """Handlers run in ``tg`` from now on; the background tasks start in it."""
        self.task_group = tg
        for fn in self.background:
            tg.start_soon(fn)

    @contextmanager
    def hosting(self, tg: anyio.abc.TaskGroup) -> Iterator[None]:
        """Handlers run in ``tg`` for the duration."""
        self.host(tg)
        try:
            yield
        finally:
            self.task_group = None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Start ``fn(*args)`` in the task group; False when the server is not being served."""
        tg = self.task_group
        if tg is None:
            return False
        tg.start_soon(fn, *args)
        return True


def _listen(host: str, port: int) -> socket.socket:
    # Bound here rather than in Rust for the backlog: mio listens with 128, and a burst of connects beyond that
    # waits a whole SYN retry (1 s). Node listens with 511, uvicorn with 2048.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        # socket.create_server's strerror adds "(while attempting to bind on address ...)": the plain reason.
        reason = os.strerror(e.errno) if e.errno else str(e)
        error = OSError(f"cannot listen on {host}:{port}: {reason}")
        error.errno = e.errno
        raise error from None


async def run_core(
    runtime: Runtime,
    host: str,
    port: int,
    task_status: anyio.abc.TaskStatus[tuple[str, int]],
    sock: socket.socket | None = None,
) -> None:
    """Serve until cancelled: the driver loop (``drive``) in a task of the server's task group."""
    core = runtime.core
    address = core.listen_fd((sock if sock is not None else _listen(host, port)).detach())
    runtime.address = address
    fd = core.fileno()
    try:
        async with anyio.create_task_group() as tg:
            runtime.host(tg)
            logger.info("listening on %s:%d", *address)
            task_status.started(address)
            tg.start_soon(drive, tg, fd, core.next_timeout, core.turn, runtime.dispatch, [])
    finally:
        runtime.task_group = None
        core.shutdown()
        # The "server shutting down" closes reach async handlers too; a handler gets 5 s to finish.
        with anyio.move_on_after(5, shield=True):
            async with anyio.create_task_group() as tg:
                runtime.task_group = tg
                tg.start_soon(_dispatch_batch, runtime.dispatch, tg, core.turn())
        runtime.task_group = None


async def drive(
    tg: anyio.abc.TaskGroup,
    fd: int,
    next_timeout: Callable[[], float | None],
    collect: Callable[[], list[CoreEvent]],
    dispatch: Dispatch,
    events: list[CoreEvent],
) -> None:
    """A driver loop: dispatch, then wait for the core's descriptor or its next timer, and ``collect`` the next
    events. When a handler suspends during a dispatch, this task stays with it and a new task takes the loop
    over (see eager.py)."""
    while True:
        if events:
            suspended = dispatch(events)
            if suspended is not None:
                tg.start_soon(drive, tg, fd, next_timeout, collect, dispatch, suspended.rest)
                await suspended.finish()
                return
        timeout = next_timeout()
        if timeout is None or timeout > 0:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await anyio.wait_readable(fd)
        else:
            await anyio.lowlevel.checkpoint()
        events = collect()


async def _dispatch_batch(dispatch: Dispatch, tg: anyio.abc.TaskGroup, events: list[CoreEvent]) -> None:
    """Dispatch one batch; this task finishes the first handler that suspends, a new one the rest."""
    suspended = dispatch(events)
    if suspended is not None:
        tg.start_soon(_dispatch_batch, dispatch, tg, suspended.rest)
        await suspended.finish()
