"""The workers' bus transport without workers: one bus end in a temporary directory, a raw stream as its peer."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
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


@pytest.mark.anyio
async def test_a_peer_that_stops_reading_is_cut_off_not_waited_on(
    bus_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("anysio.ipc.SEND_TIMEOUT", 0.2)
    caplog.set_level(logging.WARNING, logger="anysio")
    bus = Bus(str(bus_dir), 0, 2)
    accepted: list[anyio.abc.SocketStream] = []
    async with await anyio.create_unix_listener(bus_dir / "b1.sock") as listener, anyio.create_task_group() as tg:

        async def accept_and_never_read() -> None:
            accepted.append(await listener.accept())

        tg.start_soon(accept_and_never_read)
        big = {"t": "ping", "blob": "x" * 100_000}
        with anyio.fail_after(10):
            # Until the socket's buffers are full: then the send gives up after SEND_TIMEOUT.
            while await bus.send(1, big):
                pass
        assert any("cut off" in r.getMessage() for r in caplog.records)
        tg.cancel_scope.cancel()
    for stream in accepted:
        await stream.aclose()
