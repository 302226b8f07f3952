"""The Redis side of a server: one connection that publishes and one that listens, shared by the adapters of
every namespace. It keeps what the adapters subscribe to (and subscribes again after a reconnection), sends
SUBSCRIBE and UNSUBSCRIBE in the order the adapters asked, and routes what arrives to the adapter that listens.

While Redis is unreachable the listening connection reconnects with backoff (one log line per outage),
fire-and-forget publishes are dropped, and commands that need Redis's answer raise ``ClusterError``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ...exceptions import ClusterError
from .resp import CONNECTION_ERRORS, Command, RedisAddress, RespConnection, close_quietly

logger = logging.getLogger("anysio")

#: Fire-and-forget publishes queued at most (while Redis is slow); past that they are dropped, with a log line.
MAX_OUTBOX = 100_000
#: What an adapter does with a message: ``handler(channel, data)``.
Handler = Callable[[bytes, bytes], Awaitable[None] | None]

_CONFIRMATIONS = (b"subscribe", b"psubscribe", b"ssubscribe")
_UNSUBSCRIBE = {"SUBSCRIBE": "UNSUBSCRIBE", "PSUBSCRIBE": "PUNSUBSCRIBE", "SSUBSCRIBE": "SUNSUBSCRIBE"}


class Exchange:
    """Publishing and listening on one Redis (plain pub/sub, or sharded: SPUBLISH, SHARDNUMSUB). Run it with
    ``async with``."""

    def __init__(
        self,
        address: RedisAddress,
        *,
        sharded: bool = False,
        requests_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_reconnect_delay: float = 2.0,
    ) -> None:
        self.address = address
        self.sharded = sharded
        self.requests_timeout = requests_timeout
        self.connect_timeout = connect_timeout
        self.max_reconnect_delay = max_reconnect_delay
        # What the listening connection subscribes to (channel or pattern -> SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE),
        # and who handles what arrives there.
        self._subscriptions: dict[bytes, str] = {}
        self._routes: dict[bytes, Handler] = {}
        # Subscription changes not sent yet, in the order they were asked: one task writes them, so an
        # UNSUBSCRIBE never overtakes the SUBSCRIBE before it.
        self._changes: list[Command] = []
        self._changes_ready = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._pub: RespConnection | None = None
        self._pub_lock = anyio.Lock()
        self._sub: RespConnection | None = None
        self._sub_lock = anyio.Lock()
        self._down_logged = False
        # Fire-and-forget publishes, in order: written in batches by one task (Node's client pipelines too), so
        # an emit does not wait for Redis's reply and a burst of them is one write.
        self._outbox: list[Command] = []
        self._outbox_ready = anyio.Event()
        #: Set while the listening connection is subscribed to every channel and pattern.
        self.subscribed = anyio.Event()

    # ---- subscriptions --------------------------------------------------------------------------------------

    def listen(self, command: str, name: str, handler: Handler) -> None:
        """Subscribe (``command``: SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE) to ``name``, now and after every
        reconnection; what arrives goes to ``handler(channel, data)``."""
        key = name.encode()
        self._routes[key] = handler
        if key not in self._subscriptions:
            self._subscriptions[key] = command
            self._change(command, key)

    def unlisten(self, name: str) -> None:
        key = name.encode()
        self._routes.pop(key, None)
        command = self._subscriptions.pop(key, None)
        if command is not None:
            self._change(_UNSUBSCRIBE[command], key)

    def listens(self, name: str) -> bool:
        return name.encode() in self._subscriptions

    def _change(self, command: str, key: bytes) -> None:
        if self._sub is not None:  # else the next connection subscribes to what is wanted then
            self._changes.append((command, key))
            self._changes_ready.set()

    async def _write_changes(self) -> None:
        while True:
            await self._changes_ready.wait()
            self._changes_ready = anyio.Event()
            async with self._sub_lock:
                batch, self._changes = self._changes, []
                if self._sub is not None and batch:
                    # A failure is the listening loop's too: it reconnects and subscribes to what is wanted then.
                    with contextlib.suppress(*CONNECTION_ERRORS):
                        await self._sub.send_many(batch)

    # ---- lifecycle --------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._tg is not None

    async def __aenter__(self) -> Exchange:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._listen)
            self._tg.start_soon(self._flush)
            self._tg.start_soon(self._write_changes)
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None
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
            await close_quietly(self._pub)
            await close_quietly(self._sub)
            self._pub = self._sub = None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._tg is not None:
            self._tg.start_soon(fn, *args)

    def _log_down(self, why: str, then: str = "cluster messages are dropped until it is back") -> None:
        """One log line per outage."""
        if not self._down_logged:
            self._down_logged = True
            logger.warning("%s; %s", why, then)

    # ---- publishing -------------------------------------------------------------------------------------------

    async def _publisher(self) -> RespConnection:
        if self._pub is None:
            self._pub = await RespConnection.open(self.address, self.connect_timeout)
        return self._pub

    async def _drop_publisher(self) -> None:
        conn, self._pub = self._pub, None
        await close_quietly(conn)

    async def command(self, *args: str | bytes) -> Any:
        """A command whose reply is needed, after what was queued before it. Raises ClusterError while Redis is
        unreachable (a lost connection is opened again once)."""
        async with self._pub_lock:
            await self._send_outbox()
            for attempt in range(2):
                try:
                    conn = await self._publisher()
                    with anyio.fail_after(self.requests_timeout):
                        return await conn.command(*args)
                except CONNECTION_ERRORS as e:
                    await self._drop_publisher()
                    if attempt:
                        raise self.address.unreachable(e) from e
        raise AssertionError("unreachable")

    @property
    def _publish_command(self) -> str:
        return "SPUBLISH" if self.sharded else "PUBLISH"

    async def publish(self, channel: str, data: bytes) -> None:
        """Publish and wait for Redis's reply (a request: raises ClusterError while Redis is unreachable)."""
        await self.command(self._publish_command, channel, data)

    def publish_soon(self, channel: str, data: bytes) -> None:
        """Publish without waiting (fire-and-forget, in order with every other publish)."""
        if self._tg is None:
            return
        if len(self._outbox) >= MAX_OUTBOX:
            self._log_down("Redis does not keep up")
            return
        self._outbox.append((self._publish_command, channel, data))
        self._outbox_ready.set()

    async def publish_quietly(self, channel: str, data: bytes) -> None:
        """Publish without waiting for Redis, or, when the exchange does not run, at once, logging once per outage
        when Redis is unreachable (fire-and-forget messages, as Node)."""
        if self._tg is not None:
            self.publish_soon(channel, data)
            return
        try:
            await self.publish(channel, data)
        except ClusterError as e:
            self._log_down(str(e))

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
                conn = await self._publisher()
                with anyio.fail_after(self.requests_timeout):
                    await conn.pipeline(batch)
            except CONNECTION_ERRORS as e:
                await self._drop_publisher()
                self._log_down(str(self.address.unreachable(e)))

    async def numsub(self, channel: str) -> int:
        """PUBSUB NUMSUB (SHARDNUMSUB): the connections listening on ``channel`` (one per server)."""
        reply = await self.command("PUBSUB", "SHARDNUMSUB" if self.sharded else "NUMSUB", channel)
        return int(reply[1])

    # ---- listening --------------------------------------------------------------------------------------------

    async def _subscribe(self) -> RespConnection:
        """A new listening connection, subscribed to everything wanted now (confirmed by Redis)."""
        conn = await RespConnection.open(self.address, self.connect_timeout)
        async with self._sub_lock:
            self._sub = conn
            self._changes.clear()  # what they asked for is in the subscriptions sent now
            subscriptions: list[Command] = [(command, key) for key, command in self._subscriptions.items()]
            if subscriptions:
                await conn.send_many(subscriptions)
        pending = len(subscriptions)
        while pending > 0:  # each channel and pattern is confirmed by a push
            reply = await conn.read()
            if isinstance(reply, list) and reply and reply[0] in _CONFIRMATIONS:
                pending -= 1
            else:
                await self._on_push(reply)
        return conn

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        delay = 0.05
        started = False
        while True:
            try:
                conn = await self._subscribe()
                self.subscribed.set()
                if self._down_logged:
                    logger.warning("Redis at %s:%d is back", self.address.host, self.address.port)
                self._down_logged = False
                delay = 0.05
                if not started:
                    started = True
                    task_status.started()
                while True:
                    await self._on_push(await conn.read())
            except CONNECTION_ERRORS as e:
                if not started:
                    raise self.address.unreachable(e) from e
                self._log_down(str(self.address.unreachable(e)), "serving local clients, reconnecting")
            finally:
                if self.subscribed.is_set():
                    self.subscribed = anyio.Event()
                conn_, self._sub = self._sub, None
                await close_quietly(conn_)
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
