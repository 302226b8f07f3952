"""Servers on one Redis as one cluster, wire-compatible with Node's ``@socket.io/redis-adapter`` 8.x (its classic
pub/sub mode), and ``Emitter``, which publishes as ``@socket.io/redis-emitter`` does.

``docs/redis-adapter.md`` is the protocol; the messages are decoded and encoded by the Rust codec
(``rust/adapter/redis.rs``, through ``anysio._native.redis_*``): a broadcast heard from Redis goes from its bytes
to the local sockets in two calls into Rust, whatever the number of recipients. Redis itself is spoken with
hiredis's sans-IO reader and command packer over anyio streams, so it runs on asyncio and trio alike::

    cluster = anysio.RedisCluster("redis://127.0.0.1:6379")
    sio = anysio.Server(adapter=cluster.adapter)
    async with cluster:  # connects, subscribes, reconnects with backoff while Redis is away
        await sio.serve("0.0.0.0", 5000)

While Redis is unreachable local clients keep being served (one log line per outage); operations that need the
other servers' answers raise ``ClusterError`` (or time out after ``requests_timeout``) instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import string
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc

from .._native import (
    redis_broadcast,
    redis_cluster_broadcast,
    redis_decode,
    redis_encode,
    redis_encode_broadcast,
)
from ..codec.wire import decode_args, encode_args
from ..exceptions import AckTimeout, ClusterError
from .base import (
    Adapter,
    AdapterNamespace,
    BroadcastOptions,
    FetchedSocket,
    LocalSocket,
    MachineScope,
    RemoteSocket,
)

try:
    import hiredis
except ImportError as e:  # pragma: no cover - the "redis" extra
    raise ImportError("the Redis adapter needs hiredis: pip install 'anysio[redis]'") from e

logger = logging.getLogger("anysio")

DEFAULT_KEY = "socket.io"
EMITTER_UID = "emitter"
#: Fire-and-forget publishes queued at most (while Redis is slow); past that they are dropped, with a log line.
MAX_OUTBOX = 100_000
_ID_ALPHABET = string.ascii_letters + string.digits + "_-"

# RequestType of @socket.io/redis-adapter.
SOCKETS, ALL_ROOMS, REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT, REMOTE_FETCH, SERVER_SIDE_EMIT = range(7)
BROADCAST, BROADCAST_CLIENT_COUNT, BROADCAST_ACK = 7, 8, 9


def new_id() -> str:
    """Six characters as ``uid2(6)``: a server's uid or a request id."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


def encode(kind: str, message: Any) -> bytes:
    """Node's bytes for a message given as Node's object (values may hold bytes, dataclasses, models)."""
    text, attachments = encode_args([message])
    return redis_encode(kind, text[1:-1], attachments)


def decode(kind: str, data: bytes) -> Any:
    """A message as Node's object, bytes restored. Raises ValueError when malformed."""
    text, attachments = redis_decode(kind, data)
    return decode_args("[" + text + "]", attachments or None)[0]


@dataclass(frozen=True)
class RedisAddress:
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = None
    username: str | None = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """``redis://[[user]:password@]host[:port][/db]``."""
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"unsupported Redis URL {url!r} (redis://host:port expected)")
        db = parts.path.strip("/")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            db=int(db) if db else 0,
        )


class RedisReplyError(ClusterError):
    """Redis answered a command with an error."""


class RespConnection:
    """One connection to Redis: commands packed by hiredis, replies (and pushes) read by hiredis's Reader."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._reader = hiredis.Reader()

    @classmethod
    async def open(cls, address: RedisAddress, timeout: float) -> RespConnection:
        with anyio.fail_after(timeout):
            conn = cls(await anyio.connect_tcp(address.host, address.port))
            try:
                if address.password is not None:
                    auth = [address.username, address.password] if address.username else [address.password]
                    await conn.command("AUTH", *auth)
                if address.db:
                    await conn.command("SELECT", str(address.db))
            except BaseException:
                await conn.aclose()
                raise
        return conn

    async def send(self, *args: str | bytes) -> None:
        packed: Any = args  # hiredis's stub types the tuple as one element
        await self._stream.send(hiredis.pack_command(packed))

    async def read(self) -> Any:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            self._reader.feed(await self._stream.receive())

    async def pipeline(self, commands: list[tuple[str | bytes, ...]]) -> None:
        """Send commands in one write, then read (and drop) their replies."""
        packed: list[Any] = list(commands)  # hiredis's stub types a command as one element
        await self._stream.send(b"".join(hiredis.pack_command(c) for c in packed))
        for _ in commands:
            await self.read()

    async def command(self, *args: str | bytes) -> Any:
        await self.send(*args)
        reply = await self.read()
        if isinstance(reply, hiredis.ReplyError):
            raise RedisReplyError(f"Redis: {reply}")
        return reply

    async def aclose(self) -> None:
        await self._stream.aclose()


_CONFIRMATIONS = (b"subscribe", b"psubscribe", b"ssubscribe")
_UNSUBSCRIBE = {"SUBSCRIBE": "UNSUBSCRIBE", "PSUBSCRIBE": "PUNSUBSCRIBE", "SSUBSCRIBE": "SUNSUBSCRIBE"}
_CONNECTION_ERRORS = (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError)


@dataclass
class _Gather:
    """Replies to one request, until ``expected`` of them came."""

    expected: int
    replies: list[Any] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)

    def add(self, reply: Any) -> None:
        self.replies.append(reply)
        if len(self.replies) >= self.expected:
            self.done.set()


@dataclass
class _AckGather:
    """A broadcast with acks across servers: each server's client count, then that many replies."""

    servers: int | None = None  # other servers expected to answer (unknown until NUMSUB answered)
    counts: int = 0
    clients: int = 0
    replies: list[Any] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)

    def check(self) -> None:
        if self.servers is not None and self.counts >= self.servers and len(self.replies) >= self.clients:
            self.done.set()


class RedisCluster:
    """The Redis side of a server: one connection that publishes and one that listens, shared by the adapters
    of every namespace (``adapter`` is the factory to give ``anysio.Server``). Run it with ``async with``."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379",
        *,
        key: str = DEFAULT_KEY,
        sharded: bool = False,
        subscription_mode: str = "dynamic",
        requests_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_reconnect_delay: float = 2.0,
    ) -> None:
        if subscription_mode not in ("static", "dynamic"):
            raise ValueError('subscription_mode: "static" or "dynamic" ("dynamic-private" is not supported yet)')
        self.address = RedisAddress.parse(url)
        self.key = key
        #: Node's ``createShardedAdapter`` (Redis 7 sharded pub/sub) instead of ``createAdapter``.
        self.sharded = sharded
        self.subscription_mode = subscription_mode
        self.requests_timeout = requests_timeout
        self.connect_timeout = connect_timeout
        self.max_reconnect_delay = max_reconnect_delay
        self.adapters: dict[str, Adapter] = {}
        # What the listening connection subscribes to (channel or pattern -> SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE),
        # and who handles what arrives there: handler(channel, data).
        self._subscriptions: dict[bytes, str] = {}
        self._routes: dict[bytes, Callable[[bytes, bytes], Awaitable[None] | None]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._pub: RespConnection | None = None
        self._pub_lock = anyio.Lock()
        self._sub: RespConnection | None = None
        self._sub_lock = anyio.Lock()
        self._down_since_logged = False
        # Fire-and-forget publishes, in order: written in batches by one task (Node's client pipelines too), so
        # an emit does not wait for Redis's reply and a burst of them is one write.
        self._outbox: list[tuple[str | bytes, ...]] = []
        self._outbox_ready = anyio.Event()
        #: Set while the listening connection is subscribed to every adapter's channels.
        self.subscribed = anyio.Event()

    def adapter(self, nsp: AdapterNamespace) -> Adapter:
        """The adapter of one namespace (give this method to ``anysio.Server(adapter=...)``)."""
        adapter: Adapter = ShardedRedisAdapter(nsp, self) if self.sharded else RedisAdapter(nsp, self)
        self.adapters[nsp.name] = adapter
        return adapter

    def uplink(self, nsp: AdapterNamespace, machine: MachineScope) -> RedisAdapter:
        """The namespace's Redis adapter in the worker that holds the link of a machine with workers: what other
        machines ask is done on ``machine`` (every worker), and the other workers' cluster operations come to it
        over the bus (``adapters.bus.HolderLink``). The machine is one server of the cluster: one uid."""
        if self.sharded:
            raise ClusterError("the sharded Redis adapter does not run with workers yet: use the classic one")
        old = self.adapters.get(nsp.name)
        if isinstance(old, RedisAdapter):
            self.unlisten(old.own_response_channel)
        adapter = RedisAdapter(nsp, self, machine=machine)
        self.adapters[nsp.name] = adapter
        return adapter

    def listen(self, command: str, name: str, handler: Callable[[bytes, bytes], Awaitable[None] | None]) -> None:
        """Subscribe (``command``: SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE) to ``name``, now and after every
        reconnection; what arrives goes to ``handler(channel, data)``."""
        key = name.encode()
        self._routes[key] = handler
        if key not in self._subscriptions:
            self._subscriptions[key] = command
            if self._sub is not None and self._tg is not None:
                self._tg.start_soon(self._send_subscription, command, key)

    def unlisten(self, name: str) -> None:
        key = name.encode()
        self._routes.pop(key, None)
        command = self._subscriptions.pop(key, None)
        if command is not None and self._sub is not None and self._tg is not None:
            self._tg.start_soon(self._send_subscription, _UNSUBSCRIBE[command], key)

    async def _send_subscription(self, command: str, key: bytes) -> None:
        conn = self._sub
        if conn is None:
            return
        async with self._sub_lock:
            # A failure here is the listening loop's too: it subscribes again once reconnected.
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await conn.send(command, key)

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def __aenter__(self) -> RedisCluster:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._listen)
            self._tg.start_soon(self._flush)
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            for conn in (self._pub, self._sub):
                if conn is not None:
                    with anyio.CancelScope(shield=True):
                        await conn.aclose()
            self._pub = self._sub = None

    # ---- publishing -------------------------------------------------------------------------------------------

    async def _command(self, *args: str | bytes) -> Any:
        async with self._pub_lock:
            await self._send_outbox()  # what was published before goes first
            for attempt in range(2):
                try:
                    if self._pub is None:
                        self._pub = await RespConnection.open(self.address, self.connect_timeout)
                    with anyio.fail_after(self.requests_timeout):
                        return await self._pub.command(*args)
                except _CONNECTION_ERRORS as e:
                    if self._pub is not None:
                        with anyio.CancelScope(shield=True):
                            await self._pub.aclose()
                    self._pub = None
                    if attempt:
                        raise ClusterError(
                            f"Redis at {self.address.host}:{self.address.port} is unreachable: {e}"
                        ) from e
        raise AssertionError("unreachable")

    async def publish(self, channel: str, data: bytes) -> None:
        await self._command("SPUBLISH" if self.sharded else "PUBLISH", channel, data)

    def _enqueue(self, channel: str, data: bytes) -> bool:
        if self._tg is None:
            return False
        if len(self._outbox) >= MAX_OUTBOX:
            self._log_down("Redis does not keep up")
            return True
        self._outbox.append(("SPUBLISH" if self.sharded else "PUBLISH", channel, data))
        self._outbox_ready.set()
        return True

    def _log_down(self, why: str) -> None:
        if not self._down_since_logged:
            self._down_since_logged = True
            logger.warning("%s; cluster messages are dropped until it is back", why)

    async def _flush(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = anyio.Event()
            async with self._pub_lock:
                await self._send_outbox()

    async def _send_outbox(self) -> None:
        """Write the queued publishes (under ``_pub_lock``); dropped, with one log line, when Redis is away."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                if self._pub is None:
                    self._pub = await RespConnection.open(self.address, self.connect_timeout)
                with anyio.fail_after(self.requests_timeout):
                    await self._pub.pipeline(batch)
            except _CONNECTION_ERRORS as e:
                if self._pub is not None:
                    with anyio.CancelScope(shield=True):
                        await self._pub.aclose()
                self._pub = None
                self._log_down(f"Redis at {self.address.host}:{self.address.port} is unreachable: {e}")

    async def publish_quietly(self, channel: str, data: bytes) -> None:
        """Publish without waiting for Redis (queued in order while the cluster runs), or log once per outage when
        Redis is unreachable (fire-and-forget messages, as Node)."""
        if self._enqueue(channel, data):
            return
        try:
            await self.publish(channel, data)
        except ClusterError as e:
            if not self._down_since_logged:
                self._down_since_logged = True
                logger.warning("%s; cluster messages are dropped until it is back", e)

    def publish_soon(self, channel: str, data: bytes) -> None:
        """Publish from synchronous code (an ack's callback), in order."""
        self._enqueue(channel, data)

    async def numsub(self, channel: str) -> int:
        """PUBSUB NUMSUB (SHARDNUMSUB): the connections listening on ``channel`` (one per server)."""
        reply = await self._command("PUBSUB", "SHARDNUMSUB" if self.sharded else "NUMSUB", channel)
        return int(reply[1])

    # ---- listening --------------------------------------------------------------------------------------------

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        delay = 0.05
        started = False
        while True:
            try:
                self._sub = await RespConnection.open(self.address, self.connect_timeout)
                async with self._sub_lock:
                    subscriptions = list(self._subscriptions.items())
                    for key, command in subscriptions:
                        await self._sub.send(command, key)
                pending = len(subscriptions)
                while pending > 0:  # each channel and pattern is confirmed by a push
                    reply = await self._sub.read()
                    if isinstance(reply, list) and reply and reply[0] in _CONFIRMATIONS:
                        pending -= 1
                    else:
                        await self._on_push(reply)
                self.subscribed.set()
                if self._down_since_logged:
                    logger.warning("Redis at %s:%d is back", self.address.host, self.address.port)
                self._down_since_logged = False
                delay = 0.05
                if not started:
                    started = True
                    task_status.started()
                while True:
                    await self._on_push(await self._sub.read())
            except _CONNECTION_ERRORS as e:
                if not started:
                    raise ClusterError(f"Redis at {self.address.host}:{self.address.port} is unreachable: {e}") from e
                if not self._down_since_logged:
                    self._down_since_logged = True
                    logger.warning(
                        "Redis at %s:%d is unreachable (%s); serving local clients, reconnecting",
                        self.address.host,
                        self.address.port,
                        str(e) or type(e).__name__,
                    )
            finally:
                self.subscribed = anyio.Event() if self.subscribed.is_set() else self.subscribed
                if self._sub is not None:
                    with anyio.CancelScope(shield=True):
                        await self._sub.aclose()
                    self._sub = None
            await anyio.sleep(delay)  # backoff before reconnecting (not a wait for an event)
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _on_push(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"pmessage" and len(reply) == 4:
            route, channel, data = reply[1], reply[2], reply[3]
        elif kind in (b"message", b"smessage") and len(reply) == 3:
            route, channel, data = reply[1], reply[1], reply[2]
        else:
            return
        handler = self._routes.get(route)
        if handler is None:
            return
        try:
            result = handler(channel, data)
            if result is not None:
                await result
        except Exception as e:  # a malformed message is logged and dropped
            logger.warning("malformed message on %s dropped: %s", channel.decode(errors="replace"), e)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._tg is not None:
            self._tg.start_soon(fn, *args)


def _opts_of(message: dict[str, Any], *, volatile: bool = False) -> BroadcastOptions:
    opts = message.get("opts") or {}
    return BroadcastOptions(
        frozenset(str(r) for r in opts.get("rooms") or ()),
        frozenset(str(r) for r in opts.get("except") or ()),
        local=True,
        volatile=volatile,
    )


def _node_handshake(s: FetchedSocket) -> dict[str, Any]:
    """A socket's handshake in Node's shape (``socket.handshake`` without ``sessionStore``)."""
    h = s.handshake
    return {
        "headers": h.headers,
        "time": getattr(h, "time", ""),
        "address": h.address,
        "xdomain": getattr(h, "xdomain", False),
        "secure": getattr(h, "secure", False),
        "issued": h.issued,
        "url": getattr(h, "url", ""),
        "query": h.query,
        "auth": h.auth,
    }


def _remote_desc(desc: dict[str, Any]) -> dict[str, Any]:
    hs = desc.get("handshake") or {}
    return {
        "id": desc["id"],
        "rooms": desc.get("rooms") or [],
        "data": desc.get("data"),
        "handshake": {
            "headers": hs.get("headers") or {},
            "query": hs.get("query") or {},
            "address": hs.get("address"),
            "issued": hs.get("issued") or 0,
            "auth": hs.get("auth"),
        },
    }


class RedisAdapter(Adapter):
    """One namespace's adapter on a ``RedisCluster``: Node's ``RedisAdapter``. Each call does the local part
    (``super()``) and publishes the rest, unless ``opts.local``."""

    def __init__(self, nsp: AdapterNamespace, cluster: RedisCluster, machine: MachineScope | None = None) -> None:
        super().__init__(nsp)
        self.cluster = cluster
        #: With workers, every worker of this machine (what other machines ask is done there); else this process.
        self.machine = machine
        self.uid = new_id()
        key, name = cluster.key, nsp.name
        self.broadcast_prefix = f"{key}#{name}#"
        self.pattern = self.broadcast_prefix + "*"
        self.request_channel = f"{key}-request#{name}#"
        self.response_channel = f"{key}-response#{name}#"
        self._requests: dict[str, _Gather] = {}
        self._ack_requests: dict[str, _AckGather] = {}
        cluster.listen("PSUBSCRIBE", self.pattern, self.on_broadcast)
        cluster.listen("SUBSCRIBE", self.request_channel, self.on_request)
        cluster.listen("SUBSCRIBE", self.response_channel, self.on_response)
        self.own_response_channel = f"{self.response_channel}{self.uid}#"
        cluster.listen("SUBSCRIBE", self.own_response_channel, self.on_response)

    def _wire_opts(self, opts: BroadcastOptions) -> dict[str, Any]:
        return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}

    def _channel_for(self, opts: BroadcastOptions) -> str:
        if len(opts.rooms) == 1:
            (room,) = opts.rooms
            return f"{self.broadcast_prefix}{room}#"
        return self.broadcast_prefix

    async def _request(self, message: dict[str, Any], expected: int, what: str) -> list[Any]:
        """Publish a request and gather ``expected`` replies within ``requests_timeout``."""
        rid = message["requestId"]
        gather = self._requests[rid] = _Gather(expected)
        try:
            await self.cluster.publish(self.request_channel, encode("request", message))
            with anyio.move_on_after(self.cluster.requests_timeout):
                await gather.done.wait()
        finally:
            del self._requests[rid]
        if len(gather.replies) < expected:
            raise ClusterError(f"timeout reached while waiting for {what} response")
        return gather.replies

    # ---- what this server does (origin) ---------------------------------------------------------------------

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        # The arguments are encoded once, for the local sockets and for Redis.
        data, attachments = encode_args(args)
        keys = self.broadcast_packet(data, attachments, opts, ack_id)
        if not opts.local:
            await self.remote_broadcast(data, attachments, opts)
        return keys

    async def remote_broadcast(self, data: str, attachments: list[bytes], opts: BroadcastOptions) -> None:
        rooms, except_rooms = sorted(opts.rooms), sorted(opts.except_rooms)
        message = redis_encode_broadcast(self.uid, self.nsp.name, data, attachments, rooms, except_rooms, opts.volatile)
        await self.cluster.publish_quietly(self._channel_for(opts), message)

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        if opts.local:
            return await super().broadcast_with_ack(args, opts, timeout)
        wait = timeout if timeout is not None else self.cluster.requests_timeout
        replies: list[Any] = []
        missing = False

        async def local() -> None:
            nonlocal missing
            try:
                replies.extend(await Adapter.broadcast_with_ack(self, args, replace(opts, local=True), timeout))
            except AckTimeout as e:
                replies.extend(e.replies)
                missing = True

        async def remote() -> None:
            nonlocal missing
            found, incomplete = await self.remote_broadcast_with_ack(args, opts, timeout)
            replies.extend(found)
            missing = missing or incomplete

        async with anyio.create_task_group() as tg:
            tg.start_soon(remote)  # first: it publishes the request before the local delivery
            tg.start_soon(local)
        if missing:
            raise AckTimeout(f"some clients did not acknowledge {args[0]!r} in {wait} s", replies)
        return replies

    async def remote_broadcast_with_ack(
        self, args: list[Any], opts: BroadcastOptions, timeout: float | None
    ) -> tuple[list[Any], bool]:
        wait = timeout if timeout is not None else self.cluster.requests_timeout
        rid = new_id()
        gather = self._ack_requests[rid] = _AckGather()
        flags: dict[str, Any] = {"timeout": math.ceil(wait * 1000)}
        if opts.volatile:
            flags = {"volatile": True, **flags}
        request = {
            "uid": self.uid,
            "requestId": rid,
            "type": BROADCAST,
            "packet": {"type": 2, "data": args, "nsp": self.nsp.name},
            "opts": {**self._wire_opts(opts), "flags": flags},
        }
        missing = False
        try:
            await self.cluster.publish_quietly(self.request_channel, encode("request", request))
            with anyio.move_on_after(wait):
                try:
                    gather.servers = max(0, await self.cluster.numsub(self.request_channel) - 1)
                except ClusterError:
                    gather.servers = 0
                    missing = True
                gather.check()
                await gather.done.wait()
            if not gather.done.is_set():
                missing = True
        finally:
            del self._ack_requests[rid]
        return gather.replies, missing

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        found = await super().fetch_sockets(opts)
        if opts.local:
            return found
        found.extend(RemoteSocket(self, desc) for desc in await self.remote_fetch(opts))
        return found

    async def remote_fetch(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        servers = await self.server_count()
        if servers <= 1:
            return []
        request = {"uid": self.uid, "requestId": new_id(), "type": REMOTE_FETCH, "opts": self._wire_opts(opts)}
        found: list[dict[str, Any]] = []
        for reply in await self._request(request, servers - 1, "fetchSockets"):
            for desc in reply.get("sockets") or ():
                if isinstance(desc, dict) and "id" in desc:
                    found.append(_remote_desc(desc))
        return found

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().add_sockets(opts, rooms)
        if not opts.local:
            await self.remote_join(opts, rooms)

    async def remote_join(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        request = {"uid": self.uid, "type": REMOTE_JOIN, "opts": self._wire_opts(opts), "rooms": rooms}
        await self.cluster.publish_quietly(self.request_channel, encode("request", request))

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().del_sockets(opts, rooms)
        if not opts.local:
            await self.remote_leave(opts, rooms)

    async def remote_leave(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        request = {"uid": self.uid, "type": REMOTE_LEAVE, "opts": self._wire_opts(opts), "rooms": rooms}
        await self.cluster.publish_quietly(self.request_channel, encode("request", request))

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.local:
            await self.remote_disconnect(opts, close)
        await super().disconnect_sockets(opts, close)

    async def remote_disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        request = {"uid": self.uid, "type": REMOTE_DISCONNECT, "opts": self._wire_opts(opts), "close": close}
        await self.cluster.publish_quietly(self.request_channel, encode("request", request))

    async def server_side_emit(self, args: list[Any]) -> None:
        await self.remote_server_side_emit(args)

    async def remote_server_side_emit(self, args: list[Any]) -> None:
        request = {"uid": self.uid, "type": SERVER_SIDE_EMIT, "data": args}
        await self.cluster.publish_quietly(self.request_channel, encode("request", request))

    async def server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        return await self.remote_server_side_emit_with_ack(args, timeout)

    async def remote_server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        others = await self.server_count() - 1
        if others <= 0:
            return []
        rid = new_id()
        request = {"uid": self.uid, "requestId": rid, "type": SERVER_SIDE_EMIT, "data": args}
        gather = self._requests[rid] = _Gather(others)
        try:
            await self.cluster.publish(self.request_channel, encode("request", request))
            with anyio.move_on_after(timeout if timeout is not None else self.cluster.requests_timeout):
                await gather.done.wait()
        finally:
            del self._requests[rid]
        replies = [r.get("data") for r in gather.replies]
        if len(replies) < others:
            raise AckTimeout(f"timeout reached: only {len(replies)} responses received out of {others}", replies)
        return replies

    async def server_count(self) -> int:
        return await self.cluster.numsub(self.request_channel)

    async def all_rooms(self) -> set[str]:
        """Node's ``allRooms``: every room of the namespace, on every server."""
        rooms = self._local_rooms()
        servers = await self.server_count()
        if servers > 1:
            request = {"uid": self.uid, "requestId": new_id(), "type": ALL_ROOMS}
            for reply in await self._request(request, servers - 1, "allRooms"):
                rooms.update(str(r) for r in reply.get("rooms") or ())
        return rooms

    def _local_rooms(self) -> set[str]:
        rooms: set[str] = set()
        for key in self._targets(BroadcastOptions()):
            rooms.update(self.nsp.core.rooms_of(key))
        return rooms

    # ---- what the others ask (receiver) ----------------------------------------------------------------------

    def on_broadcast(self, channel: bytes, data: bytes) -> Awaitable[None] | None:
        """A broadcast from another server or an emitter: decoded in Rust, written to local targets (and relayed
        to the other workers of this machine, with workers)."""
        uid, nsp, rooms, except_rooms, volatile, data_json, attachments = redis_broadcast(data)
        if uid == self.uid or nsp != self.nsp.name:
            return None
        if self.machine is not None:
            opts = BroadcastOptions(frozenset(rooms), frozenset(except_rooms), local=True, volatile=volatile)
            return self.machine.machine_deliver(data_json, attachments, opts)
        self.nsp.core.broadcast_event(nsp, data_json, rooms, except_rooms, attachments, None, volatile)
        return None

    async def _here_fetch(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        """This server's sockets: this process's, or every worker's of this machine."""
        if self.machine is not None:
            return await self.machine.machine_fetch(opts)
        return await Adapter.fetch_sockets(self, opts)

    async def on_request(self, channel: bytes, data: bytes) -> None:
        request = decode("request", data)
        kind = request.get("type")
        if request.get("uid") == self.uid:
            return  # our own: done locally already
        rid = request.get("requestId")
        if kind == BROADCAST:
            self._answer_broadcast(request)
        elif kind == REMOTE_FETCH:
            sockets = await self._here_fetch(_opts_of(request))
            described = [
                {"id": s.id, "handshake": _node_handshake(s), "rooms": sorted(s.rooms), "data": s.data} for s in sockets
            ]
            await self._respond({"requestId": rid, "sockets": described})
        elif kind == REMOTE_JOIN and "opts" in request:
            rooms = [str(r) for r in request.get("rooms") or ()]
            if self.machine is not None:
                await self.machine.machine_join(_opts_of(request), rooms)
            else:
                await Adapter.add_sockets(self, _opts_of(request), rooms)
        elif kind == REMOTE_LEAVE and "opts" in request:
            rooms = [str(r) for r in request.get("rooms") or ()]
            if self.machine is not None:
                await self.machine.machine_leave(_opts_of(request), rooms)
            else:
                await Adapter.del_sockets(self, _opts_of(request), rooms)
        elif kind == REMOTE_DISCONNECT and "opts" in request:
            if self.machine is not None:
                await self.machine.machine_disconnect(_opts_of(request), bool(request.get("close")))
            else:
                await Adapter.disconnect_sockets(self, _opts_of(request), bool(request.get("close")))
        elif kind == SERVER_SIDE_EMIT:
            self.cluster.spawn(self._server_side, request)
        elif kind == ALL_ROOMS:
            await self._respond({"requestId": rid, "rooms": sorted(self._local_rooms())})
        elif kind == SOCKETS:
            opts = BroadcastOptions(frozenset(str(r) for r in request.get("rooms") or ()), local=True)
            ids = [s.id for s in await self._here_fetch(opts)]
            await self._respond({"requestId": rid, "sockets": ids})

    async def _respond(self, response: dict[str, Any]) -> None:
        await self.cluster.publish_quietly(self.response_channel, encode("response", response))

    async def _server_side(self, request: dict[str, Any]) -> None:
        args = request.get("data") or []
        if self.machine is not None:
            await self.machine.machine_server_side(args)  # every worker hears it; this one answers for all
        receive: Callable[[list[Any]], Awaitable[Any]] | None = getattr(self.nsp, "receive_server_side", None)
        if receive is None:
            return
        try:
            result = await receive(args)
        except Exception:
            logger.exception("server-side event %r failed", args[0] if args else None)
            return
        rid = request.get("requestId")
        if rid is not None:
            await self._respond({"type": SERVER_SIDE_EMIT, "requestId": rid, "data": result})

    def _answer_broadcast(self, request: dict[str, Any]) -> None:
        """A broadcast with acks from another server: deliver locally with our own ack id, tell the origin how many
        clients got it, then forward each client's reply as it comes."""
        rid = request["requestId"]
        if rid in self._ack_requests:
            return
        packet = request.get("packet") or {}
        flags = (request.get("opts") or {}).get("flags") or {}
        data, attachments = encode_args(packet.get("data") or [])
        acks = self.nsp.acks
        ack_id = acks.next_id()
        opts = _opts_of(request, volatile=bool(flags.get("volatile")))
        keys = self.broadcast_packet(data, attachments, opts, ack_id)

        def count(n: int) -> None:
            response = {"type": BROADCAST_CLIENT_COUNT, "requestId": rid, "clientCount": n}
            self.cluster.publish_soon(self.response_channel, encode("response", response))

        def forward(values: list[Any] | None) -> None:
            if values is None:
                return
            reply: dict[str, Any] = {"type": BROADCAST_ACK, "requestId": rid}
            if values:
                reply["packet"] = values[0]
            self.cluster.publish_soon(self.response_channel, encode("response", reply))

        for key in keys:
            acks.expect(key, ack_id, forward)
        timeout = flags.get("timeout")
        wait = timeout / 1000 if isinstance(timeout, int | float) else self.cluster.requests_timeout
        if self.machine is not None:
            # One count for the whole machine: this process's sockets and the other workers'.
            self.cluster.spawn(self._answer_for_machine, rid, data, attachments, opts, wait, len(keys), count, forward)
        else:
            count(len(keys))
        if keys:
            self.cluster.spawn(self._forget_acks, keys, ack_id, wait)

    async def _answer_for_machine(
        self,
        rid: str,
        data: str,
        attachments: list[bytes],
        opts: BroadcastOptions,
        wait: float,
        here: int,
        count: Callable[[int], None],
        forward: Callable[[list[Any] | None], None],
    ) -> None:
        assert self.machine is not None
        try:
            count(here + await self.machine.machine_ack_peers(rid, data, attachments, opts, wait, forward))
            await anyio.sleep(wait)  # Node's cleanup timer: replies after the origin's timeout are dropped
        finally:
            self.machine.machine_ack_done(rid)

    async def _forget_acks(self, keys: list[int], ack_id: int, wait: float) -> None:
        await anyio.sleep(wait)  # Node's cleanup timer: replies after the origin's timeout are dropped
        for key in keys:
            self.nsp.acks.forget(key, ack_id)

    def on_response(self, channel: bytes, data: bytes) -> None:
        response = decode("response", data)
        rid = response.get("requestId")
        ack = self._ack_requests.get(rid) if isinstance(rid, str) else None
        if ack is not None:
            if response.get("type") == BROADCAST_CLIENT_COUNT:
                ack.counts += 1
                ack.clients += int(response.get("clientCount") or 0)
            elif response.get("type") == BROADCAST_ACK:
                ack.replies.append(response.get("packet"))
            ack.check()
            return
        gather = self._requests.get(rid) if isinstance(rid, str) else None
        if gather is not None:
            gather.add(response)


# MessageType of socket.io-adapter's ClusterAdapter (the sharded adapter's messages).
(
    _INITIAL_HEARTBEAT,
    _HEARTBEAT,
    C_BROADCAST,
    C_SOCKETS_JOIN,
    C_SOCKETS_LEAVE,
    C_DISCONNECT_SOCKETS,
    C_FETCH_SOCKETS,
    C_FETCH_SOCKETS_RESPONSE,
    C_SERVER_SIDE_EMIT,
    C_SERVER_SIDE_EMIT_RESPONSE,
    C_BROADCAST_CLIENT_COUNT,
    C_BROADCAST_ACK,
    _ADAPTER_CLOSE,
) = range(1, 14)
_C_RESPONSES = (C_FETCH_SOCKETS_RESPONSE, C_SERVER_SIDE_EMIT_RESPONSE, C_BROADCAST_CLIENT_COUNT, C_BROADCAST_ACK)


def _looks_like_a_socket_id(room: str) -> bool:
    return len(room.encode("utf-16-le")) == 40  # 20 UTF-16 code units, as Node's looksLikeASocketId


class ShardedRedisAdapter(Adapter):
    """One namespace's adapter on a sharded ``RedisCluster``: Node's ``createShardedAdapter`` (socket.io-adapter's
    ``ClusterAdapter`` on SSUBSCRIBE / SPUBLISH). Every message is ``{type, data, uid, nsp}`` on the namespace's
    channel, a room's channel (mode "dynamic": one per public room this server has) or the requester's."""

    def __init__(self, nsp: AdapterNamespace, cluster: RedisCluster) -> None:
        super().__init__(nsp)
        self.cluster = cluster
        self.uid = secrets.token_hex(8)
        self.main = f"{cluster.key}#{nsp.name}#"
        self.own = f"{self.main}{self.uid}#"
        self._requests: dict[str, _Gather] = {}
        self._ack_requests: dict[str, _AckGather] = {}
        self._room_channels: set[str] = set()
        cluster.listen("SSUBSCRIBE", self.main, self.on_message)
        cluster.listen("SSUBSCRIBE", self.own, self.on_message)

    # ---- wire -------------------------------------------------------------------------------------------------

    def _message(self, kind: int, data: dict[str, Any]) -> bytes:
        return encode("cluster", {"type": kind, "data": data, "uid": self.uid, "nsp": self.nsp.name})

    @staticmethod
    def _opts(opts: BroadcastOptions, flags: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms), "flags": flags or {}}

    def _room_channel(self, room: str) -> str:
        return f"{self.main}{room}#"

    async def _publish(self, channel: str, data: bytes) -> None:
        await self.cluster.publish_quietly(channel, data)

    async def _request(self, kind: int, data: dict[str, Any], expected: int, timeout: float) -> list[Any]:
        rid = data["requestId"]
        gather = self._requests[rid] = _Gather(expected)
        try:
            await self.cluster.publish(self.main, self._message(kind, data))
            with anyio.move_on_after(timeout):
                await gather.done.wait()
        finally:
            del self._requests[rid]
        return gather.replies

    # ---- dynamic room channels ----------------------------------------------------------------------------------

    def _is_local_socket_id(self, room: str) -> bool:
        for key in self.nsp.core.targets(self.nsp.name, [room], []):
            socket = self.nsp.socket(key)
            if socket is not None and socket.id == room:
                return True
        return False

    def _listen_rooms(self, rooms: Iterable[str]) -> None:
        if self.cluster.subscription_mode != "dynamic":
            return
        for room in rooms:
            if room not in self._room_channels and not self._is_local_socket_id(room):
                self._room_channels.add(room)
                self.cluster.listen("SSUBSCRIBE", self._room_channel(room), self.on_message)

    def _unlisten_if_empty(self, rooms: Iterable[str]) -> None:
        for room in rooms:
            if room in self._room_channels and not self.nsp.core.targets(self.nsp.name, [room], []):
                self._room_channels.discard(room)
                self.cluster.unlisten(self._room_channel(room))

    def add_all(self, socket: LocalSocket, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_all(socket, rooms)
        self._listen_rooms(rooms)

    def delete(self, socket: LocalSocket, room: str) -> None:
        super().delete(socket, room)
        self._unlisten_if_empty([room])

    # ---- origin ---------------------------------------------------------------------------------------------------

    async def broadcast(self, args: list[Any], opts: BroadcastOptions, ack_id: int | None = None) -> list[int]:
        if not opts.local:
            flags = {"volatile": True} if opts.volatile else {}
            data = {"packet": {"type": 2, "data": args}, "opts": self._opts(opts, flags)}
            channel = self.main
            if len(opts.rooms) == 1:
                (room,) = opts.rooms
                if self.cluster.subscription_mode == "dynamic" and not _looks_like_a_socket_id(room):
                    channel = self._room_channel(room)
            await self._publish(channel, self._message(C_BROADCAST, data))
        return await super().broadcast(args, opts, ack_id)

    async def broadcast_with_ack(self, args: list[Any], opts: BroadcastOptions, timeout: float | None) -> list[Any]:
        if opts.local:
            return await super().broadcast_with_ack(args, opts, timeout)
        wait = timeout if timeout is not None else self.cluster.requests_timeout
        rid = secrets.token_hex(8)
        gather = self._ack_requests[rid] = _AckGather()
        flags: dict[str, Any] = {"timeout": math.ceil(wait * 1000)}
        data = {"packet": {"type": 2, "data": args}, "requestId": rid, "opts": self._opts(opts, flags)}
        replies: list[Any] = []
        missing = False
        try:
            await self._publish(self.main, self._message(C_BROADCAST, data))

            async def local() -> None:
                nonlocal missing
                try:
                    replies.extend(await Adapter.broadcast_with_ack(self, args, replace(opts, local=True), timeout))
                except AckTimeout as e:
                    replies.extend(e.replies)
                    missing = True

            async def remote() -> None:
                nonlocal missing
                with anyio.move_on_after(wait):
                    try:
                        gather.servers = max(0, await self.server_count() - 1)
                    except ClusterError:
                        gather.servers = 0
                        missing = True
                    gather.check()
                    await gather.done.wait()
                if not gather.done.is_set():
                    missing = True

            async with anyio.create_task_group() as tg:
                tg.start_soon(local)
                tg.start_soon(remote)
        finally:
            del self._ack_requests[rid]
        replies.extend(gather.replies)
        if missing:
            raise AckTimeout(f"some clients did not acknowledge {args[0]!r} in {wait} s", replies)
        return replies

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[FetchedSocket]:
        found = await super().fetch_sockets(opts)
        if opts.local:
            return found
        others = await self.server_count() - 1
        if others <= 0:
            return found
        data = {"opts": self._opts(opts), "requestId": secrets.token_hex(8)}
        replies = await self._request(C_FETCH_SOCKETS, data, others, self.cluster.requests_timeout)
        if len(replies) < others:
            raise ClusterError(f"timeout reached: only {len(replies)} responses received out of {others}")
        for reply in replies:
            for desc in reply.get("sockets") or ():
                if isinstance(desc, dict) and "id" in desc:
                    found.append(RemoteSocket(self, _remote_desc(desc)))
        return found

    async def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        if not opts.local:
            await self._publish(self.main, self._message(C_SOCKETS_JOIN, {"opts": self._opts(opts), "rooms": rooms}))
        await super().add_sockets(opts, rooms)
        self._listen_rooms(rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        if not opts.local:
            await self._publish(self.main, self._message(C_SOCKETS_LEAVE, {"opts": self._opts(opts), "rooms": rooms}))
        await super().del_sockets(opts, rooms)
        self._unlisten_if_empty(rooms)

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.local:
            message = self._message(C_DISCONNECT_SOCKETS, {"opts": self._opts(opts), "close": close})
            await self._publish(self.main, message)
        await super().disconnect_sockets(opts, close)

    async def server_side_emit(self, args: list[Any]) -> None:
        await self._publish(self.main, self._message(C_SERVER_SIDE_EMIT, {"packet": args}))

    async def server_side_emit_with_ack(self, args: list[Any], timeout: float | None) -> list[Any]:
        others = await self.server_count() - 1
        if others <= 0:
            return []
        wait = timeout if timeout is not None else self.cluster.requests_timeout
        data = {"requestId": secrets.token_hex(8), "packet": args}
        replies = [r.get("packet") for r in await self._request(C_SERVER_SIDE_EMIT, data, others, wait)]
        if len(replies) < others:
            raise AckTimeout(f"timeout reached: only {len(replies)} responses received out of {others}", replies)
        return replies

    async def server_count(self) -> int:
        return await self.cluster.numsub(self.main)

    # ---- receiver -------------------------------------------------------------------------------------------------

    async def on_message(self, channel: bytes, data: bytes) -> None:
        fast = redis_cluster_broadcast(data)
        if fast is not None:
            uid, nsp, rooms, except_rooms, volatile, data_json, attachments = fast
            if uid != self.uid and nsp == self.nsp.name:
                self.nsp.core.broadcast_event(nsp, data_json, rooms, except_rooms, attachments, None, volatile)
            return
        message = decode("cluster", data)
        if message.get("uid") == self.uid or message.get("nsp") != self.nsp.name:
            return
        kind, body = message.get("type"), message.get("data") or {}
        if kind in _C_RESPONSES:
            self._on_response(kind, body)
        elif kind == C_BROADCAST:
            self._answer_broadcast(message["uid"], body)
        elif kind == C_SOCKETS_JOIN:
            rooms = [str(r) for r in body.get("rooms") or ()]
            await Adapter.add_sockets(self, _opts_of(body), rooms)
            self._listen_rooms(rooms)
        elif kind == C_SOCKETS_LEAVE:
            rooms = [str(r) for r in body.get("rooms") or ()]
            await Adapter.del_sockets(self, _opts_of(body), rooms)
            self._unlisten_if_empty(rooms)
        elif kind == C_DISCONNECT_SOCKETS:
            await Adapter.disconnect_sockets(self, _opts_of(body), bool(body.get("close")))
        elif kind == C_FETCH_SOCKETS:
            sockets = await Adapter.fetch_sockets(self, _opts_of(body))
            described = [
                {"id": s.id, "handshake": _node_handshake(s), "rooms": sorted(s.rooms), "data": s.data} for s in sockets
            ]
            reply = {"requestId": body.get("requestId"), "sockets": described}
            await self._respond(message["uid"], C_FETCH_SOCKETS_RESPONSE, reply)
        elif kind == C_SERVER_SIDE_EMIT:
            self.cluster.spawn(self._server_side, message["uid"], body)

    async def _respond(self, requester: str, kind: int, data: dict[str, Any]) -> None:
        await self._publish(f"{self.main}{requester}#", self._message(kind, data))

    async def _server_side(self, requester: str, body: dict[str, Any]) -> None:
        args = body.get("packet") or []
        receive: Callable[[list[Any]], Awaitable[Any]] | None = getattr(self.nsp, "receive_server_side", None)
        if receive is None:
            return
        try:
            result = await receive(args)
        except Exception:
            logger.exception("server-side event %r failed", args[0] if args else None)
            return
        rid = body.get("requestId")
        if rid is not None:
            await self._respond(requester, C_SERVER_SIDE_EMIT_RESPONSE, {"requestId": rid, "packet": result})

    def _answer_broadcast(self, requester: str, body: dict[str, Any]) -> None:
        rid = body.get("requestId")
        packet = body.get("packet") or {}
        flags = (body.get("opts") or {}).get("flags") or {}
        data, attachments = encode_args(packet.get("data") or [])
        opts = _opts_of(body, volatile=bool(flags.get("volatile")))
        if rid is None:  # a broadcast with binary arrived as msgpack: not on the fast path
            self.broadcast_packet(data, attachments, opts)
            return
        acks = self.nsp.acks
        ack_id = acks.next_id()
        keys = self.broadcast_packet(data, attachments, opts, ack_id)
        channel = f"{self.main}{requester}#"
        count = {"requestId": rid, "clientCount": len(keys)}
        self.cluster.publish_soon(channel, self._message(C_BROADCAST_CLIENT_COUNT, count))

        def forward(values: list[Any] | None) -> None:
            if values is None:
                return
            reply: dict[str, Any] = {"requestId": rid}
            if values:
                reply["packet"] = values[0]
            self.cluster.publish_soon(channel, self._message(C_BROADCAST_ACK, reply))

        for key in keys:
            acks.expect(key, ack_id, forward)
        if keys:
            timeout = flags.get("timeout")
            wait = timeout / 1000 if isinstance(timeout, int | float) else self.cluster.requests_timeout
            self.cluster.spawn(self._forget_acks, keys, ack_id, wait)

    async def _forget_acks(self, keys: list[int], ack_id: int, wait: float) -> None:
        await anyio.sleep(wait)  # Node's cleanup timer: replies after the origin's timeout are dropped
        for key in keys:
            self.nsp.acks.forget(key, ack_id)

    def _on_response(self, kind: int, body: dict[str, Any]) -> None:
        rid = body.get("requestId")
        ack = self._ack_requests.get(rid) if isinstance(rid, str) else None
        if ack is not None:
            if kind == C_BROADCAST_CLIENT_COUNT:
                ack.counts += 1
                ack.clients += int(body.get("clientCount") or 0)
            elif kind == C_BROADCAST_ACK:
                ack.replies.append(body.get("packet"))
            ack.check()
            return
        gather = self._requests.get(rid) if isinstance(rid, str) else None
        if gather is not None:
            gather.add(body)


class Emitter:
    """Publishes to the servers of a Redis cluster from a process that is not one (Node's
    ``@socket.io/redis-emitter``): ``async with Emitter(url) as io: await io.to("room").emit("event", data)``."""

    def __init__(self, url: str = "redis://127.0.0.1:6379", *, key: str = DEFAULT_KEY, nsp: str = "/") -> None:
        self.address = RedisAddress.parse(url)
        self.key = key
        self.nsp = nsp if nsp.startswith("/") else "/" + nsp
        self._conn: RespConnection | None = None
        self._lock = anyio.Lock()
        self._shared: Emitter | None = None
        self.connect_timeout = 5.0

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None

    def of(self, nsp: str) -> Emitter:
        """The same emitter (and connection) for another namespace."""
        other = Emitter.__new__(Emitter)
        other.__dict__.update(self.__dict__)
        other.nsp = nsp if nsp.startswith("/") else "/" + nsp
        other._shared = self._shared or self
        return other

    async def _publish(self, channel: str, data: bytes) -> None:
        owner = self._shared or self
        async with owner._lock:
            for attempt in range(2):
                try:
                    if owner._conn is None:
                        owner._conn = await RespConnection.open(owner.address, owner.connect_timeout)
                    await owner._conn.command("PUBLISH", channel, data)
                    return
                except _CONNECTION_ERRORS as e:
                    if owner._conn is not None:
                        await owner._conn.aclose()
                    owner._conn = None
                    if attempt:
                        raise ClusterError(
                            f"Redis at {owner.address.host}:{owner.address.port} is unreachable: {e}"
                        ) from e

    @property
    def _all(self) -> EmitterOperator:
        return EmitterOperator(self)

    def to(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return self._all.to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return self._all.except_(*rooms)

    @property
    def volatile(self) -> EmitterOperator:
        return self._all.volatile

    def compress(self, compress: bool) -> EmitterOperator:
        return self._all.compress(compress)

    async def emit(self, event: str, *args: Any) -> None:
        await self._all.emit(event, *args)

    async def sockets_join(self, *rooms: str) -> None:
        await self._all.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str) -> None:
        await self._all.sockets_leave(*rooms)

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._all.disconnect_sockets(close)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        request = {"uid": EMITTER_UID, "type": SERVER_SIDE_EMIT, "data": [event, *args]}
        await self._publish(f"{self.key}-request#{self.nsp}#", encode("request", request))


RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


def _names(rooms: Iterable[str | Iterable[str]]) -> list[str]:
    out: list[str] = []
    for r in rooms:
        for name in [r] if isinstance(r, str) else r:
            if name not in out:
                out.append(name)
    return out


@dataclass(frozen=True)
class EmitterOperator:
    """Targets and flags of an emitter's message (the emitter's ``BroadcastOperator``)."""

    emitter: Emitter
    rooms: tuple[str, ...] = ()
    except_rooms: tuple[str, ...] = ()
    flags: tuple[tuple[str, bool], ...] = ()

    def to(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return replace(self, rooms=tuple(_names([self.rooms, *rooms])))

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> EmitterOperator:
        return replace(self, except_rooms=tuple(_names([self.except_rooms, *rooms])))

    def _flag(self, name: str, value: bool) -> EmitterOperator:
        flags = dict(self.flags)
        flags[name] = value
        return replace(self, flags=tuple(flags.items()))

    @property
    def volatile(self) -> EmitterOperator:
        return self._flag("volatile", True)

    def compress(self, compress: bool) -> EmitterOperator:
        return self._flag("compress", compress)

    async def emit(self, event: str, *args: Any) -> None:
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        e = self.emitter
        packet = {"type": 2, "data": [event, *args], "nsp": e.nsp}
        opts = {"rooms": list(self.rooms), "flags": dict(self.flags), "except": list(self.except_rooms)}
        channel = f"{e.key}#{e.nsp}#" + (f"{self.rooms[0]}#" if len(self.rooms) == 1 else "")
        await e._publish(channel, encode("broadcast", [EMITTER_UID, packet, opts]))

    def _request(self, kind: int, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "opts": {"rooms": list(self.rooms), "except": list(self.except_rooms)}, **extra}

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        e = self.emitter
        await e._publish(
            f"{e.key}-request#{e.nsp}#", encode("request", self._request(REMOTE_JOIN, rooms=_names(rooms)))
        )

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        e = self.emitter
        request = self._request(REMOTE_LEAVE, rooms=_names(rooms))
        await e._publish(f"{e.key}-request#{e.nsp}#", encode("request", request))

    async def disconnect_sockets(self, close: bool = False) -> None:
        e = self.emitter
        await e._publish(f"{e.key}-request#{e.nsp}#", encode("request", self._request(REMOTE_DISCONNECT, close=close)))
