"""Real parts for the worker tests: ``anysio run tests.e2e.apps.workers_app:sio --workers N`` as a child process,
and many official socket.io-clients in one Node process (tests/node/sio_many.mjs), each read as it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from tests.notifier import Notifier

ROOT = Path(__file__).resolve().parents[2]
MANY = ROOT / "tests" / "node" / "sio_many.mjs"
APP = "tests.e2e.apps.workers_app:sio"


class Lines(Notifier):
    """A child process's output lines, read by a task of their own as they come (a child never blocks on a full
    pipe); the JSON ones are parsed into ``seen``. ``until`` takes each line it returns, so that it is not
    returned twice."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        super().__init__()
        assert proc.stdout is not None
        self.proc = proc
        self.stream = proc.stdout
        self.text: list[str] = []
        self.seen: list[dict[str, Any]] = []
        self.taken: set[int] = set()
        self.taken_text: set[int] = set()
        self.asked = 0
        self.sending = anyio.Lock()

    async def pump(self) -> None:
        buf = b""
        while True:
            try:
                buf += await self.stream.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.text.append(line)
                if line.startswith("{"):
                    self.seen.append(json.loads(line))
            self.notify()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.seen if m.get("event") == name]

    async def until(self, event: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first JSON line not taken yet whose ``event`` (and ``fields``) match; takes it."""

        def first() -> int | None:
            for i, m in enumerate(self.seen):
                if i not in self.taken and m.get("event") == event and all(m.get(k) == v for k, v in fields.items()):
                    return i
            return None

        i: int = await self.wait_for(lambda: (n := first()) is not None and n + 1, timeout) - 1
        self.taken.add(i)
        return self.seen[i]

    async def until_text(self, text: str, timeout: float = 30.0) -> str:
        """The first line not taken yet that contains ``text``; takes it."""

        def first() -> int | None:
            return next((i for i, line in enumerate(self.text) if i not in self.taken_text and text in line), None)

        i: int = await self.wait_for(lambda: (n := first()) is not None and n + 1, timeout) - 1
        self.taken_text.add(i)
        return self.text[i]

    async def ask(self, cmd: dict[str, Any], event: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send a command and take its answer, told from others' by the command's ``id`` (given one if it has
        none)."""
        self.asked += 1
        cmd = {"id": f"ask {self.asked}", **cmd}
        await self.send(cmd)
        return await self.until(event, timeout, id=cmd["id"])

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        async with self.sending:  # tasks of one test send concurrently; a pipe takes one writer at a time
            await self.proc.stdin.send((json.dumps(cmd) + "\n").encode())


@asynccontextmanager
async def cluster(workers: int, backend: str, *options: str, app: str = APP) -> AsyncIterator[tuple[str, Lines]]:
    """The master and its workers serving ``app`` (their logs in its output too), until it stops cleanly on
    SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "anysio.cli", "run", app, f"--workers={workers}", "--port=0", f"--backend={backend}"]
    async with (
        await anyio.open_process([*cmd, *options], env=env, stderr=subprocess.STDOUT) as proc,
        anyio.create_task_group() as tg,
    ):
        out = Lines(proc)
        tg.start_soon(out.pump)
        try:
            yield (await out.until_text("workers listening on")).rsplit(" ", 1)[1], out
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                await proc.wait()
            assert proc.returncode == 0, "\n".join(out.text[-30:])


@asynccontextmanager
async def clients(url: str, n: int, rounds: int = 0, transports: str | None = None) -> AsyncIterator[Lines]:
    cmd = ["node", str(MANY), url, "--clients", str(n), "--rounds", str(rounds)]
    cmd += ["--transports", transports] if transports else []
    async with await anyio.open_process(cmd, stderr=None) as proc, anyio.create_task_group() as tg:
        lines = Lines(proc)
        tg.start_soon(lines.pump)
        try:
            yield lines
        finally:
            if proc.returncode is None:
                proc.kill()
            tg.cancel_scope.cancel()


@dataclass
class Spread:
    """Which worker serves each client: the victim of a fault is the worker of client 0."""

    pids: list[int]
    workers: list[int]  # each client's worker index (its Engine.IO sid's prefix)

    @property
    def victim(self) -> int:
        return self.workers[0]

    @property
    def victim_pid(self) -> int:
        return self.pids[0]

    @property
    def mine(self) -> list[int]:
        return [c for c, w in enumerate(self.workers) if w == self.victim]

    @property
    def others(self) -> list[int]:
        return [c for c, w in enumerate(self.workers) if w != self.victim]


async def spread(group: Lines, n_workers: int) -> Spread:
    """Once every client is connected: which worker serves each (the kernel spreads them over every worker)."""
    await group.until("connected")
    pids: list[int] = (await group.ask({"cmd": "emit_all", "name": "whoami"}, "acks"))["args"]
    ids: list[str] = (await group.ask({"cmd": "engines"}, "engines"))["ids"]
    s = Spread(pids, [int(sid.split("-", 1)[0]) for sid in ids])
    assert len(set(s.pids)) == len(set(s.workers)) == n_workers, "clients on every worker"
    return s
