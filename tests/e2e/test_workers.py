"""N worker processes on one port, driven by the official socket.io-client with default settings.

Each run starts ``anysio run tests.e2e.apps.workers_app:sio --workers N`` (on the test's anyio backend) and:
100 polling-only clients exchange acked events with no error; 20 default clients upgrade to WebSocket; a broadcast
from one worker's handler reaches every client exactly once; ``fetch_sockets`` and a broadcast with ack see every
client; ``kill -9`` of one worker leaves the other workers' clients connected and its own clients come back.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

ROOT = Path(__file__).resolve().parents[2]
MANY = ROOT / "tests" / "node" / "sio_many.mjs"
pytestmark = pytest.mark.anyio


class Lines:
    """JSON lines from a child process's stdout, read on demand."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.stream = proc.stdout
        self.buf = b""
        self.seen: list[dict[str, Any]] = []

    async def next_line(self) -> str:
        while b"\n" not in self.buf:
            self.buf += await self.stream.receive()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    async def until(self, event: str) -> dict[str, Any]:
        while True:
            line = await self.next_line()
            if not line.startswith("{"):
                continue
            msg: dict[str, Any] = json.loads(line)
            self.seen.append(msg)
            if msg.get("event") == event:
                return msg

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send((json.dumps(cmd) + "\n").encode())


@asynccontextmanager
async def cluster(workers: int, backend: str) -> AsyncIterator[tuple[str, Lines]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "anysio.cli", "run", "tests.e2e.apps.workers_app:sio"]
    cmd += [f"--workers={workers}", "--port=0", f"--backend={backend}"]
    async with await anyio.open_process(cmd, env=env, stderr=None) as proc:
        try:
            lines = Lines(proc)
            with anyio.fail_after(30):
                while "listening on" not in (line := await lines.next_line()):
                    pass
            yield line.rsplit(" ", 1)[1], lines
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                await proc.wait()
            assert proc.returncode == 0


@asynccontextmanager
async def clients(url: str, n: int, rounds: int, transports: str | None) -> AsyncIterator[Lines]:
    cmd = ["node", str(MANY), url, "--clients", str(n), "--rounds", str(rounds)]
    if transports:
        cmd += ["--transports", transports]
    async with await anyio.open_process(cmd) as proc:
        try:
            yield Lines(proc)
        finally:
            if proc.returncode is None:
                proc.kill()


@pytest.mark.parametrize("workers", [2, 4])
async def test_workers_behave_as_one_server(anyio_backend: str, workers: int) -> None:
    async with cluster(workers, anyio_backend) as (url, master), clients(url, 100, 10, "polling") as polling:
        with anyio.fail_after(60):
            await polling.until("connected")
            done = await polling.until("done")
        assert done["errors"] == [] and done["connect_errors"] == 0
        assert done["acks"] == 100 * 10, "every acked event of every polling client, no HTTP 400"

        async with clients(url, 20, 2, None) as default:
            with anyio.fail_after(60):
                await default.until("connected")
                # Upgrades may be reported before every client is connected: count those already seen too.
                while len({m["client"] for m in default.seen if m.get("event") == "upgraded"}) < 20:
                    await default.until("upgraded")
                assert (await default.until("done"))["acks"] == 20 * 2

            with anyio.fail_after(30):
                # Which worker serves each polling client: the handler answers with its process id.
                await polling.send({"cmd": "emit_all", "name": "whoami"})
                pids: list[int] = (await polling.until("acks"))["args"]
                assert None not in pids and len(set(pids)) == workers, "the kernel spreads clients over every worker"

                await polling.send({"cmd": "emit", "client": 0, "name": "count"})
                assert (await polling.until("ack"))["args"] == [120], "fetch_sockets sees the clients of every worker"
                await polling.send({"cmd": "emit", "client": 7, "name": "ask_all"})
                assert (await polling.until("ack"))["args"] == [120], "broadcast acks come back from every worker"

                await polling.send({"cmd": "emit", "client": 3, "name": "bcast", "args": ["x"]})
                await polling.until("ack")
                for group, n in ((polling, 100), (default, 20)):
                    # Every client of every worker gets it (other workers hear of it over the bus, later).
                    while len({m["client"] for m in group.seen if m.get("event") == "bcast"}) < n:
                        await group.until("bcast")
                    # A duplicate would have to arrive before this round trip of every client's.
                    await group.send({"cmd": "emit_all", "name": "echo", "args": ["sync"]})
                    assert (await group.until("acks"))["args"] == ["sync"] * n
                    await group.send({"cmd": "counts"})
                    counts = await group.until("counts")
                    assert counts["bcast"] == [1] * n, "each client exactly once"

            # kill -9 one worker: only its clients notice, and they come back.
            victim = pids[0]
            mine = {i for i, pid in enumerate(pids) if pid == victim}
            os.kill(victim, signal.SIGKILL)
            with anyio.fail_after(30):
                back: set[int] = set()
                while back != mine:
                    back.add((await polling.until("reconnected"))["client"])
            dropped = {m["client"] for m in polling.seen if m.get("event") == "disconnect"}
            assert dropped == mine, "the other workers' clients stayed connected"
            with anyio.fail_after(30):
                # The master restarts the dead worker.
                while "listening again" not in await master.next_line():
                    pass
            with anyio.fail_after(30):
                await polling.send({"cmd": "emit_all", "name": "echo", "args": ["again"]})
                assert (await polling.until("acks"))["args"] == ["again"] * 100
            with anyio.fail_after(30):
                # A worker that stayed up broadcasts over the bus again: its stream to the dead worker is replaced
                # by one to the restarted worker, and every client hears the broadcast.
                survivor_client = min(set(range(100)) - mine)
                seen_before = len(polling.seen)
                await polling.send({"cmd": "emit", "client": survivor_client, "name": "bcast", "args": ["y"]})
                assert (await polling.until("ack"))["args"] == [1]
                while len({m["client"] for m in polling.seen[seen_before:] if m.get("event") == "bcast"}) < 100:
                    await polling.until("bcast")
