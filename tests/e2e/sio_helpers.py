"""Shared pieces of the Socket.IO end-to-end tests: a server on an ephemeral port, the official Node client
(tests/node/sio_client.mjs) as a subprocess, and a notifier to await what handlers record. Nothing here sleeps:
every wait is for an event, bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import json
import socket as socket_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from hypercorn import asyncio as hypercorn_asyncio
from hypercorn import trio as hypercorn_trio
from hypercorn.config import Config as HypercornConfig

from anysio import Ack, ASGIApp, ConnectionRefused, Server, Socket
from tests.e2e.eio_helpers import WsConn, ws_session
from tests.notifier import Notifier

ROOT = Path(__file__).resolve().parents[2]
SIO_CLIENT = ROOT / "tests" / "node" / "sio_client.mjs"
#: socket.io-client 2.x (Engine.IO v3), for servers with allow_eio3: the same JSON lines, but no auth (a query).
SIO_CLIENT_V2 = ROOT / "tests" / "node" / "sio_client_v2.mjs"
WAIT = 10.0
Address = tuple[str, int]


def to_wire(value: Any) -> Any:
    """Python value -> sio_client.mjs command JSON: bytes become {"binary": "<hex>"}, anywhere."""
    if isinstance(value, bytes | bytearray):
        return {"binary": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def from_wire(value: Any) -> Any:
    """sio_client.mjs output JSON -> Python value: {"binary": "<hex>"} becomes bytes."""
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"binary"} and isinstance(value["binary"], str):
            return bytes.fromhex(value["binary"])
        return {k: from_wire(v) for k, v in value.items()}
    return value


class Record(Notifier):
    """What the server's handlers saw: append (name, value) with ``add``; await with ``wait``."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, Any]] = []

    def add(self, name: str, value: Any = None) -> None:
        self.items.append((name, value))
        self.notify()

    def values(self, name: str) -> list[Any]:
        return [v for n, v in self.items if n == name]

    async def wait(self, name: str, count: int = 1, timeout: float = WAIT) -> list[Any]:
        """The values recorded under ``name`` once there are at least ``count`` of them."""
        await self.wait_for(lambda: len(self.values(name)) >= count, timeout)
        return self.values(name)


@asynccontextmanager
async def serving(sio: Server, port: int = 0) -> AsyncIterator[Address]:
    """Run ``sio`` on 127.0.0.1 for the body of the ``async with``; yields its address. On exit the server shuts
    down as on cancellation (clients are told "server shutting down")."""
    async with anyio.create_task_group() as tg:
        address: Address = await tg.start(sio.serve, "127.0.0.1", port)
        try:
            yield address
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def asgi_serving(sio: Server, backend: str) -> AsyncIterator[Address]:
    """``anysio.ASGIApp(sio)`` behind hypercorn, in this process, on ``backend``, for the body of the ``async
    with``; yields its address. Hypercorn may not listen yet: clients retry, as socket.io-client does after any
    connection error."""
    with socket_module.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 1.0
    stop = anyio.Event()
    serve = hypercorn_trio.serve if backend == "trio" else hypercorn_asyncio.serve
    async with anyio.create_task_group() as tg:
        app: Any = ASGIApp(sio)  # hypercorn's own ASGI types, which ASGIApp satisfies structurally
        tg.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield ("127.0.0.1", port)
        finally:
            stop.set()


class NodeSio(Notifier):
    """One socket.io-client socket in a Node process, driven by JSON-line commands (see sio_client.mjs)."""

    def __init__(self, process: anyio.abc.Process) -> None:
        super().__init__()
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._seen = 0
        self._ids = 0

    async def _read(self) -> None:
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        try:
            while True:
                line = await lines.receive_until(b"\n", 1 << 24)
                self.events.append(json.loads(line))
                self.notify()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.events.append({"event": "exited"})
            self.notify()

    async def command(self, **cmd: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(cmd) + "\n").encode())

    async def expect(self, event: str, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """The next event named ``event`` (with these fields) after the last one expected; earlier events of
        other kinds are left for ``received`` and ``all``."""

        def find() -> dict[str, Any] | None:
            for i in range(self._seen, len(self.events)):
                ev = self.events[i]
                if ev["event"] == event and all(ev.get(k) == v for k, v in fields.items()):
                    self._seen = i + 1
                    return ev
            return None

        found: dict[str, Any] = await self.wait_for(find, timeout)
        return found

    def all(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def received(self, name: str) -> list[list[Any]]:
        """The arguments of every ``name`` event the server sent so far, bytes decoded."""
        return [from_wire(e["args"]) for e in self.all("recv") if e["name"] == name]

    async def receive(self, name: str, count: int = 1) -> list[list[Any]]:
        await self.wait_for(lambda: len(self.received(name)) >= count)
        return self.received(name)

    async def emit(self, name: str, *args: Any, ack: bool = False, timeout: int | None = None) -> int:
        """Emit from the client; returns the id its ack (or ack_timeout) event will carry."""
        self._ids += 1
        cmd: dict[str, Any] = {"cmd": "emit", "name": name, "args": to_wire(list(args)), "ack": ack, "id": self._ids}
        if timeout is not None:
            cmd["timeout"] = timeout
        await self.command(**cmd)
        return self._ids

    async def call(self, name: str, *args: Any) -> list[Any]:
        """Emit with an ack and return the ack's arguments (bytes decoded)."""
        ack_id = await self.emit(name, *args, ack=True)
        ev = await self.wait_for(lambda: next((e for e in self.all("ack") if e["id"] == ack_id), None))
        return list(from_wire(ev["args"]))

    async def transport(self) -> dict[str, Any]:
        """The client's transport now: its name and (on a WebSocket) the extensions agreed on."""
        await self.command(cmd="transport")
        return await self.expect("transport")

    async def ack_reply(self, name: str, *args: Any) -> None:
        """What the client answers to the server's later ack requests of event ``name``; returns once the client
        has taken it (else a request the server sends next could race the command)."""
        await self.command(cmd="ack_reply", name=name, args=to_wire(list(args)))
        await self.expect("ack_reply_set", name=name)


@asynccontextmanager
async def node_sio(
    address: Address,
    *,
    nsp: str = "/",
    transports: str | None = None,
    auth: Any = None,
    reconnection: bool | None = None,
    connected: bool = True,
    node_flags: tuple[str, ...] = (),
    with_credentials: bool = False,
    parser: str | None = None,
    v2: bool = False,
    query: dict[str, str] | None = None,
    force_base64: bool = False,
) -> AsyncIterator[NodeSio]:
    """A Node socket.io-client for the body of the ``async with``; with ``connected`` (the default) it has
    connected before the body runs. ``node_flags`` go to node itself; ``parser="msgpack"`` gives the client
    socket.io-msgpack-parser. ``v2``: socket.io-client 2.x instead (sio_client_v2.mjs), whose ``query`` is the
    handshake's and, outside "/", the CONNECT's, and which with ``force_base64`` sends and asks for binary as
    base64 text (2.x's ``forceBase64``: ``b64=1`` in the query)."""
    script = SIO_CLIENT_V2 if v2 else SIO_CLIENT
    argv = ["node", *node_flags, str(script), f"http://{address[0]}:{address[1]}", "--nsp", nsp]
    if query is not None:
        argv += ["--query", json.dumps(query)]
    if force_base64:
        argv += ["--forceBase64", "true"]
    if transports is not None:
        argv += ["--transports", transports]
    if auth is not None:
        argv += ["--auth", json.dumps(to_wire(auth))]
    if reconnection is not None:
        argv += ["--reconnection", "true" if reconnection else "false"]
    if with_credentials:
        argv += ["--withCredentials", "true"]
    if parser is not None:
        argv += ["--parser", parser]
    async with await anyio.open_process(argv) as process, anyio.create_task_group() as tg:
        client = NodeSio(process)
        tg.start_soon(client._read)
        try:
            if connected:
                await client.expect("connect")
            yield client
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await client.command(cmd="exit")
                await process.wait()
            if process.returncode is None:
                process.kill()
            tg.cancel_scope.cancel()


def demo_server(**options: Any) -> tuple[Server, Record]:
    """The server most end-to-end tests talk to, and the record of what its handlers saw.

    "/": "echo" acks its arguments; "ask" (name, *args) asks the client back with emit_with_ack and acks the
    answer; "add" (a: int, b: int) acks the sum; "size" (bytes) acks the length; "join" (room) acks the rooms;
    "shout" (room, msg) sends "shout" to the room but not the sender; "kick" disconnects the sender; "hold"
    takes an Ack and never calls it. "/admin" needs auth {"token": "secret"} (else ConnectionRefused with data
    {"hint": "token"}); its "whoami" acks [namespace, id].
    """
    sio = Server(**options)
    rec = Record()
    for nsp in (sio, sio.of("/admin")):

        @nsp.on("connect")
        def connect(socket: Socket, auth: Any) -> None:
            rec.add("connect", (socket.namespace, socket.id, auth))

        @nsp.on("disconnect")
        def disconnect(socket: Socket, reason: str) -> None:
            rec.add("disconnect", (socket.namespace, socket.id, reason))

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("ask")
    async def ask(socket: Socket, name: str, *args: Any) -> Any:
        return await socket.emit_with_ack(name, *args, timeout=WAIT)

    @sio.on("add")
    def add(a: int, b: int) -> int:
        return a + b

    @sio.on("size")
    def size(data: bytes) -> int:
        return len(data)

    @sio.on("join")
    def join(socket: Socket, room: str) -> list[str]:
        socket.join(room)
        rec.add("join", (socket.id, room))
        return sorted(socket.rooms)

    @sio.on("shout")
    async def shout(socket: Socket, room: str, msg: str) -> None:
        await socket.to(room).emit("shout", msg)

    @sio.on("kick")
    async def kick(socket: Socket) -> None:
        await socket.disconnect()

    @sio.on("hold")
    def hold(socket: Socket, ack: Ack) -> None:
        rec.add("hold", socket.id)

    admin = sio.of("/admin")

    @admin.use
    def only_admins(socket: Socket) -> None:
        if socket.handshake.auth.get("token") != "secret":
            raise ConnectionRefused("unauthorized", {"hint": "token"})

    @admin.on("whoami")
    def whoami(socket: Socket) -> list[str]:
        return [socket.namespace, socket.id]

    return sio, rec


async def silent_client(address: Address) -> tuple[WsConn, str]:
    """A Socket.IO client by hand that connects to "/" and then never acknowledges anything: the connection, and
    the socket's id."""
    ws, _ = await ws_session(address, path="/socket.io/")
    await ws.send("40")
    connect = await ws.receive()
    assert isinstance(connect, str) and connect.startswith('40{"sid":"'), connect
    return ws, connect[10:-2]


class RunningServer:
    """A server started in the caller's task group and stopped (shut down) on demand, e.g. to restart it."""

    def __init__(self, sio: Server) -> None:
        self.sio = sio
        self.address: Address = ("127.0.0.1", 0)
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()

    async def _run(self, port: int, *, task_status: anyio.abc.TaskStatus[Address]) -> None:
        try:
            with self._scope:
                await self.sio.serve("127.0.0.1", port, task_status=task_status)
        finally:
            self._stopped.set()

    @classmethod
    async def start(cls, tg: anyio.abc.TaskGroup, sio: Server, port: int = 0) -> RunningServer:
        server = cls(sio)
        server.address = await tg.start(server._run, port)
        return server

    async def stop(self) -> None:
        self._scope.cancel()
        with anyio.fail_after(WAIT):
            await self._stopped.wait()
