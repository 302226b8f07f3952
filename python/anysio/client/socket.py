"""``anysio.Client``: one namespace's socket, as socket.io-client's Socket: typed handlers whose return value is the
ack, emits (with acks), the reserved events, and the recovery state."""

from __future__ import annotations

import inspect
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
from pydantic import ValidationError

from ..codec.coerce import CoercionError, Plan, plan
from ..codec.wire import BadAttachments, Undecodable, decode_args, encode_args
from ..exceptions import AckTimeout, ConnectionError, Disconnected, checked_options, reply_value
from .http import Target
from .manager import Manager, OneShot, one_shot_factory

if TYPE_CHECKING:
    from .._native import ClientEvent

logger = logging.getLogger("anysio.client")

F = TypeVar("F", bound=Callable[..., Any])
Auth = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None

#: Names socket.io-client refuses to emit: they are the socket's own events.
RESERVED = frozenset({"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"})
_TRANSPORTS = ("polling", "websocket")
V2_SERVER = (
    "It seems you are trying to reach a Socket.IO server in v2.x with a v3.x client, but they are not compatible"
    " (more information here: https://socket.io/docs/v3/migrating-from-2-x-to-3-0/)"
)


def ack_values(result: Any) -> list[Any]:
    """A handler's return value as ack arguments, as the server's: None is none, a tuple is several."""
    if result is None:
        return []
    return list(result) if isinstance(result, tuple) else [result]


class _Pending:
    """An ack waited for."""

    __slots__ = ("done", "error", "event", "timeout", "values")

    def __init__(self, event: str, timeout: float | None, done: OneShot) -> None:
        self.event = event
        self.timeout = timeout
        self.done = done
        self.values: list[Any] = []
        self.error: BaseException | None = None

    def expire(self) -> None:
        if not self.done.is_set():
            self.error = AckTimeout(f"no ack for {self.event!r} within {self.timeout:g} s")
            self.done.set()


class _ConnectWait:
    """A CONNECT waiting for its answer (manager.Expiring)."""

    __slots__ = ("_client", "done")

    def __init__(self, client: Client) -> None:
        self._client = client
        self.done = client._settled

    def expire(self) -> None:
        client = self._client
        if not self.done.is_set():
            timeout = client._manager.timeout
            client._on_connect_error(json.dumps({"message": f"timeout: no answer to CONNECT within {timeout:g} s"}))


def _target(
    url: str, path: str, headers: Mapping[str, str] | None, ssl_context: ssl.SSLContext | None = None
) -> tuple[Target, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    secure = parts.scheme in ("https", "wss")
    port = parts.port or (443 if secure else 80)
    path = "/" + path.strip("/") + "/"
    target = Target(secure, parts.hostname, port, path, tuple((headers or {}).items()), ssl_context)
    return target, parts.path.rstrip("/")


class Client:
    """A Socket.IO client of one namespace, on asyncio or trio; ``of`` gives the other namespaces of the same
    connection. Options as socket.io-client's (seconds where it takes milliseconds); for an https or wss URL,
    ``ssl_context`` says whom to trust (None: the system's certificate authorities, verified as Node does by
    default)."""

    @checked_options()
    def __init__(
        self,
        url: str,
        *,
        namespace: str = "/",
        path: str = "/socket.io",
        transports: Sequence[str] = _TRANSPORTS,
        auth: Auth = None,
        headers: Mapping[str, str] | None = None,
        reconnection: bool = True,
        reconnection_attempts: int | None = None,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        timeout: float = 20.0,
        parser: Literal["default", "msgpack"] = "default",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if parser not in ("default", "msgpack"):
            raise ValueError(f"parser must be 'default' or 'msgpack', not {parser!r}")
        transports = list(transports)
        if not transports or any(t not in _TRANSPORTS for t in transports):
            raise ValueError(f"transports must be 'polling' and/or 'websocket', not {transports!r}")
        target, url_namespace = _target(url, path, headers, ssl_context)
        manager = Manager(
            target,
            transports=transports,
            reconnection=reconnection,
            reconnection_attempts=reconnection_attempts,
            reconnection_delay=reconnection_delay,
            reconnection_delay_max=reconnection_delay_max,
            randomization_factor=randomization_factor,
            timeout=timeout,
            parser=parser,
        )
        self._attach(manager, url_namespace or namespace, auth)

    def _attach(self, manager: Manager, namespace: str, auth: Auth) -> None:
        if not namespace.startswith("/"):
            raise ValueError(f"a namespace starts with '/': {namespace!r}")
        self.namespace = namespace
        self._manager = manager
        self._auth = auth
        self._handlers: dict[str, tuple[Callable[..., Any], Plan | None]] = {}
        self._acks: dict[int, _Pending] = {}
        self._one_shot: Callable[[], OneShot] | None = None
        self._next_id = 0
        self._buffer: list[tuple[str, int | None, list[bytes]]] = []
        self._settled = anyio.Event()
        self._error: ConnectionError | None = None
        self._pid: str | None = None
        self._offset: str | None = None
        #: The socket's id, from the server's CONNECT; None while not connected.
        self.id: str | None = None
        #: Whether the socket is connected to its namespace.
        self.connected = False
        #: Whether the last connection recovered the previous one's state (connection state recovery).
        self.recovered = False
        #: Whether the socket should be connected (between ``connect`` and ``disconnect``).
        self.wanted = False
        manager.sockets[namespace] = self

    def of(self, namespace: str, *, auth: Auth = None) -> Client:
        """The socket of another namespace over the same connection (socket.io-client's ``manager.socket``)."""
        existing = self._manager.sockets.get(namespace)
        if isinstance(existing, Client):
            return existing
        other = Client.__new__(Client)
        other._attach(self._manager, namespace, auth)
        return other

    @property
    def transport(self) -> str | None:
        """The transport while a session is open: "polling" or "websocket"."""
        engine = self._manager.engine
        return engine.transport if engine is not None else None

    def on(self, event: str) -> Callable[[F], F]:
        """Register a handler: ``connect`` (no arguments), ``disconnect`` (Node's reason), ``connect_error`` (an
        ``anysio.ConnectionError``), or a server's event, whose arguments are coerced from its type hints as on
        the server and whose return value is the ack (a tuple for several values)."""

        def register(fn: F) -> F:
            self._handlers[event] = (fn, None if event in RESERVED else plan(fn, []))
            return fn

        return register

    async def connect(self, *, retry: bool = True) -> None:
        """Connect to the namespace (and the server, unless another namespace did). Raises ConnectionError: the
        server refused (its message), or could not be reached and reconnection is off or gave up. With
        ``retry=False`` (python-socketio's default) a first connection that fails is not retried; reconnection
        still applies once connected."""
        if self.connected:
            return
        self.wanted = True
        if self._settled.is_set():
            self._settled = anyio.Event()
        self._error = None
        self._manager.start(self, retry)
        try:
            await self._settled.wait()
        except BaseException:
            if not self._settled.is_set():  # cancelled while connecting: stop trying, as disconnect() would
                self.wanted = False
                with anyio.CancelScope(shield=True):
                    await self._manager.release()
            raise
        if self._error is not None:
            raise self._error

    async def disconnect(self) -> None:
        """Leave the namespace; the last namespace to leave closes the connection."""
        self.wanted = False
        engine = self._manager.engine
        if self.connected and engine is not None:
            engine.core.disconnect(self.namespace)
            engine.flush()
        self._closed("io client disconnect")
        self._settle(ConnectionError("disconnected before the connection was made"))
        await self._manager.release()

    async def wait(self) -> None:
        """Until the connection ends for good (every namespace left, or reconnection gave up)."""
        await self._manager.wait()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.disconnect()

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event; binary values (bytes) anywhere in the arguments go as attachments. Buffered while
        disconnected, as socket.io-client does, and sent on connection."""
        self._send(event, args, None)
        engine = self._manager.engine
        if engine is not None:
            engine.flush()

    @property
    def volatile(self) -> Volatile:
        """``client.volatile.emit(...)``, socket.io-client's volatile flag: the event is dropped, not buffered,
        when it cannot leave now (not connected, or a long-polling POST in flight)."""
        return Volatile(self)

    def _emit_now(self, event: str, args: tuple[Any, ...]) -> bool:
        engine = self._manager.engine
        if not self.connected or engine is None or not engine.writable:
            return False
        self._send(event, args, None)
        engine.flush()
        return True

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and return the server's ack: its one value, a tuple of several, None for none. Raises
        AckTimeout after ``timeout`` seconds, Disconnected when the connection ends first."""
        ack_id = self._next_id
        self._next_id += 1
        if self._one_shot is None:
            self._one_shot = one_shot_factory()
        pending = self._acks[ack_id] = _Pending(event, timeout, self._one_shot())
        try:
            self._send(event, args, ack_id)
            engine = self._manager.engine
            if engine is not None:
                engine.flush()
            if timeout is None or self._manager.expire_at(time.monotonic() + timeout, pending):
                await pending.done.wait()
            else:
                with anyio.move_on_after(timeout):
                    await pending.done.wait()
                pending.expire()
        finally:
            self._acks.pop(ack_id, None)
        if pending.error is not None:
            raise pending.error
        return reply_value(pending.values)

    def _send(self, event: str, args: tuple[Any, ...], ack_id: int | None) -> None:
        if event in RESERVED:
            raise ValueError(f"{event!r} is a reserved event name")
        data, attachments = encode_args([event, *args])
        engine = self._manager.engine
        if self.connected and engine is not None:
            engine.core.event(self.namespace, data, ack_id, attachments or None)
        else:
            self._buffer.append((data, ack_id, attachments))

    # What the Manager calls (manager.ManagedSocket).

    def connect_packet(self) -> str | None:
        """The CONNECT's data; the server has ``timeout`` seconds to answer it (not in socket.io-client, whose
        connect() would wait as long as the server keeps the session open: a connect never hangs here)."""
        if not self._settled.is_set():
            self._manager.expire_at(time.monotonic() + self._manager.timeout, _ConnectWait(self))
        auth = self._auth() if callable(self._auth) else self._auth
        if self._pid is not None:
            auth = {"pid": self._pid, "offset": self._offset, **(auth or {})}
        return None if auth is None else json.dumps(auth, separators=(",", ":"))

    def on_packet(self, event: ClientEvent) -> None:
        match event:
            case ("ack", _, ack_id, args, attachments):
                self._on_ack(ack_id, args, attachments)
            case ("event", _, name, args, argc, ack_id, attachments):
                self._on_event(name, args, argc, ack_id, attachments)
            case ("connect", _, data):
                self._on_connect(data)
            case ("connect_error", _, data):
                self._on_connect_error(data)
            case ("disconnect", _):
                self.wanted = False
                self._closed("io server disconnect")
                self._manager.spawn(self._manager.release)

    def on_close(self, reason: str) -> None:
        self._closed(reason)

    def on_open_failed(self, error: ConnectionError, final: bool) -> None:
        self._call_reserved("connect_error", error)
        if final:
            self.wanted = False
            self._settle(error)

    def on_stopped(self) -> None:
        self._settle(ConnectionError("the connection closed before the namespace was connected"))

    # The server's packets.

    def _on_connect(self, data: str | None) -> None:
        info = json.loads(data) if data else {}
        sid, pid = info.get("sid"), info.get("pid")
        if not isinstance(sid, str):
            # socket.io-client's words: a CONNECT without a sid comes from a Socket.IO v2 server (or none at all).
            self._on_connect_error(json.dumps({"message": V2_SERVER}))
            return
        self.recovered = pid is not None and pid == self._pid
        self._pid = pid if isinstance(pid, str) else None
        self.id = sid
        self.connected = True
        engine = self._manager.engine
        buffer, self._buffer = self._buffer, []
        if engine is not None:
            for args, ack_id, attachments in buffer:
                engine.core.event(self.namespace, args, ack_id, attachments or None)
            self._manager.flush()
        self._settle(None)
        self._call_reserved("connect")

    def _on_connect_error(self, data: str | None) -> None:
        info = json.loads(data) if data else None
        if isinstance(info, dict):
            error = ConnectionError(str(info.get("message", "")), info.get("data"))
        else:
            error = ConnectionError(str(info))
        self.wanted = False
        self._call_reserved("connect_error", error)
        self._settle(error)
        self._manager.spawn(self._manager.release)

    def _on_ack(self, ack_id: int, args: str, attachments: list[bytes] | None) -> None:
        pending = self._acks.pop(ack_id, None)
        if pending is None:
            return
        try:
            pending.values = decode_args(args, attachments)
        except (Undecodable, BadAttachments) as e:
            pending.error = e
        pending.done.set()

    def _on_event(self, name: str, args: str, argc: int, ack_id: int | None, attachments: list[bytes] | None) -> None:
        if self._pid is not None and argc:
            self._track_offset(args, attachments)
        handler = self._handlers.get(name)
        if handler is None:
            return
        fn, handler_plan = handler
        assert handler_plan is not None
        try:
            result = _invoke(fn, handler_plan, args, argc, attachments)
        except CoercionError as e:
            logger.warning("event %r from the server does not fit its handler: %s", name, e)
            if ack_id is not None:
                self._ack(ack_id, [e.body()])
            return
        except Exception:
            logger.exception("the handler for %r failed", name)
            return
        if inspect.isawaitable(result):
            self._manager.spawn(self._finish, name, result, ack_id)
        elif ack_id is not None:
            self._ack(ack_id, ack_values(result))

    def _track_offset(self, args: str, attachments: list[bytes] | None) -> None:
        """With recovery offered, the server's last argument is the event's offset (as socket.io-client)."""
        try:
            last = decode_args(args, attachments)[-1]
        except (Undecodable, BadAttachments, IndexError):
            return
        if isinstance(last, str):
            self._offset = last

    async def _finish(self, name: str, awaitable: Awaitable[Any], ack_id: int | None) -> None:
        try:
            result = await awaitable
        except Exception:
            logger.exception("the handler for %r failed", name)
            return
        if ack_id is not None:
            self._ack(ack_id, ack_values(result))

    def _ack(self, ack_id: int, values: list[Any]) -> None:
        engine = self._manager.engine
        if engine is None:
            return
        try:
            data, attachments = encode_args(values)
        except (TypeError, ValueError, RecursionError) as e:
            logger.error("a handler returned what cannot be sent: %s", e)
            return
        engine.core.ack(self.namespace, ack_id, data, attachments or None)
        self._manager.flush()

    def _closed(self, reason: str) -> None:
        if not self.connected:
            return
        self.connected = False
        self.id = None
        for pending in self._acks.values():
            pending.error = Disconnected(f"disconnected ({reason}) before the ack")
            pending.done.set()
        self._acks.clear()
        self._call_reserved("disconnect", reason)

    def _settle(self, error: ConnectionError | None) -> None:
        if not self._settled.is_set():
            self._error = error
            self._settled.set()

    def _call_reserved(self, event: str, *args: Any) -> None:
        handler = self._handlers.get(event)
        if handler is None:
            return
        try:
            result = handler[0](*args)
        except Exception:
            logger.exception("the %r handler failed", event)
            return
        if inspect.isawaitable(result):
            self._manager.spawn(self._finish, event, result, None)


class Volatile:
    """A client's volatile emits (``Client.volatile``)."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    async def emit(self, event: str, *args: Any) -> bool:
        """Send the event if it can leave now; False when it was dropped."""
        return self._client._emit_now(event, args)


def _invoke(fn: Callable[..., Any], p: Plan, args: str, argc: int, attachments: list[bytes] | None) -> Any:
    """Coerce the arguments from the handler's hints, as the server does, and call it."""
    if attachments is None and argc == p.json_argc:
        try:
            pos, kw = p.bind_json(args, [], {})
        except ValidationError:
            pass  # text pydantic's parser refuses and JSON.parse reads: the general path
        else:
            return fn(*pos, **kw)
    try:
        values = decode_args(args, attachments)
    except (Undecodable, BadAttachments) as e:
        raise CoercionError(str(e), []) from None
    pos, kw = p.bind(values, {})
    return fn(*pos, **kw)
