"""The transport between the worker processes of one machine: unix sockets in a private directory.

Each worker listens on two unix sockets there: ``h<i>.sock`` (SOCK_SEQPACKET) receives client connections handed
over by other workers (their file descriptors, SCM_RIGHTS), and ``b<i>.sock`` (a stream) receives bus messages. A
message is a 4-byte length and a JSON object whose ``t`` names its kind; ``Bus.on(kind, handler)`` routes them, and
``request``/``reply`` gather answers from every other worker. What the messages say is the bus adapter's business
(``anysio.adapters.bus``).
"""

from __future__ import annotations

import array
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

logger = logging.getLogger("anysio")
Message = dict[str, Any]
#: How long a bus message may wait for a worker to read it before that worker is cut off.
SEND_TIMEOUT = 2.0


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
        self._tg: anyio.abc.TaskGroup | None = None

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
            self._tg = tg
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
        """Deliver to one worker; False when it cannot be reached. A stream to a worker that died (and may have
        been restarted since) is replaced once. A worker that does not read within SEND_TIMEOUT (stopped, or
        hung) is cut off rather than waited on: its stream is dropped, and the next message connects anew."""
        data = json.dumps(msg, separators=(",", ":")).encode()
        lock = self._out_lock.setdefault(peer, anyio.Lock())
        async with lock:
            for _ in range(2):
                stream = self._out.get(peer)
                try:
                    with anyio.fail_after(SEND_TIMEOUT):
                        if stream is None:
                            stream = self._out[peer] = await anyio.connect_unix(self.dir / f"b{peer}.sock")
                        await stream.send(struct.pack(">I", len(data)) + data)
                    return True
                except TimeoutError:
                    logger.warning("worker %d does not read its bus messages; cut off", peer)
                    await self._drop(peer)
                    return False
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._drop(peer)
            return False

    async def _drop(self, peer: int) -> None:
        stream = self._out.pop(peer, None)
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

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

    async def reply(self, request: Message, body: Message) -> None:
        await self.send(request["from"], {**body, "t": "reply", "req": request["req"]})
