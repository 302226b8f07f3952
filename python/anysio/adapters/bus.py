"""The local bus between worker processes, and the adapter that broadcasts over it.

Each worker listens on two unix sockets in a private directory: ``h<i>.sock`` (datagrams) receives connections
handed over by other workers (their file descriptors, SCM_RIGHTS), and ``b<i>.sock`` (a stream) receives bus
messages: broadcasts, room changes, socket queries, server-side emits and ack traffic. A message is a 4-byte
length and a JSON object; binary attachments travel base64-encoded.
"""

from __future__ import annotations

import array
import base64
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..codec.wire import decode_args, encode_args
from ..exceptions import AckTimeout
from .base import Adapter, BroadcastOptions

if TYPE_CHECKING:
    from ..server.server import Namespace, Server
    from ..server.socket import Socket

logger = logging.getLogger("anysio")
Message = dict[str, Any]


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode() for b in items]


def _unb64(items: list[str]) -> list[bytes]:
    return [base64.b64decode(s) for s in items]


def _parse(body: bytes) -> Message | None:
    """A bus message: a JSON object with a string kind ``t`` (and an integer ``req`` when it is a reply), or None."""
    try:
        msg = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        return None
    if msg["t"] == "reply" and not isinstance(msg.get("req"), int):
        return None
    return msg


class Bus:
    """One worker's end of the bus."""

    def __init__(self, directory: str, index: int, workers: int) -> None:
        self.dir = Path(directory)
        self.index = index
        self.workers = workers
        self.peers = [i for i in range(workers) if i != index]
        self._out: dict[int, anyio.abc.ByteStream] = {}
        self._out_lock: dict[int, anyio.Lock] = {}
        self._handlers: dict[str, Callable[[Message], Awaitable[None] | None]] = {}
        # SOCK_SEQPACKET keeps one message per descriptor and, unlike datagrams, has no 10-message queue limit.
        self._handoff = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = self.dir / f"h{index}.sock"
        path.unlink(missing_ok=True)
        self._handoff.bind(str(path))
        self._handoff.listen(64)
        self._handoff.setblocking(False)
        self._handoff_out: dict[int, socket.socket] = {}
        self._next_request = 0
        self._replies: dict[int, Callable[[Message], None]] = {}

    def on(self, kind: str, handler: Callable[[Message], Awaitable[None] | None]) -> None:
        self._handlers[kind] = handler

    # ---- connections handed over ---------------------------------------------------------------------------

    def hand_off(self, fd: int, owner: int) -> None:
        """Give a client connection to the worker that owns its session; our copy is closed either way."""
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        try:
            for attempt in range(2):
                out = self._handoff_out.get(owner)
                try:
                    if out is None:
                        out = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                        out.connect(str(self.dir / f"h{owner}.sock"))
                        out.setblocking(False)
                        self._handoff_out[owner] = out
                    out.sendmsg([b"c"], rights)
                    return
                except OSError as e:
                    # The owner may have restarted: reconnect once. Past that the client's request fails and
                    # the client retries, as after any network error.
                    self._handoff_out.pop(owner, None)
                    if out is not None:
                        out.close()
                    if attempt:
                        logger.warning("handing a connection to worker %d failed: %s", owner, e)
        finally:
            os.close(fd)

    async def receive_handoffs(self, adopt: Callable[[int], None]) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                await anyio.wait_readable(self._handoff)
                try:
                    conn, _ = self._handoff.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                tg.start_soon(self._receive_from, conn, adopt)

    @staticmethod
    async def _receive_from(conn: socket.socket, adopt: Callable[[int], None]) -> None:
        with conn:
            while True:
                await anyio.wait_readable(conn)
                try:
                    data, fds, _, _ = socket.recv_fds(conn, 16, 16)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                for fd in fds:
                    try:
                        adopt(fd)
                    except OSError as e:
                        logger.warning("adopting a handed-over connection failed: %s", e)
                if not data and not fds:
                    return

    # ---- messages -------------------------------------------------------------------------------------------

    async def serve(self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        path = self.dir / f"b{self.index}.sock"
        path.unlink(missing_ok=True)
        listener = await anyio.create_unix_listener(path)
        async with listener, anyio.create_task_group() as tg:
            task_status.started()
            while True:
                stream = await listener.accept()
                tg.start_soon(self._read, stream)

    async def _read(self, stream: anyio.abc.ByteStream) -> None:
        buf = b""
        async with stream:
            while True:
                try:
                    buf += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                while len(buf) >= 4:
                    (size,) = struct.unpack(">I", buf[:4])
                    if len(buf) < 4 + size:
                        break
                    body, buf = buf[4 : 4 + size], buf[4 + size :]
                    msg = _parse(body)
                    if msg is None:
                        logger.warning("malformed bus message dropped: %.80r", body)
                        continue
                    await self._handle(msg)

    async def _handle(self, msg: Message) -> None:
        if msg["t"] == "reply":
            resolve = self._replies.get(msg["req"])
            if resolve is not None:
                resolve(msg)
            return
        handler = self._handlers.get(msg["t"])
        if handler is None:
            return
        try:
            result = handler(msg)
            if result is not None:
                await result
        except Exception:
            logger.exception("bus message %r failed", msg.get("t"))

    async def send(self, peer: int, msg: Message) -> bool:
        data = json.dumps(msg, separators=(",", ":")).encode()
        lock = self._out_lock.setdefault(peer, anyio.Lock())
        async with lock:
            for _ in range(2):
                stream = self._out.get(peer)
                try:
                    if stream is None:
                        stream = self._out[peer] = await anyio.connect_unix(self.dir / f"b{peer}.sock")
                    await stream.send(struct.pack(">I", len(data)) + data)
                    return True
                except OSError:
                    self._out.pop(peer, None)
            return False

    async def publish(self, msg: Message) -> list[int]:
        """Send to every other worker; returns those that took it."""
        return [p for p in self.peers if await self.send(p, msg)]

    async def request(self, msg: Message, timeout: float) -> list[Message]:
        """Ask every other worker and gather their replies (those that answer within ``timeout``)."""
        req = self._next_request = self._next_request + 1
        replies: list[Message] = []
        done = anyio.Event()
        expected: int | None = None  # unknown until every send returned; replies may come in meanwhile

        def resolve(reply: Message) -> None:
            replies.append(reply)
            if expected is not None and len(replies) >= expected:
                done.set()

        self._replies[req] = resolve
        try:
            expected = len(await self.publish({**msg, "req": req, "from": self.index}))
            if len(replies) < expected:
                with anyio.move_on_after(timeout):
                    await done.wait()
        finally:
            del self._replies[req]
        return replies

    async def reply(self, request: Message, body: Message) -> None:
        await self.send(request["from"], {**body, "t": "reply", "req": request["req"]})


class BusAdapter(Adapter):
    """The in-process adapter, extended over the bus to every worker on this machine."""

    bus: Bus
    timeout = 5.0

    def __init__(self, nsp: Namespace) -> None:
        super().__init__(nsp)

    def _opts_msg(self, opts: BroadcastOptions) -> Message:
        return {"nsp": self.nsp.name, "rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        keys = await super().broadcast(args, opts, ack_id)
        if not opts.local:
            data, attachments = encode_args(args)
            msg = {"t": "broadcast", **self._opts_msg(opts), "data": data, "att": _b64(attachments)}
            await self.bus.publish({**msg, "volatile": opts.volatile})
        return keys

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        """Local replies as the in-process adapter gathers them, plus every other worker's."""
        if opts.local:
            return await super().broadcast_with_ack(args, opts, timeout)
        data, attachments = encode_args(args)
        msg = {"t": "broadcast_ack", **self._opts_msg(opts), "data": data, "att": _b64(attachments)}
        msg["timeout"] = timeout if timeout is not None else self.timeout
        replies: list[Any] = []
        missing = 0

        async def local() -> None:
            nonlocal missing
            try:
                replies.extend(await super(BusAdapter, self).broadcast_with_ack(args, opts, timeout))
            except AckTimeout as e:
                replies.extend(e.replies)
                missing += 1

        async def remote() -> None:
            nonlocal missing
            wait = (timeout if timeout is not None else self.timeout) + 1.0
            for reply in await self.bus.request(msg, wait):
                replies.extend(reply["replies"])
                missing += int(reply["missing"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(local)
            tg.start_soon(remote)
        if missing:
            raise AckTimeout(f"some sockets did not acknowledge {args[0]!r} in {timeout} s", replies)
        return replies

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket]:
        local: list[Any] = await super().fetch_sockets(opts)
        if opts.local:
            return local
        for reply in await self.bus.request({"t": "fetch", **self._opts_msg(opts)}, self.timeout):
            local.extend(RemoteSocket(self, s) for s in reply["sockets"])
        return local

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().add_sockets(opts, rooms)
        if not opts.local:
            await self.bus.publish({"t": "join", **self._opts_msg(opts), "to": rooms})

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().del_sockets(opts, rooms)
        if not opts.local:
            await self.bus.publish({"t": "leave", **self._opts_msg(opts), "to": rooms})

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        await super().disconnect_sockets(opts, close)
        if not opts.local:
            await self.bus.publish({"t": "disconnect", **self._opts_msg(opts), "close": close})

    async def server_side_emit(self, args: list[Any]) -> None:
        data, attachments = encode_args(args)
        await self.bus.publish({"t": "server_side", "nsp": self.nsp.name, "data": data, "att": _b64(attachments)})


class RemoteSocket:
    """A socket of another worker, as ``fetch_sockets`` returns it (Node's ``RemoteSocket``)."""

    def __init__(self, adapter: BusAdapter, desc: Message) -> None:
        self._adapter = adapter
        self.id: str = desc["id"]
        self.rooms: set[str] = set(desc["rooms"])
        self.data: dict[str, Any] = desc["data"]
        self.handshake: dict[str, Any] = desc["handshake"]

    def _opts(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=frozenset([self.id]))

    async def emit(self, event: str, *args: Any) -> None:
        await self._adapter.broadcast([event, *args], self._opts())

    async def join(self, *rooms: str) -> None:
        await self._adapter.add_sockets(self._opts(), list(rooms))

    async def leave(self, *rooms: str) -> None:
        await self._adapter.del_sockets(self._opts(), list(rooms))

    async def disconnect(self, close: bool = False) -> None:
        await self._adapter.disconnect_sockets(self._opts(), close)

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id}>"


def attach(server: Server, bus: Bus) -> None:
    """Serve the bus's messages with ``server``'s namespaces (only their local part: ``opts.local``)."""

    def nsp(msg: Message) -> Namespace:
        return server.of(msg["nsp"])

    def opts(msg: Message) -> BroadcastOptions:
        return BroadcastOptions(frozenset(msg["rooms"]), frozenset(msg["except"]), local=True)

    def on_broadcast(msg: Message) -> None:
        attachments = _unb64(msg["att"])
        server._core.broadcast_event(
            msg["nsp"], msg["data"], msg["rooms"], msg["except"], attachments, None, msg["volatile"]
        )

    async def on_broadcast_ack(msg: Message) -> None:
        args = decode_args(msg["data"], _unb64(msg["att"]) or None)
        n = nsp(msg)
        try:
            replies, missing = await n.adapter.broadcast_with_ack(args, opts(msg), msg["timeout"]), 0
        except AckTimeout as e:
            replies, missing = e.replies, 1
        await bus.reply(msg, {"replies": replies, "missing": missing})

    async def on_fetch(msg: Message) -> None:
        sockets = await nsp(msg).adapter.fetch_sockets(opts(msg))
        described = [
            {"id": s.id, "rooms": sorted(s.rooms), "data": _jsonable(s.data), "handshake": _handshake(s)}
            for s in sockets
        ]
        await bus.reply(msg, {"sockets": described})

    async def on_join(msg: Message) -> None:
        await nsp(msg).adapter.add_sockets(opts(msg), msg["to"])

    async def on_leave(msg: Message) -> None:
        await nsp(msg).adapter.del_sockets(opts(msg), msg["to"])

    async def on_disconnect(msg: Message) -> None:
        await nsp(msg).adapter.disconnect_sockets(opts(msg), msg["close"])

    async def on_server_side(msg: Message) -> None:
        await nsp(msg)._server_side_event(decode_args(msg["data"], _unb64(msg["att"]) or None))

    for kind, handler in {
        "broadcast": on_broadcast,
        "broadcast_ack": on_broadcast_ack,
        "fetch": on_fetch,
        "join": on_join,
        "leave": on_leave,
        "disconnect": on_disconnect,
        "server_side": on_server_side,
    }.items():
        bus.on(kind, handler)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return {}
    return value


def _handshake(s: Socket) -> dict[str, Any]:
    h = s.handshake
    return {"headers": h.headers, "query": h.query, "address": h.address, "issued": h.issued, "auth": _jsonable(h.auth)}
