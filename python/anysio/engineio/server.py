"""The low-level Engine.IO server: sessions, text and binary messages, no Socket.IO on top.

Sockets, parsing, heartbeats and writes all happen in Rust (``_native.EngineCore``), driven by ``run_core``; this
module turns the core's event tuples into calls of the application's handlers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import anyio
import anyio.abc

from .._native import EngineCore
from ..exceptions import checked_options
from .http import Request

if TYPE_CHECKING:
    from .._native import CoreEvent

from .runtime import (
    AllowRequest,
    EngineEvents,
    EngineOptions,
    GenerateId,
    Runtime,
    decide_handshake,
    native_core,
    run_core,
    run_until_signalled,
)

logger = logging.getLogger("anysio")

F = TypeVar("F", bound=Callable[..., Any])
Data = str | bytes


class Session:
    """One Engine.IO session, as the application sees it."""

    __slots__ = ("_core", "key", "request", "sid", "transport")

    def __init__(self, core: EngineCore, key: int, sid: str, transport: str, request: Request) -> None:
        self._core = core
        self.key = key
        self.sid = sid
        self.transport = transport
        self.request = request

    def send(self, data: Data) -> bool:
        return self._core.send(self.key, data)

    def close(self) -> None:
        self._core.close(self.key)

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport}>"


class EngineServer:
    """An Engine.IO v4 server (v3 clients too with ``allow_eio3=True``). Options and defaults are those of Node's
    engine.io (see ``EngineOptions``)."""

    @checked_options(EngineOptions.__annotations__)
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
        #: What a driver (``serve``, or ``anysio.ASGIApp``) needs: the core and where its events go.
        self.runtime = Runtime(self._core, self._dispatch)
        #: Node's engine events: ``@server.engine.on("connection_error")``, ``"initial_headers"``, ``"headers"``.
        self.engine = EngineEvents(self._core, self.runtime)
        self.sessions: dict[str, Session] = {}
        self._by_key: dict[int, Session] = {}
        self._on_open: Callable[[Session], Any] | None = None
        self._on_message: Callable[[Session, Data], Any] | None = None
        self._on_close: Callable[[Session, str], Any] | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The address served on, once ``serve`` listens."""
        return self.runtime.address

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
        if inspect.isawaitable(result):
            self.runtime.spawn(self._await_logged, result)

    @staticmethod
    async def _await_logged(aw: Awaitable[Any]) -> None:
        try:
            await aw
        except Exception:
            logger.exception("handler failed")

    async def _decide_handshake(self, conn: int, request: Request) -> None:
        await decide_handshake(self._core, conn, request, self.allow_request, self.generate_id)

    def _dispatch(self, events: list[CoreEvent]) -> None:
        for ev in events:
            match ev:
                case ("message", key, data):
                    session = self._by_key.get(key)
                    if session is not None:
                        self._call(self._on_message, session, data)
                case ("open", key, sid, transport, req):
                    session = Session(self._core, key, sid, transport, Request.from_tuple(req))
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
                    self.runtime.spawn(self._decide_handshake, conn, Request.from_tuple(req))
                case ("connection_error", code, detail, req):
                    self.engine.connection_error(code, detail, req)
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
        await run_core(self.runtime, host, port, task_status)

    def run(self, host: str = "127.0.0.1", port: int = 5000, *, backend: str = "asyncio") -> None:
        """Serve until Ctrl-C or SIGTERM, blocking; see ``Server.run``."""
        run_until_signalled(self.serve, host, port, backend)
