"""The transport between the worker processes of one machine: unix sockets in a private directory.

Each worker listens on two unix sockets there: ``h<i>.sock`` (SOCK_SEQPACKET) receives client connections handed
over by other workers (their file descriptors, SCM_RIGHTS), and ``b<i>.sock`` (a stream) receives bus messages. A
message is a 4-byte length and a JSON object whose ``t`` names its kind; ``Bus.on(kind, handler)`` routes them, and
``request``/``reply`` gather answers from every other worker. What the messages say is the bus adapter's business
(``anysio.adapters.bus``).

Nothing here waits on another worker: a message is written at once or queued (bounded) for a task that writes it
as that worker reads. A worker that stops reading (stopped, hung in a handler) is cut off, its messages dropped,
until a probe shows it answers again; one that died is reconnected to when it is back. So a faulty worker never
holds up the others' clients.
"""

from __future__ import annotations

import array
import json
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

logger = logging.getLogger("anysio")
Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[None] | None]
#: A worker that reads nothing of what waits for it this long (stopped, or hung) is cut off.
SEND_TIMEOUT = 2.0
#: The most bytes that may wait for one worker; past that it is cut off at once.
MAX_QUEUED = 16 * 1024 * 1024
#: How often a cut-off worker is asked whether it reads again (and how long it may take to answer).
PROBE_INTERVAL = 1.0


def _parse(body: bytes) -> Message | None:
    """A bus message: a JSON object with a string kind ``t`` (and an integer ``req`` when it is a reply), or None."""
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; nesting deeper than the stack
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        return None
    if msg["t"] == "reply" and not isinstance(msg.get("req"), int):
        return None
    return msg


class _Outbox:
    """The stream to one other worker, written without waiting: what the socket does not take at once waits in
    ``pending`` (at most MAX_QUEUED bytes) for ``Bus._drain``. A worker that leaves it unread is cut off: what
    waits for it is dropped, and so is every message after, until a probe shows it answers again."""

    def __init__(self, index: int, path: Path) -> None:
        self.index = index
        self.path = path
        self.sock: socket.socket | None = None
        self.pending: deque[memoryview] = deque()
        self.queued = 0
        self.cut_off = False
        self._queued_event = anyio.Event()
        self._waiting: anyio.CancelScope | None = None  # while ``flush`` waits on the socket

    def connect(self) -> bool:
        """A new stream to the worker, without waiting; False when nobody listens there (dead, restarting) or
        its backlog is full (it accepts nothing)."""
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            return False
        self.sock = sock
        return True

    def close(self) -> None:
        """Drop the stream and what waits for it (a frame cut in two cannot go on another stream)."""
        sock, self.sock = self.sock, None
        self.pending.clear()
        self.queued = 0
        if sock is None:
            return
        if self._waiting is not None:
            # ``flush`` waits on this socket: it closes it once it stops waiting (closing a descriptor that an
            # event loop watches is not safe on every backend).
            self._waiting.cancel()
        else:
            sock.close()

    def post(self, frame: bytes, probe: bool = False) -> bool:
        if self.cut_off and not probe:
            return False
        if self.pending:  # behind what waits already, to keep the order
            if self.queued + len(frame) > MAX_QUEUED:
                self.cut(f"{self.queued} bytes unread")
                return False
            self._queue(memoryview(frame))
            return True
        for _ in range(2):
            if self.sock is None and not self.connect():
                return False
            assert self.sock is not None
            try:
                sent = self.sock.send(frame, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                sent = 0
            except OSError:
                # EPIPE, ECONNRESET: the worker died, and may have restarted since: a new stream, once.
                self.close()
                continue
            if sent < len(frame):
                self._queue(memoryview(frame)[sent:])
            return True
        return False

    def _queue(self, data: memoryview) -> None:
        self.pending.append(data)
        self.queued += len(data)
        self._queued_event.set()

    async def wait_queued(self) -> None:
        await self._queued_event.wait()
        self._queued_event = anyio.Event()

    async def flush(self, timeout: float) -> bool:
        """Write what waits as the worker reads it. False when it read nothing for ``timeout``; True when all is
        written, or the stream broke or was closed (what waited is dropped: the next message connects anew)."""
        while self.pending and self.sock is not None:
            sock = self.sock
            with anyio.move_on_after(timeout) as waited:
                self._waiting = waited
                try:
                    await anyio.wait_writable(sock)
                finally:
                    self._waiting = None
            if sock is not self.sock:  # closed meanwhile (cut off, or replaced): ours to close
                sock.close()
                return True
            if waited.cancelled_caught:
                return False
            try:
                sent = sock.send(self.pending[0], socket.MSG_NOSIGNAL)
            except BlockingIOError:
                continue
            except OSError:
                self.close()
                return True
            self.queued -= sent
            if sent == len(self.pending[0]):
                self.pending.popleft()
            else:
                self.pending[0] = self.pending[0][sent:]
        return True

    def cut(self, why: str) -> None:
        """Stop writing to a worker that does not read: its messages are dropped, not awaited."""
        self.close()
        self.cut_off = True
        self._queued_event.set()  # ``Bus._drain`` starts probing
        logger.warning("worker %d does not read its bus (%s): cut off, its messages dropped", self.index, why)

    def restore(self) -> None:
        self.cut_off = False
        logger.warning("worker %d reads its bus again: its messages are delivered again", self.index)


class _Status(anyio.abc.TaskStatus[None]):
    """A task's status that remembers whether the task said it started."""

    def __init__(self, status: anyio.abc.TaskStatus[None]) -> None:
        self.status = status
        self.done = False

    def started(self, value: None = None) -> None:
        self.done = True
        self.status.started(value)


class Bus:
    """One worker's end of the bus."""

    def __init__(self, directory: str, index: int, workers: int) -> None:
        self.dir = Path(directory)
        self.index = index
        self.workers = workers
        self.peers = [i for i in range(workers) if i != index]
        self._outboxes: dict[int, _Outbox] = {}
        self._handlers: dict[str, Handler] = {"probe": self._answer_probe}
        # SOCK_SEQPACKET keeps one message per descriptor and, unlike datagrams, has no 10-message queue limit.
        self._handoff = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = self.dir / f"h{index}.sock"
        path.unlink(missing_ok=True)
        self._handoff.bind(str(path))
        self._handoff.listen(64)
        self._handoff.setblocking(False)
        self._handoff_out: dict[int, socket.socket] = {}
        self._handoff_failing: set[int] = set()
        self._next_request = 0
        self._replies: dict[int, Callable[[Message], None]] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    # ---- connections handed over ---------------------------------------------------------------------------

    def hand_off(self, fd: int, owner: int) -> None:
        """Give a client connection to the worker that owns its session; our copy is closed either way. Never
        waits: when the owner takes nothing (stopped, hung), the client's request fails and the client retries,
        as after any network error."""
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        error: OSError | None = None
        try:
            for _ in range(2):
                try:
                    self._handoff_socket(owner).sendmsg([b"c"], rights)
                    self._handoff_failing.discard(owner)
                    return
                except BlockingIOError as e:
                    error = e
                    break
                except OSError as e:  # the owner may have restarted: reconnect once
                    error = e
                    out = self._handoff_out.pop(owner, None)
                    if out is not None:
                        out.close()
            if owner not in self._handoff_failing:  # once per outage
                self._handoff_failing.add(owner)
                logger.warning("handing connections to worker %d fails (%s): their clients retry", owner, error)
        finally:
            os.close(fd)

    def _handoff_socket(self, owner: int) -> socket.socket:
        out = self._handoff_out.get(owner)
        if out is None:
            out = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            out.setblocking(False)  # before connect: a stopped owner's full backlog must not block this worker
            try:
                out.connect(str(self.dir / f"h{owner}.sock"))
            except OSError:
                out.close()
                raise
            self._handoff_out[owner] = out
        return out

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
        try:
            async with listener, anyio.create_task_group() as tg:
                self._tg = tg
                for box in self._outboxes.values():  # messages sent before the bus served
                    tg.start_soon(self._drain, box)
                task_status.started()
                while True:
                    stream = await listener.accept()
                    tg.start_soon(self._read, stream)
        finally:
            self._tg = None
            for box in self._outboxes.values():
                box.close()

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
        """Deliver to one worker without waiting: written now, or queued behind what it has not read yet. False
        when it cannot be reached (dead, restarting) or is cut off: the message is dropped either way."""
        box = self._outbox(peer)
        if box.pending:
            # Behind already: let this worker's other tasks (the one writing to that worker among them) run.
            await anyio.lowlevel.checkpoint()
        return box.post(self._frame(msg))

    @staticmethod
    def _frame(msg: Message) -> bytes:
        data = json.dumps(msg, separators=(",", ":")).encode()
        return struct.pack(">I", len(data)) + data

    def _outbox(self, peer: int) -> _Outbox:
        box = self._outboxes.get(peer)
        if box is None:
            box = self._outboxes[peer] = _Outbox(peer, self.dir / f"b{peer}.sock")
            if self._tg is not None:
                self._tg.start_soon(self._drain, box)
        return box

    async def _drain(self, box: _Outbox) -> None:
        """Write what ``box`` queued as its worker reads it; cut the worker off when it reads nothing for
        SEND_TIMEOUT, then probe it until it answers again. The only task that waits on that worker."""
        while True:
            await box.wait_queued()
            if not await box.flush(SEND_TIMEOUT) and not box.cut_off:
                box.cut(f"read nothing for {SEND_TIMEOUT:g} s")
            while box.cut_off:
                await anyio.sleep(PROBE_INTERVAL)
                await self._probe(box)

    async def _probe(self, box: _Outbox) -> None:
        """Ask a cut-off worker, on a new stream, whether it reads again; if it answers, that stream is its."""
        if not box.connect():
            return
        req = self._next_request = self._next_request + 1
        answered = anyio.Event()
        self._replies[req] = lambda reply: answered.set()
        try:
            if box.post(self._frame({"t": "probe", "req": req, "from": self.index}), probe=True):
                with anyio.move_on_after(PROBE_INTERVAL):
                    await answered.wait()
        finally:
            del self._replies[req]
        if answered.is_set():
            box.restore()
        else:
            box.close()

    async def _answer_probe(self, msg: Message) -> None:
        await self.reply(msg, {})

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

    async def ask(self, peer: int, msg: Message, timeout: float) -> Message | None:
        """Ask one worker and return its reply, or None when it cannot be reached or does not answer in time."""
        req = self._next_request = self._next_request + 1
        answer: list[Message] = []
        done = anyio.Event()

        def resolve(reply: Message) -> None:
            answer.append(reply)
            done.set()

        self._replies[req] = resolve
        try:
            if not await self.send(peer, {**msg, "req": req, "from": self.index}):
                return None
            with anyio.move_on_after(timeout):
                await done.wait()
        finally:
            del self._replies[req]
        return answer[0] if answer else None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the bus's task group (a handler that must not hold up the messages after it). It
        fails alone, as a handler does: an exception there (a malformed message's) would end the whole bus."""
        if self._tg is not None:
            self._tg.start_soon(self._guarded, fn, args)

    @staticmethod
    async def _guarded(fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception:
            logger.exception("bus task %s failed", getattr(fn, "__name__", fn))

    async def start(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args, task_status=...)`` in the bus's task group, and return once it says it started: a
        handler that does its part in order and then waits, without holding up the messages after it."""
        if self._tg is not None:
            await self._tg.start(self._guarded_start, partial(fn, *args))

    @staticmethod
    async def _guarded_start(
        fn: Callable[..., Coroutine[Any, Any, Any]], *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """What fails before ``started()`` goes to the caller (the handler, which logs it); what fails after, here,
        alone: either way the bus serves on."""
        status = _Status(task_status)
        try:
            await fn(task_status=status)
        except Exception:
            if not status.done:
                raise
            logger.exception("bus task %s failed", getattr(fn, "__name__", fn))

    async def reply(self, request: Message, body: Message) -> None:
        await self.send(request["from"], {**body, "t": "reply", "req": request["req"]})
