"""``anysio.instrument``: the server side of the Admin UI, as lib/index.ts of ``@socket.io/admin-ui`` 0.5 is.

The UI connects to an admin namespace ("/admin") and reads events: ``config`` (the features it may use),
``server_stats`` every 2 s from every server of the cluster, and in development mode ``all_sockets`` then each
socket's connection, disconnection, rooms and events. It sends ``emit``, ``join``, ``leave`` and ``_disconnect``
unless the server is read-only. Every admin event is a broadcast to the admin namespace, so with workers or a
Redis adapter the UI connected to one server hears all of them; ``all_sockets`` and the commands go through the
adapters (``fetch_sockets``, ``sockets_join``, ...), as Node's do.

The server knows nothing of this module: instrument watches it as an ``Observer`` (``Server.observe``), runs its
loop with ``Server.on_serve`` and serves the UI's files with ``Server.add_static_files``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket as socket_module
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import anyio

from ..exceptions import AckTimeout, ClusterError, ConnectionRefused
from ..server.namespace import Namespace
from ..server.observer import Observer
from ..server.server import Server
from ..server.socket import Ack, Socket
from .serialize import ADMIN_KEY, EventBuffer, now, serialize
from .ui import ui_files

logger = logging.getLogger("anysio")

Mode = Literal["development", "production"]
STATS_INTERVAL = 2.0
#: Admin events waiting to be broadcast; past this the oldest go (a UI cannot show a flood anyway).
MAX_QUEUED = 10_000
_BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
#: The server-side event that tells the other servers of a session a login opened (so that the UI, reconnecting
#: to another worker, is let in with it).
_SESSION_EVENT = "anysio:admin-session"
_MAX_SESSIONS = 1000
_SHARE_TIMEOUT = 2.0


def instrument(
    sio: Server,
    *,
    auth: Mapping[str, str] | None,
    mode: Mode = "development",
    namespace_name: str = "/admin",
    read_only: bool = False,
    server_id: str | None = None,
    ui: str | Path | None = None,
    ui_path: str = "/admin-ui",
) -> Namespace:
    """Let the official Admin UI (``@socket.io/admin-ui`` 0.5) watch and drive ``sio``; returns the admin namespace.

    ``auth``: ``{"type": "basic", "username": ..., "password": BCRYPT_HASH}``, or None for no login (say so
    explicitly, as Node's ``auth: false``). ``mode="production"`` sends only the servers' statistics, not each
    socket and event. ``read_only`` refuses the UI's commands. ``server_id`` names this server in the UI (by
    default the host name, with ``#pid`` in a worker). ``ui``: a ``node_modules`` directory holding
    ``@socket.io/admin-ui`` (and ``@mdi/font`` for its icons): the UI is then served at ``ui_path`` + "/"."""
    admin = Instrument(sio, auth, mode, sio.of(namespace_name), read_only, server_id)
    sio.observe(admin)
    sio.on_serve(admin.run)
    if ui is not None:
        sio.add_static_files(ui_files(ui, ui_path))
    return admin.nsp


def _check_auth(auth: Mapping[str, str] | None) -> tuple[str, bytes] | None:
    if auth is None:
        logger.warning("Admin UI: authentication is disabled, please use with caution")
        return None
    if auth.get("type") != "basic":
        raise ValueError("invalid `auth` option: None or {'type': 'basic', 'username': ..., 'password': ...}")
    password = auth.get("password", "")
    if not isinstance(password, str) or not _BCRYPT_HASH.match(password):
        raise ValueError("the `password` field must be a valid bcrypt hash")
    return str(auth.get("username", "")), password.encode()


def _password_matches(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # the "admin" extra: needed only with a login

    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # over bcrypt's 72 bytes, or a hash it cannot read: not a match
        return False


class Instrument(Observer):
    """One server's side of the Admin UI: the admin namespace's handlers, and what the server tells of its
    sockets turned into admin events."""

    def __init__(
        self,
        sio: Server,
        auth: Mapping[str, str] | None,
        mode: Mode,
        nsp: Namespace,
        read_only: bool,
        server_id: str | None,
    ) -> None:
        self.sio = sio
        self.nsp = nsp
        self.login = _check_auth(auth)
        self.development = mode == "development"
        self.server_id = server_id
        self.started = time.monotonic()
        self.features = [] if read_only else ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]
        self.features.append("AGGREGATED_EVENTS")
        if self.development:
            self.features.append("ALL_EVENTS")
        self.sessions: dict[str, None] = {}
        self.events = EventBuffer()
        self.queue: deque[tuple[str, tuple[Any, ...]]] = deque(maxlen=MAX_QUEUED)
        self.wake: anyio.Event | None = None
        # This process's sockets whose transport may still change (polling, until they upgrade), and the Engine.IO
        # sessions on polling among them: what server_stats counts and socket_updated tells.
        self.polling: dict[Socket, None] = {}
        if self.login is not None:
            nsp.use(self.authenticate)
            nsp.on_server_side(_SESSION_EVENT)(self.keep_session)
        nsp.on("connect", self.connected)
        if not read_only:
            nsp.on("emit", self.emit)
            nsp.on("join", self.join)
            nsp.on("leave", self.leave)
            nsp.on("_disconnect", self.disconnect)

    # ---- the admin namespace ------------------------------------------------------------------------------

    async def authenticate(self, socket: Socket) -> None:
        """The namespace's middleware: a session id a login opened, or the username and the password."""
        assert self.login is not None
        auth = socket.handshake.auth if isinstance(socket.handshake.auth, dict) else {}
        session = auth.get("sessionId")
        if isinstance(session, str) and session in self.sessions:
            return
        username, hashed = self.login
        password = auth.get("password")
        # bcrypt takes tens of milliseconds on purpose: in a thread, so that the server's turn goes on meanwhile.
        if (
            auth.get("username") == username
            and isinstance(password, str)
            and await anyio.to_thread.run_sync(_password_matches, password.encode(), hashed)
        ):
            session = secrets.token_hex(8)
            self.keep_session(session)
            await self.share_session(session)
            await socket.emit("session", session)
            return
        logger.info("Admin UI: invalid credentials from %s", socket.handshake.address)
        raise ConnectionRefused("invalid credentials")

    async def share_session(self, session: str) -> None:
        """Tell the other servers of the cluster of a new session before the UI hears of it, so that it may
        reconnect to any of them with it (Node keeps sessions per process unless given a Redis store)."""
        try:
            await self.nsp.server_side_emit_with_ack(_SESSION_EVENT, session, timeout=_SHARE_TIMEOUT)
        except (AckTimeout, ClusterError) as e:
            logger.info("Admin UI: not every server heard of the new session: %s", e)

    def keep_session(self, session: object) -> None:
        if isinstance(session, str):
            self.sessions[session] = None
            while len(self.sessions) > _MAX_SESSIONS:
                del self.sessions[next(iter(self.sessions))]

    async def connected(self, socket: Socket) -> None:
        await socket.emit("config", {"supportedFeatures": self.features})
        if self.development:
            await socket.emit("all_sockets", await self.all_sockets())

    async def all_sockets(self) -> list[dict[str, Any]]:
        """Every socket of every namespace, on every server (through the adapters)."""
        found: list[dict[str, Any]] = []
        for nsp in list(self.sio.namespaces.values()):
            found += [serialize(s, nsp.name) for s in await nsp.fetch_sockets()]
        return found

    def _target(self, name: str, room: str | None) -> Any:
        """The sockets a command names: those of namespace ``name`` (an existing one: a command never makes a
        namespace), in ``room`` when given; None when there is no such namespace."""
        nsp = self.sio.namespaces.get(name)
        if nsp is None:
            logger.info("Admin UI: command for unknown namespace %.100r ignored", name)
            return None
        return nsp.to(room) if room else nsp.to([])

    async def emit(self, socket: Socket, nsp: str, room: str | None, event: str, *args: Any) -> None:
        target = self._target(nsp, room)
        if target is not None:
            await target.emit(event, *args)

    async def join(self, socket: Socket, nsp: str, room: str, target_room: str | None = None) -> None:
        target = self._target(nsp, target_room)
        if target is not None:
            await target.sockets_join(room)

    async def leave(self, socket: Socket, nsp: str, room: str, target_room: str | None = None) -> None:
        target = self._target(nsp, target_room)
        if target is not None:
            await target.sockets_leave(room)

    async def disconnect(self, socket: Socket, nsp: str, close: bool = False, target_room: str | None = None) -> None:
        target = self._target(nsp, target_room)
        if target is not None:
            await target.disconnect_sockets(bool(close))

    # ---- what the server tells (Observer) -----------------------------------------------------------------

    def tell(self, event: str, *args: Any) -> None:
        """Broadcast an admin event from the loop (observers cannot wait)."""
        self.queue.append((event, args))
        if self.wake is not None:
            self.wake.set()

    def socket_connected(self, socket: Socket) -> None:
        transport = self.sio.runtime.core.transport_of(socket.client) or "polling"
        if transport == "polling":
            self.polling[socket] = None
        if not self.development:
            return
        socket.data[ADMIN_KEY] = {"clientId": socket.eio_sid[:12], "transport": transport}
        self.tell("socket_connected", serialize(socket, socket.namespace), now())
        if socket.nsp is not self.nsp:
            socket.on_any(self._received(socket))
            socket.on_any_outgoing(self._sent(socket))

    def _received(self, socket: Socket) -> Any:
        def received(event: str, *args: Any) -> None:
            values = args[:-1] if args and isinstance(args[-1], Ack) else args
            self.tell("event_received", socket.namespace, socket.id, [event, *values], now())

        return received

    def _sent(self, socket: Socket) -> Any:
        def sent(event: str, *args: Any) -> None:
            self.tell("event_sent", socket.namespace, socket.id, [event, *args], now())

        return sent

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        self.polling.pop(socket, None)
        if self.development:
            self.tell("socket_disconnected", socket.namespace, socket.id, reason, now())

    def room_joined(self, socket: Socket, room: str) -> None:
        if self.development:
            self.tell("room_joined", socket.namespace, room, socket.id, now())

    def room_left(self, socket: Socket, room: str) -> None:
        if self.development:
            self.tell("room_left", socket.namespace, room, socket.id, now())

    def client_opened(self) -> None:
        self.events.push("rawConnection")

    def client_closed(self, reason: str) -> None:
        self.events.push("rawDisconnection", reason)

    # ---- the loop: admin events out, server_stats every 2 s -----------------------------------------------

    async def run(self) -> None:
        """While the server is served: the admin events the observers queued, and this server's statistics."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._send_events)
            failing = False
            while True:
                self._check_transports()
                try:
                    await self.nsp.emit("server_stats", self.stats())
                    failing = False
                except Exception:
                    # Once per outage (a cluster link down, say), not every 2 s.
                    if not failing:
                        logger.exception("Admin UI: server_stats not sent")
                    failing = True
                await anyio.sleep(STATS_INTERVAL)

    async def _send_events(self) -> None:
        while True:
            self.wake = anyio.Event()
            while self.queue:
                event, args = self.queue.popleft()
                try:
                    await self.nsp.emit(event, *args)
                except Exception:
                    logger.exception("Admin UI: %s not sent", event)
            await self.wake.wait()

    def _check_transports(self) -> None:
        """Node tells the upgrade when it happens; the core does not report it, so it is read here."""
        core = self.sio.runtime.core
        for socket in list(self.polling):
            transport = core.transport_of(socket.client)
            if transport is not None and transport != "polling":
                del self.polling[socket]
                admin = socket.data.get(ADMIN_KEY)
                if isinstance(admin, dict):
                    admin["transport"] = transport
                if self.development:
                    self.tell("socket_updated", {"id": socket.id, "nsp": socket.namespace, "transport": transport})

    def stats(self) -> dict[str, Any]:
        hostname = socket_module.gethostname()
        server_id = self.server_id or (hostname if self.sio.worker is None else f"{hostname}#{os.getpid()}")
        return {
            "serverId": server_id,
            "hostname": hostname,
            "pid": os.getpid(),
            "uptime": time.monotonic() - self.started,
            "clientsCount": self.sio.engine_count,
            "pollingClientsCount": len({s.client for s in self.polling}),
            "aggregatedEvents": self.events.take(),
            "namespaces": [{"name": n.name, "socketsCount": n.count} for n in self.sio.namespaces.values()],
        }
