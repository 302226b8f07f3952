"""The workers' bus transport without workers: bus ends in a temporary directory, and raw sockets as peers that
never read (a worker stopped, or hung in a handler)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import struct
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pytest

from anysio.ipc import Bus


@pytest.fixture
def bus_dir() -> Iterator[Path]:
    # Short: a unix socket's path must fit in 108 bytes, which pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="anysio-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.anyio
async def test_a_malformed_message_is_logged_once_and_dropped(bus_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="anysio")
    bus = Bus(str(bus_dir), 0, 2)
    heard: list[Any] = []
    got = anyio.Event()

    def on_ping(msg: dict[str, Any]) -> None:
        heard.append(msg["n"])
        if len(heard) == 2:
            got.set()

    bus.on("ping", on_ping)
    bad = [b"not json", b"\xff\xfe", b"[1, 2]", b'{"no": "kind"}', b'{"t": "reply"}', b'{"t": 7}']
    async with anyio.create_task_group() as tg:
        await tg.start(bus.serve)
        async with await anyio.connect_unix(bus_dir / "b0.sock") as stream:
            await stream.send(frame(json.dumps({"t": "ping", "n": 1}).encode()))
            for body in bad:
                await stream.send(frame(body))
            # The same stream, after the bad messages: still read.
            await stream.send(frame(json.dumps({"t": "ping", "n": 2}).encode()))
            with anyio.fail_after(5):
                await got.wait()
        tg.cancel_scope.cancel()
    assert heard == [1, 2]
    dropped = [r for r in caplog.records if "malformed bus message" in r.getMessage()]
    assert len(dropped) == len(bad), [r.getMessage() for r in caplog.records]


class LogEvent(logging.Handler):
    """Sets an event when the "anysio" logger says ``text``: what the bus does in its own tasks, awaited."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = anyio.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.event.set()


@contextmanager
def log_event(text: str) -> Iterator[LogEvent]:
    handler = LogEvent(text)
    logger = logging.getLogger("anysio")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class Heard:
    """A real bus end that records the "ping" messages it reads."""

    def __init__(self, bus_dir: Path, index: int, workers: int) -> None:
        self.bus = Bus(str(bus_dir), index, workers)
        self.heard: list[Any] = []
        self.more = anyio.Event()
        self.bus.on("ping", self.on_ping)

    def on_ping(self, msg: dict[str, Any]) -> None:
        self.heard.append(msg["n"])
        self.more.set()

    async def until(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.heard) < count:
                self.more = anyio.Event()
                await self.more.wait()


@asynccontextmanager
async def deaf_peer(bus_dir: Path, index: int) -> AsyncIterator[None]:
    """A worker's bus socket that accepts streams and never reads them (a worker stopped, or hung)."""
    accepted: list[anyio.abc.SocketStream] = []
    async with (
        await anyio.create_unix_listener(bus_dir / f"b{index}.sock") as listener,
        anyio.create_task_group() as tg,
    ):

        async def accept() -> None:
            while True:
                accepted.append(await listener.accept())

        tg.start_soon(accept)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
            for stream in accepted:
                await stream.aclose()


@pytest.fixture
def quick_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anysio.ipc.SEND_TIMEOUT", 0.3)
    monkeypatch.setattr("anysio.ipc.PROBE_INTERVAL", 0.1)
    monkeypatch.setattr("anysio.ipc.MAX_QUEUED", 1_000_000)


@pytest.mark.anyio
@pytest.mark.usefixtures("quick_bus")
async def test_a_peer_that_stops_reading_is_cut_off_at_once_and_the_others_are_not_held_up(bus_dir: Path) -> None:
    bus, healthy = Bus(str(bus_dir), 0, 3), Heard(bus_dir, 2, 3)
    async with anyio.create_task_group() as tg:
        await tg.start(bus.serve)
        await tg.start(healthy.bus.serve)
        with log_event("does not read its bus") as cut:
            async with deaf_peer(bus_dir, 1):
                with anyio.fail_after(1):
                    # 6 MB for the deaf peer: its socket takes some, its queue MAX_QUEUED, and then it is cut
                    # off. No send waits for it (each waited SEND_TIMEOUT, behind a lock, before).
                    for n in range(60):
                        await bus.send(1, {"t": "ping", "n": n, "blob": "x" * 100_000})
                        assert await bus.send(2, {"t": "ping", "n": n})
                await healthy.until(60)
                assert healthy.heard == list(range(60)), "every message, in order, to the worker that reads"
                assert cut.count == 1, "logged once"
                assert not await bus.send(1, {"t": "ping", "n": -1}), "dropped while cut off"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.usefixtures("quick_bus")
async def test_a_peer_that_reads_nothing_for_the_send_timeout_is_cut_off_until_it_answers_a_probe(
    bus_dir: Path,
) -> None:
    bus = Bus(str(bus_dir), 0, 2)
    async with anyio.create_task_group() as tg:
        await tg.start(bus.serve)
        with log_event("does not read its bus") as cut, log_event("reads its bus again") as back:
            async with deaf_peer(bus_dir, 1):
                for n in range(8):  # more than its socket takes, less than MAX_QUEUED
                    assert await bus.send(1, {"t": "ping", "n": n, "blob": "x" * 100_000})
                with anyio.fail_after(5):
                    await cut.event.wait()
                assert not await bus.send(1, {"t": "ping", "n": -1})
            # The worker reads again (here: a live bus end on its socket): the next probe finds it.
            peer = Heard(bus_dir, 1, 2)
            await tg.start(peer.bus.serve)
            with anyio.fail_after(5):
                await back.event.wait()
            assert cut.count == back.count == 1
        assert await bus.send(1, {"t": "ping", "n": 100})
        await peer.until(1)
        assert peer.heard == [100], "what was sent while it was cut off was dropped"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_restarted_peer_gets_the_next_message(bus_dir: Path) -> None:
    bus = Bus(str(bus_dir), 0, 2)
    async with anyio.create_task_group() as tg:
        await tg.start(bus.serve)
        for life in range(3):  # the peer, then two restarts: each time the dead stream is replaced
            peer = Heard(bus_dir, 1, 2)
            async with anyio.create_task_group() as peer_tg:
                await peer_tg.start(peer.bus.serve)
                assert await bus.send(1, {"t": "ping", "n": life})
                await peer.until(1)
                peer_tg.cancel_scope.cancel()  # the peer dies: its streams close
            assert peer.heard == [life]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_handing_off_to_an_owner_that_accepts_nothing_never_blocks(
    bus_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anysio")
    bus = Bus(str(bus_dir), 0, 2)
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # a stopped owner: never accepts, never reads
    owner.bind(str(bus_dir / "h1.sock"))
    owner.listen(0)
    pairs = [socket.socketpair() for _ in range(500)]

    def hand_all_off() -> None:
        for ours, _ in pairs:
            bus.hand_off(ours.detach(), 1)

    try:
        with anyio.fail_after(5):
            # In a thread: a blocking connect (as before) would block it for good, not the test.
            await anyio.to_thread.run_sync(hand_all_off, abandon_on_cancel=True)
        failed = [r for r in caplog.records if "handing connections to worker 1 fails" in r.getMessage()]
        assert len(failed) == 1, "the owner's full queue is logged once, not per connection"
    finally:
        owner.close()
        for _, theirs in pairs:
            theirs.close()
