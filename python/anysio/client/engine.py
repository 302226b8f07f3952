"""One Engine.IO session of the client, as engine.io-client runs it: the handshake (long-polling, or a WebSocket
alone), the polling GET and POST loops, the upgrade (probe, pause polling, ``5``), the heartbeat's timeout.

The protocol is ``_native.ClientCore``'s; this module moves its bytes and keeps its timers."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc

from .._native import ClientCore
from .http import HttpConnection, HttpError, Refused, Target, open_websocket, reader, request, send_now, server_message

if TYPE_CHECKING:
    from .._native import ClientEvent

logger = logging.getLogger("anysio.client")

_READ = 65536
#: Closing writes its last packets (the DISCONNECT, the close packet) within this long.
_GOODBYE = 2.0


async def _handshake(target: Target) -> bytes:
    """The polling handshake's answer: the open packet, maybe with more."""
    conn = HttpConnection(target)
    try:
        response = await request(conn, "GET", "EIO=4&transport=polling")
    finally:
        await conn.aclose()
    if response.status != 200:
        raise Refused(server_message(response.status, response.body))
    return response.body


class EngineConnection:
    """An open session. ``run`` moves its bytes until it closes and returns Node's reason: "transport close",
    "transport error", "ping timeout", "parse error", or the one given to ``close``."""

    def __init__(
        self,
        target: Target,
        core: ClientCore,
        handshake: ClientEvent,
        deliver: Callable[[list[ClientEvent]], None],
        *,
        upgrade: bool,
        timeout: float,
    ) -> None:
        _, self.sid, upgrades, interval, ping_timeout, _max = handshake  # type: ignore[misc]
        self._target = target
        self.core = core
        self._deliver = deliver
        self._upgrade_wanted = upgrade and "websocket" in upgrades and core.transport == "polling"
        self._timeout = timeout
        self._silence = (interval + ping_timeout) / 1000
        self._last = time.monotonic()
        self._early: list[ClientEvent] = []
        self._ws: anyio.abc.ByteStream | None = None
        self._get = HttpConnection(target)
        self._post = HttpConnection(target)
        self._post_lock = anyio.Lock()
        self._wake = anyio.Event()
        self._write_wake = anyio.Event()
        self._pausing = False
        self._polling_stopped = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._reason: str | None = None
        self._goodbye = False

    @classmethod
    async def open(
        cls,
        target: Target,
        transports: Sequence[str],
        deliver: Callable[[list[ClientEvent]], None],
        timeout: float,
        parser: Literal["default", "msgpack"] = "default",
    ) -> EngineConnection:
        """The handshake. Raises Refused (the server's message), HttpError, OSError, ValueError (not
        Engine.IO), TimeoutError."""
        with anyio.fail_after(timeout):
            stream = None
            if transports[0] == "polling":
                core = ClientCore("polling", parser)
                events = core.feed_polling(await _handshake(target))
            else:
                core = ClientCore("websocket", parser)
                stream, data = await open_websocket(target, "EIO=4&transport=websocket")
                try:
                    events = core.feed_websocket(data)
                    while not events:
                        events = core.feed_websocket(await stream.receive(_READ))
                except BaseException:
                    await stream.aclose()
                    raise
        engine = cls(target, core, events[0], deliver, upgrade="websocket" in transports, timeout=timeout)
        engine._ws = stream
        engine._early = events[1:]
        return engine

    @property
    def transport(self) -> str:
        return self.core.transport

    @property
    def writable(self) -> bool:
        """Whether a packet queued now leaves at once (engine.io-client's ``transport.writable``): on the
        WebSocket, or on long-polling with no POST in flight (nor an upgrade under way)."""
        if self._reason is not None:
            return False
        return self.core.transport == "websocket" or not self._post_lock.locked()

    def close(self, reason: str, goodbye: bool = False) -> None:
        """End the session (``goodbye``: send the close packet, as the client does when it disconnects)."""
        if self._reason is None:
            self._reason = reason
            self._goodbye = goodbye
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> str:
        with anyio.CancelScope() as self._scope:
            if self._reason is not None:
                self._scope.cancel()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat)
                if self._ws is not None:
                    tg.start_soon(self._read_websocket)
                    tg.start_soon(self._write_websocket)
                else:
                    tg.start_soon(self._poll)
                    tg.start_soon(self._post_loop)
                    if self._upgrade_wanted:
                        tg.start_soon(self._upgrade)
                self._receive(self._early)
                self.flush()
        await self._finish()
        return self._reason or "transport close"

    def flush(self) -> None:
        """Have what the core queued written: by the POST loop on polling, by the writer on the WebSocket (which
        takes every packet queued by then: emits made together leave in one write)."""
        if self.core.transport == "polling":
            self._wake.set()
        else:
            self._write_wake.set()

    async def _write_websocket(self) -> None:
        assert self._ws is not None
        direct = send_now(self._ws)
        while True:
            await self._write_wake.wait()
            self._write_wake = anyio.Event()
            data = self.core.take_frames()
            if data:
                try:
                    if direct is not None:
                        rest = direct(data)
                        if not rest:
                            continue
                        data = bytes(rest)  # the socket was full: rare, and then the copy is the least of it
                    # Written whole or not at all: the packets are out of the core, and a close cancels this task.
                    with anyio.move_on_after(self._timeout, shield=True):
                        await self._ws.send(data)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self.close("transport close")
                    return

    def _receive(self, events: list[ClientEvent]) -> None:
        self._last = time.monotonic()
        for i, event in enumerate(events):
            if event[0] == "close":
                # What came before the close packet (a DISCONNECT, the last events) is delivered first.
                if i:
                    self._deliver(events[:i])
                self.close("transport close")
                return
        if events:
            self._deliver(events)

    def _feed(self, feed: Callable[[bytes], list[ClientEvent]], data: bytes) -> bool:
        try:
            events = feed(data)
        except ValueError as e:
            logger.warning("the server broke the protocol (%s): closing", e)
            self.close("parse error")
            return False
        self._receive(events)
        return True

    async def _heartbeat(self) -> None:
        while True:
            deadline = self._last + self._silence
            now = time.monotonic()
            if now >= deadline:
                self.close("ping timeout")
                return
            await anyio.sleep(deadline - now)

    async def _read_websocket(self) -> None:
        assert self._ws is not None
        if not self._feed(self.core.feed_websocket, b""):
            return
        receive = reader(self._ws)
        while True:
            try:
                data = await receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self.close("transport close")
                return
            if not self._feed(self.core.feed_websocket, data):
                return
            self.flush()

    def _query(self) -> str:
        return f"EIO=4&transport=polling&sid={self.sid}"

    async def _poll(self) -> None:
        try:
            while not self._pausing:
                response = await request(self._get, "GET", self._query())
                if response.status != 200:
                    logger.info("a polling GET was answered %d: closing", response.status)
                    self.close("transport error")
                    return
                if not self._feed(self.core.feed_polling, response.body):
                    return
                self.flush()
        except (OSError, HttpError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            logger.info("a polling GET failed (%s): closing", e)
            self.close("transport error")
        finally:
            self._polling_stopped.set()

    async def _post_loop(self) -> None:
        while self.core.transport == "polling":
            await self._wake.wait()
            self._wake = anyio.Event()
            async with self._post_lock:
                await self._post_queued()

    async def _post_queued(self) -> None:
        body = self.core.take_payload() if self.core.transport == "polling" else None
        if body is None:
            return
        response = None
        try:
            # As the WebSocket's writes: a POST under way finishes, so a close never loses its packets.
            with anyio.move_on_after(self._timeout, shield=True):
                response = await request(self._post, "POST", self._query(), body)
        except (OSError, HttpError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            logger.info("a polling POST failed (%s): closing", e)
            self.close("transport error")
            return
        if response is None or response.status != 200:
            logger.info("a polling POST was answered %s: closing", response.status if response else "too late")
            self.close("transport error")

    async def _upgrade(self) -> None:
        """As engine.io-client: probe a WebSocket, pause polling (its GET ends with the noop the server sends
        for the probe), send ``5`` and move what waited onto the WebSocket. A failed probe keeps polling."""
        try:
            with anyio.fail_after(self._timeout):
                stream, data = await open_websocket(self._target, f"EIO=4&transport=websocket&sid={self.sid}")
                try:
                    await stream.send(self.core.probe_frame())
                    while not self.core.feed_probe(data):
                        data = await stream.receive(_READ)
                except BaseException:
                    await stream.aclose()
                    raise
        except (OSError, HttpError, ValueError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError) as e:
            logger.info("the upgrade to WebSocket failed (%s): staying on long-polling", e)
            return
        self._pausing = True
        async with self._post_lock:
            await self._post_queued()
            await self._polling_stopped.wait()
            self.core.upgrade()
            self._ws = stream
        self._wake.set()  # the POST loop sees the WebSocket and ends
        await self._get.aclose()
        await self._post.aclose()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_websocket)
            tg.start_soon(self._write_websocket)
            self.flush()

    async def _finish(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_GOODBYE):
            if self._goodbye:
                if self.core.transport == "polling":
                    # As engine.io-client: the close packet only once what was queued is written (Node hands a
                    # payload's Socket.IO packets on a tick later, so a DISCONNECT beside it would be lost).
                    await self._post_queued()
                    self.core.close()
                    await self._post_queued()
                elif self._ws is not None:
                    self.core.close()
                    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await self._ws.send(self.core.take_frames())
            if self._ws is not None:
                await self._ws.aclose()
            await self._get.aclose()
            await self._post.aclose()
