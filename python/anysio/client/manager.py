"""The connection to one server and the namespaces on it, as socket.io-client's Manager: the Engine.IO session,
its sockets' CONNECT packets, and reconnection with backoff and jitter.

The Manager runs in a task of its own (started by the first ``connect``), so that ``await client.connect()``
returns while the connection goes on, as with every Socket.IO client; ``async with`` bounds it."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import sniffio

from ..exceptions import ConnectionError
from .engine import EngineConnection
from .http import HttpError, Refused, Target

if TYPE_CHECKING:
    from .._native import ClientEvent

logger = logging.getLogger("anysio.client")

_tasks: set[asyncio.Task[None]] = set()


def spawn_detached(fn: Callable[[], Awaitable[None]]) -> None:
    """Start ``fn`` in a task that outlives its caller: asyncio's ``create_task``, trio's system task (which the
    run cancels when its main task ends). ``fn`` must not raise."""
    if sniffio.current_async_library() == "trio":
        import trio  # only on trio, where it is installed

        trio.lowlevel.spawn_system_task(fn)
        return
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(fn())  # type: ignore[arg-type]
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class Backoff:
    """socket.io-client's backoff (backo2): ``min * 2**attempts``, moved by up to ``jitter`` of itself either way,
    at most ``max`` (seconds)."""

    def __init__(self, min: float, max: float, jitter: float) -> None:
        self.min, self.max, self.jitter = min, max, jitter
        self.attempts = 0

    def duration(self) -> float:
        ms = self.min * 1000 * 2 ** min(self.attempts, 64)
        self.attempts += 1
        if self.jitter:
            rand = random.random()
            deviation = math.floor(rand * self.jitter * ms)
            ms = ms - deviation if math.floor(rand * 10) & 1 == 0 else ms + deviation
        return int(min(ms, self.max * 1000)) / 1000

    def reset(self) -> None:
        self.attempts = 0


class ManagedSocket(Protocol):
    """What the Manager needs of a namespace's socket (``socket.Client``)."""

    wanted: bool

    def connect_packet(self) -> str | None: ...
    def on_packet(self, event: ClientEvent) -> None: ...
    def on_close(self, reason: str) -> None: ...
    def on_open_failed(self, error: ConnectionError, final: bool) -> None: ...
    def on_stopped(self) -> None: ...


class Manager:
    """One server: one Engine.IO session at a time, shared by the namespaces' sockets."""

    def __init__(
        self,
        target: Target,
        *,
        transports: Sequence[str],
        reconnection: bool,
        reconnection_attempts: int | None,
        reconnection_delay: float,
        reconnection_delay_max: float,
        randomization_factor: float,
        timeout: float,
    ) -> None:
        self.target = target
        self.transports = tuple(transports)
        self.reconnection = reconnection
        self.reconnection_attempts = math.inf if reconnection_attempts is None else reconnection_attempts
        self.backoff = Backoff(reconnection_delay, reconnection_delay_max, randomization_factor)
        self.timeout = timeout
        self.sockets: dict[str, ManagedSocket] = {}
        self.engine: EngineConnection | None = None
        self._running = False
        self._stopping = False
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._retry_first = True
        self._opened_once = False

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run a handler in the Manager's task group (it outlives reconnections)."""
        assert self._tasks is not None
        self._tasks.start_soon(fn, *args)

    def start(self, socket: ManagedSocket, retry: bool = True) -> None:
        """``socket`` wants to be connected: CONNECT now if the session is open, else when it opens. Without
        ``retry``, a first connection that fails is final."""
        self._stopping = False
        self._retry_first = retry
        if self.engine is not None:
            self.send_connect(socket)
        if not self._running:
            self._running = True
            self._done = anyio.Event()
            spawn_detached(self._main)

    def send_connect(self, socket: ManagedSocket) -> None:
        if self.engine is None:
            return
        nsp = next(n for n, s in self.sockets.items() if s is socket)
        self.engine.core.connect(nsp, socket.connect_packet())
        self.flush_soon()

    def flush_soon(self) -> None:
        """Write what was queued from a synchronous caller (a handler's ack, a CONNECT)."""
        if self.engine is not None and self._tasks is not None:
            self._tasks.start_soon(self.engine.flush)

    async def flush(self) -> None:
        if self.engine is not None:
            await self.engine.flush()

    async def release(self) -> None:
        """A socket left: when none is wanted any more, close the session ("io client disconnect") and wait."""
        if any(s.wanted for s in self.sockets.values()) or not self._running:
            return
        self._stopping = True
        if self.engine is not None:
            self.engine.close("io client disconnect", goodbye=True)
        elif self._scope is not None:
            self._scope.cancel()
        await self._done.wait()

    async def wait(self) -> None:
        """Until the Manager stops (every socket disconnected, or reconnection given up)."""
        if self._running:
            await self._done.wait()

    async def _main(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tasks = tg
                with anyio.CancelScope() as self._scope:
                    await self._connection_loop()
                tg.cancel_scope.cancel()
        except Exception:
            logger.exception("the client's connection failed")
        finally:
            self._running = False
            self.engine = None
            self._tasks = None
            for socket in list(self.sockets.values()):
                socket.on_stopped()
            self._done.set()

    async def _connection_loop(self) -> None:
        while not self._stopping:
            try:
                engine = await EngineConnection.open(self.target, self.transports, self._deliver, self.timeout)
            except (OSError, HttpError, ValueError, TimeoutError) as e:
                error = _connection_error(e, self.target)
                final = (
                    not self.reconnection
                    or self.backoff.attempts >= self.reconnection_attempts
                    or not (self._opened_once or self._retry_first)
                )
                for socket in list(self.sockets.values()):
                    if socket.wanted:
                        socket.on_open_failed(error, final)
                if final:
                    return
                await anyio.sleep(self.backoff.duration())
                continue
            self.backoff.reset()
            self._opened_once = True
            self.engine = engine
            for socket in self.sockets.values():
                if socket.wanted:
                    self.send_connect(socket)
            reason = await engine.run()
            self.engine = None
            for socket in list(self.sockets.values()):
                socket.on_close(reason)
            if self._stopping or not self.reconnection or not any(s.wanted for s in self.sockets.values()):
                return
            await anyio.sleep(self.backoff.duration())

    def _deliver(self, events: list[ClientEvent]) -> None:
        for event in events:
            if event[0] == "ping" or event[0] == "probed":
                continue
            socket = self.sockets.get(event[1])  # type: ignore[misc]
            if socket is not None:
                socket.on_packet(event)


def _connection_error(e: BaseException, target: Target) -> ConnectionError:
    if isinstance(e, Refused):
        return ConnectionError(str(e))
    if isinstance(e, TimeoutError):
        return ConnectionError("timeout")
    if isinstance(e, ValueError):
        error = ConnectionError(f"the server does not speak Engine.IO v4: {e}")
    elif isinstance(e, HttpError):
        error = ConnectionError(str(e))
    else:
        # anyio's "All connection attempts failed" has the OS's reason as its cause.
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
        error = ConnectionError(f"cannot connect to {target.host}:{target.port}: {cause}")
        e = cause
    error.__cause__ = e
    return error
