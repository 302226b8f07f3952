"""Connection state recovery (Node's ``connectionStateRecovery``): the options, and the Python half of the state.

Rust keeps each disconnected socket's id, rooms and the packets it misses (``rust/socketio/recovery.rs``), and
appends the offset to every event; what only Python holds, the socket's ``data``, is kept here by the socket's
private session id (``pid``) until the core restores the socket or says its deadline passed ("expired")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from ..adapters.base import Adapter
from ..exceptions import unknown_option
from .socket import Socket

if TYPE_CHECKING:
    from .._native import SessionTuple

#: Node's RECOVERABLE_DISCONNECT_REASONS that this core gives: the transport went, not the client or the server's
#: application (the core keeps the sockets that go for these reasons, and only those).
RECOVERABLE = frozenset({"transport error", "transport close", "forced close", "ping timeout", "server shutting down"})
#: Node's spelling of the options (milliseconds), accepted as Node users write them.
_NODE_NAMES = {"maxDisconnectionDuration": "max_disconnection_duration", "skipMiddlewares": "skip_middlewares"}


@dataclass(frozen=True)
class ConnectionStateRecovery:
    """Node's ``connectionStateRecovery`` options, with its defaults.

    ``max_disconnection_duration``: seconds a disconnected socket's state is kept (Node: 2 minutes).
    ``skip_middlewares``: a recovered socket does not go through the middlewares again (Node: true)."""

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True

    @classmethod
    def of(cls, value: ConnectionStateRecovery | Mapping[str, Any] | bool | None) -> ConnectionStateRecovery | None:
        """The options from what a user passes: None or False (off), True (Node's defaults), this class, or a
        dict: ``{"max_disconnection_duration": 60, "skip_middlewares": False}`` (seconds), or Node's spelling
        ``{"maxDisconnectionDuration": 60000, "skipMiddlewares": False}`` (milliseconds, as in Node)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, ConnectionStateRecovery):
            return value
        options: dict[str, Any] = {}
        valid = {f.name for f in fields(cls)} | set(_NODE_NAMES)
        for name, v in value.items():
            if name not in valid:
                raise unknown_option(name, valid)
            if name == "maxDisconnectionDuration":
                v = v / 1000
            options[_NODE_NAMES.get(name, name)] = v
        return cls(**options)


class RecoveryCore(Protocol):
    """What recovery calls on the core (``_native.EngineCore`` with ``recovery=``)."""

    def pid_of(self, socket: int) -> str | None: ...
    def restore(self, socket: int, pid: str, offset: str) -> str | None: ...
    def take_session(self, nsp: str, pid: str, offset: str) -> SessionTuple | None: ...
    def adopt_session(self, socket: int, session: SessionTuple) -> str | None: ...


class Recovery:
    """The ``data`` of each disconnected socket the core keeps, by pid, and the restoring of a socket."""

    def __init__(self, options: ConnectionStateRecovery, core: RecoveryCore) -> None:
        self.options = options
        self.core = core
        self.kept: dict[str, dict[str, Any]] = {}

    def opened(self, socket: Socket) -> None:
        socket.pid = self.core.pid_of(socket.key)

    def disconnected(self, socket: Socket, reason: str) -> None:
        if socket.pid is not None and reason in RECOVERABLE:
            self.kept[socket.pid] = socket.data

    def expired(self, pid: str) -> None:
        self.kept.pop(pid, None)

    def take(self, nsp: str, pid: str, offset: str) -> tuple[SessionTuple, dict[str, Any]] | None:
        """Give up a disconnected socket's state to another worker that recovers it."""
        session = self.core.take_session(nsp, pid, offset)
        return None if session is None else (session, self.kept.pop(pid, {}))

    async def restore(self, socket: Socket, auth: Any, adapter: Adapter) -> bool:
        """Recover a connecting socket whose auth names a disconnected one (``pid`` and ``offset``, as the official
        client sends them): kept here, or by another worker (the adapter asks). True when it was recovered: the
        socket then has its old id, rooms and data, and the core has sent the packets it missed."""
        pid, offset = (auth.get("pid"), auth.get("offset")) if isinstance(auth, dict) else (None, None)
        if not isinstance(pid, str) or not isinstance(offset, str):
            return False
        sid = self.core.restore(socket.key, pid, offset)
        if sid is not None:
            data = self.kept.pop(pid, {})
        else:
            found = await adapter.restore_session(pid, offset)
            if found is None:
                return False
            session, data = found
            sid = self.core.adopt_session(socket.key, session)
            if sid is None:
                return False
        socket.id, socket.pid, socket.data, socket.recovered = sid, pid, data, True
        return True
