"""The connection to one server and the namespaces on it, as socket.io-client's Manager: the Engine.IO session,
its sockets' CONNECT packets, and reconnection with backoff and jitter.

The Manager runs in a task of its own (started by the first ``connect``), so that ``await client.connect()``
returns while the connection goes on, as with every Socket.IO client; ``async with`` bounds it."""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.abc

from ..exceptions import ConnectionError
from .engine import EngineConnection
from .http import HttpError, Refused, Target, asyncio_loop

if TYPE_CHECKING:
    from .._native import ClientEvent

logger = logging.getLogger("anysio.client")

_tasks: set[asyncio.Task[None]] = set()


def spawn_detached(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start ``fn`` in a task that outlives its caller: asyncio's ``create_task``, trio's system task (which the
    run cancels when its main task ends). ``fn`` must not raise."""
    loop = asyncio_loop()
    if loop is None:
        import trio  # only on trio, where it is installed

        trio.lowlevel.spawn_system_task(fn)
        return
    task = loop.create_task(fn())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class OneShot(Protocol):
    """An event set once: the running loop's own (a bare future on asyncio, ``trio.Event``), which costs a fraction
    of anyio's wrapper on an ack's path."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self) -> Awaitable[object]: ...


class _FutureShot:
    """A OneShot on asyncio: one future, nothing else."""

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def is_set(self) -> bool:
        return self._future.done()  # a cancelled wait counts as done: nothing waits any more

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def wait(self) -> Awaitable[None]:
        return self._future


class _TaskShot:
    """A OneShot on trio: the waiting task parked and rescheduled directly (trio.Event's parking lot does more
    than one waiter needs)."""

    __slots__ = ("_done", "_task", "_trio")

    def __init__(self, trio: Any) -> None:
        self._trio = trio.lowlevel
        self._done = False
        self._task: Any = None

    def is_set(self) -> bool:
        return self._done

    def set(self) -> None:
        if not self._done:
            self._done = True
            if self._task is not None:
                self._trio.reschedule(self._task)
                self._task = None

    async def wait(self) -> None:
        lowlevel = self._trio
        if self._done:
            await lowlevel.checkpoint()
            return
        self._task = lowlevel.current_task()

        def abort(_: Any) -> Any:
            self._task = None
            return lowlevel.Abort.SUCCEEDED

        await lowlevel.wait_task_rescheduled(abort)


def one_shot_factory() -> Callable[[], OneShot]:
    """New OneShots for the running loop."""
    loop = asyncio_loop()
    if loop is None:
        import trio  # only on trio, where it is installed

        return functools.partial(_TaskShot, trio)
    return functools.partial(_FutureShot, loop)


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


class Expiring(Protocol):
    """What a deadline ends: an ack's wait (``socket._Pending``)."""

    @property
    def done(self) -> OneShot: ...

    def expire(self) -> None: ...


class Deadlines:
    """The acks' timeouts in one task: a heap of deadlines, instead of a cancel scope around every wait (which
    costs as much as the rest of an ack's round trip). Entries whose wait ended are dropped when they come up, and
    all at once whenever the heap has doubled: at 40k acks/s with a 10 s timeout, dropping them only as they came up
    kept 400k answered acks (and their values) alive, and the garbage collector's passes over them cost a fifth of
    the client's CPU."""

    #: The heap's size at which the first sweep of answered entries happens.
    SWEEP_FROM = 1024

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expiring]] = []
        self._count = 0
        self._sweep_at = self.SWEEP_FROM
        self._wake = anyio.Event()

    def add(self, deadline: float, waiter: Expiring) -> None:
        """``deadline``: on ``time.monotonic()``'s clock (the event loop's would cost a backend lookup per ack)."""
        self._count += 1
        if len(self._heap) >= self._sweep_at:
            self._sweep()
        heapq.heappush(self._heap, (deadline, self._count, waiter))
        if self._heap[0][2] is waiter:
            self._wake.set()  # the earliest: the task's sleep is too long

    def __len__(self) -> int:
        return len(self._heap)

    def _sweep(self) -> None:
        """Drop every entry whose wait ended; the next sweep when what is left has doubled (amortised O(1))."""
        self._heap[:] = [entry for entry in self._heap if not entry[2].done.is_set()]
        heapq.heapify(self._heap)
        self._sweep_at = max(self.SWEEP_FROM, 2 * len(self._heap))

    async def run(self) -> None:
        heap = self._heap
        while True:
            while heap and heap[0][2].done.is_set():
                heapq.heappop(heap)
            self._wake = anyio.Event()
            if not heap:
                await self._wake.wait()
                continue
            delay = heap[0][0] - time.monotonic()
            if delay <= 0:
                heapq.heappop(heap)[2].expire()
                continue
            with anyio.move_on_after(delay):
                await self._wake.wait()


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
        parser: Literal["default", "msgpack"] = "default",
    ) -> None:
        self.target = target
        self.parser = parser
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
        self._deadlines: Deadlines | None = None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run a handler in the Manager's task group (it outlives reconnections)."""
        assert self._tasks is not None
        self._tasks.start_soon(fn, *args)

    def expire_at(self, deadline: float, waiter: Expiring) -> bool:
        """Have ``waiter.expire()`` called at ``deadline`` unless it is done by then; False when the Manager is
        not running (the caller times its wait itself)."""
        if self._tasks is None:
            return False
        if self._deadlines is None:
            self._deadlines = Deadlines()
            self._tasks.start_soon(self._deadlines.run)
        self._deadlines.add(deadline, waiter)
        return True

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
        self.flush()

    def flush(self) -> None:
        """Have what was queued written (a CONNECT, an ack)."""
        if self.engine is not None:
            self.engine.flush()

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
            self._deadlines = None
            for socket in list(self.sockets.values()):
                socket.on_stopped()
            self._done.set()

    async def _connection_loop(self) -> None:
        while not self._stopping:
            try:
                engine = await EngineConnection.open(
                    self.target, self.transports, self._deliver, self.timeout, self.parser
                )
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
