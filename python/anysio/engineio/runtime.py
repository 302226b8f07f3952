"""The low-level Engine.IO server: sessions, text and binary messages, no Socket.IO on top.

Sockets, parsing, heartbeats and writes all happen in Rust (``_native.EngineCore``). This module waits on the
core's one file descriptor with anyio, so it runs unchanged on asyncio, uvloop and trio, and turns the core's
event tuples into calls of the application's handlers.
"""

from __future__ import annotations

import inspect
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, TypeVar, Unpack
from urllib.parse import parse_qs

import anyio
import anyio.abc
import anyio.lowlevel

from .. import _native

logger = logging.getLogger("anysio")

F = TypeVar("F", bound=Callable[..., Any])
Data = str | bytes


@dataclass(frozen=True)
class Request:
    """The HTTP request that opened a session (the seed's ``Request()``, Node's ``socket.request``)."""

    method: str
    path: str
    query_string: str
    headers: tuple[tuple[str, str], ...]
    remote: tuple[str, int] | None
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        parsed = {k: v[0] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}
        object.__setattr__(self, "query", parsed)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @classmethod
    def from_tuple(cls, t: _native.RequestTuple) -> Request:
        method, path, query, headers, remote = t
        return cls(method, path, query, tuple(headers), remote)


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


class EngineOptions(TypedDict, total=False):
    """The Engine.IO options every server takes: Node's engine.io options, in Python spelling, with Node's
    defaults: ping_interval 25 s, ping_timeout 20 s, upgrade_timeout 10 s, max_payload 1e6 bytes, both
    transports, upgrades allowed, no CORS, no cookie (True for Node's ``io``), no connection limit."""

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
    #: Prepended to generated sids (workers use it to name a session's owner).
    sid_prefix: str


def native_core(
    *,
    path: str,
    defer_handshakes: bool,
    socketio: bool = False,
    connect_timeout: float = 45.0,
    serve_other_paths: bool = False,
    **options: Unpack[EngineOptions],
) -> _native.EngineCore:
    """The Rust core for the options every server shares."""
    origins = options.get("cors_allowed_origins")
    if isinstance(origins, str):
        origins = [origins]
    cookie = options.get("cookie")
    c = Cookie() if cookie is True else cookie if isinstance(cookie, Cookie) else None
    return _native.EngineCore(
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
        defer_handshakes=defer_handshakes,
        sid_prefix=options.get("sid_prefix", ""),
        socketio=socketio,
        connect_timeout=connect_timeout,
        serve_other_paths=serve_other_paths,
    )


class Session:
    """One Engine.IO session, as the application sees it."""

    __slots__ = ("_server", "key", "request", "sid", "transport")

    def __init__(self, server: EngineServer, key: int, sid: str, transport: str, request: Request) -> None:
        self._server = server
        self.key = key
        self.sid = sid
        self.transport = transport
        self.request = request

    def send(self, data: Data) -> bool:
        return self._server._core.send(self.key, data)

    def close(self) -> None:
        self._server._core.close(self.key)

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport}>"


class EngineServer:
    """An Engine.IO v4 server. Options and defaults are those of Node's engine.io (see ``EngineOptions``)."""

    def __init__(
        self,
        *,
        path: str = "/engine.io",
        allow_request: AllowRequest | None = None,
        generate_id: GenerateId | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        self.allow_request = allow_request
        self.generate_id = generate_id
        defer = allow_request is not None or generate_id is not None
        self._core = native_core(path=path, defer_handshakes=defer, **options)
        self.sessions: dict[str, Session] = {}
        self._by_key: dict[int, Session] = {}
        self._on_open: Callable[[Session], Any] | None = None
        self._on_message: Callable[[Session, Data], Any] | None = None
        self._on_close: Callable[[Session, str], Any] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.address: tuple[str, int] | None = None

    # Handlers: plain functions run inline (in order); coroutine functions run as tasks.
    def on_open(self, fn: F) -> F:
        self._on_open = fn
        return fn

    def on_message(self, fn: F) -> F:
        self._on_message = fn
        return fn

    def on_close(self, fn: F) -> F:
        self._on_close = fn
        return fn

    @property
    def count(self) -> int:
        """Open sessions (the seed's ``Count()``)."""
        return self._core.session_count

    def send(self, sid: str, data: Data) -> bool:
        session = self.sessions.get(sid)
        return session is not None and session.send(data)

    def broadcast(self, sids: Iterable[str], data: Data) -> None:
        """One message to many sessions: Rust builds the frame once and writes it to each."""
        keys = [s.key for sid in sids if (s := self.sessions.get(sid)) is not None]
        self._core.broadcast(keys, data)

    def close(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is not None:
            session.close()

    def _call(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            result = fn(*args)
        except Exception:
            logger.exception("handler %s failed", getattr(fn, "__name__", fn))
            return
        if inspect.isawaitable(result) and self._tg is not None:
            self._tg.start_soon(self._await_logged, result)

    @staticmethod
    async def _await_logged(aw: Awaitable[Any]) -> None:
        try:
            await aw
        except Exception:
            logger.exception("handler failed")

    async def _decide_handshake(self, conn: int, request: Request) -> None:
        await decide_handshake(self._core, conn, request, self.allow_request, self.generate_id)

    def _dispatch(self, events: list[_native.EventTuple]) -> None:
        for ev in events:
            match ev:
                case ("message", key, data):
                    session = self._by_key.get(key)
                    if session is not None:
                        self._call(self._on_message, session, data)
                case ("open", key, sid, transport, req):
                    session = Session(self, key, sid, transport, Request.from_tuple(req))
                    self.sessions[sid] = session
                    self._by_key[key] = session
                    self._call(self._on_open, session)
                case ("upgrade", key):
                    session = self._by_key.get(key)
                    if session is not None:
                        session.transport = "websocket"
                case ("close", key, reason):
                    session = self._by_key.pop(key, None)
                    if session is not None:
                        self.sessions.pop(session.sid, None)
                        self._call(self._on_close, session, reason)
                case ("handshake", conn, req):
                    if self._tg is not None:
                        self._tg.start_soon(self._decide_handshake, conn, Request.from_tuple(req))
                case ("error", message, remote):
                    logger.info("bad input from %s: %s", remote, message)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled; then close every session ("server shutting down")."""
        await run_core(self._core, host, port, self._dispatch, self, task_status)


async def decide_handshake(
    core: _native.EngineCore,
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


class _Serving(Protocol):
    """What ``run_core`` tells its owner: the task group handlers run in, and the bound address."""

    _tg: anyio.abc.TaskGroup | None
    address: tuple[str, int] | None


async def run_core(
    core: _native.EngineCore,
    host: str,
    port: int,
    dispatch: Callable[[list[_native.EventTuple]], None],
    owner: _Serving,
    task_status: anyio.abc.TaskStatus[tuple[str, int]],
    sock: socket.socket | None = None,
) -> None:
    """The driver loop shared by every server: wait for the core's descriptor or its next timer, turn, dispatch."""
    if sock is None:
        # Bound here rather than in Rust for the backlog: mio listens with 128, and a burst of connects beyond
        # that waits a whole SYN retry (1 s). Node listens with 511, uvicorn with 2048.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=2048)
        except OSError as e:
            error = OSError(f"cannot listen on {host}:{port}: {e.strerror or e}")
            error.errno = e.errno
            raise error from None
    address = core.listen_fd(sock.detach())
    fd = core.fileno()
    try:
        async with anyio.create_task_group() as tg:
            owner._tg = tg
            owner.address = address
            logger.info("listening on %s:%d", *address)
            task_status.started(address)
            while True:
                timeout = core.next_timeout()
                if timeout is None or timeout > 0:
                    with anyio.move_on_after(math.inf if timeout is None else timeout):
                        await anyio.wait_readable(fd)
                else:
                    await anyio.lowlevel.checkpoint()
                dispatch(core.turn())
    finally:
        owner._tg = None
        core.shutdown()
        # The "server shutting down" closes reach async handlers too; a handler gets 5 s to finish.
        with anyio.move_on_after(5, shield=True):
            async with anyio.create_task_group() as tg:
                owner._tg = tg
                dispatch(core.turn())
        owner._tg = None
