"""Real parts for the Redis cluster tests: a private redis-server (Debian's), Node servers on
``@socket.io/redis-adapter`` (tests/cluster/node_server.mjs), anysio servers (examples/cluster/server.py), and
official ``socket.io-client``s (tests/node/sio_client.mjs), each a child process started and ended here."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from anysio.adapters.redis import RespConnection

__all__ = [
    "ROOT",
    "Client",
    "Cluster",
    "Lines",
    "Redis",
    "RespConnection",
    "ServerProc",
    "client",
    "cluster_server",
    "mixed_cluster",
    "placed_client",
]

ROOT = Path(__file__).resolve().parents[2]
NODE_SERVER = ROOT / "tests" / "cluster" / "node_server.mjs"
CLIENT = ROOT / "tests" / "node" / "sio_client.mjs"
PY_SERVER = ROOT / "examples" / "cluster" / "server.py"
STEP = 10.0  # seconds any one step may take


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Lines:
    """JSON lines from a child process's stdout, read on demand; every line is kept in ``seen``."""

    def __init__(self, proc: anyio.abc.Process, name: str = "") -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.name = name
        self.stream = proc.stdout
        self.buf = b""
        self.seen: list[dict[str, Any]] = []
        self.taken: set[int] = set()  # lines of ``seen`` an ``until`` returned

    async def next_line(self) -> str:
        while b"\n" not in self.buf:
            self.buf += await self.stream.receive()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    async def _read_one(self) -> None:
        while True:
            line = await self.next_line()
            if line.startswith("{"):
                self.seen.append(json.loads(line))
                return

    async def until(self, pred: Any) -> dict[str, Any]:
        """The first line not taken yet that ``pred`` accepts (reading more as needed); takes it."""
        with anyio.fail_after(STEP):
            scanned = 0
            while True:
                for i in range(scanned, len(self.seen)):
                    if i not in self.taken and pred(self.seen[i]):
                        self.taken.add(i)
                        return self.seen[i]
                scanned = len(self.seen)
                await self._read_one()

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send((json.dumps(cmd) + "\n").encode())


@dataclass
class Redis:
    port: int
    dir: str
    proc: anyio.abc.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", self.dir, "--logfile", "", "--daemonize", "no"]
        self.proc = await anyio.open_process(cmd, stderr=None)
        lines = Lines(self.proc)
        with anyio.fail_after(STEP):
            while "Ready to accept connections" not in await lines.next_line():
                pass
        self._drain = lines

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with anyio.fail_after(STEP):
                await self.proc.wait()
            await self.proc.aclose()
        self.proc = None


@asynccontextmanager
async def redis_server() -> AsyncIterator[Redis]:
    with tempfile.TemporaryDirectory(prefix="anysio-redis-") as tmp:
        redis = Redis(free_port(), tmp)
        await redis.start()
        try:
            yield redis
        finally:
            with anyio.CancelScope(shield=True):
                await redis.stop()


@dataclass
class ServerProc:
    kind: str  # "node" | "anysio"
    name: str
    port: int
    uids: dict[str, str]
    lines: Lines

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def cluster_server(
    kind: str,
    name: str,
    redis_url: str,
    backend: str = "asyncio",
    mode: str = "classic",
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[ServerProc]:
    """A server of the cluster contract: ``kind`` "node" or "anysio", ``mode`` "classic" or "sharded"; an anysio
    server with ``workers`` > 1 is one machine of that many worker processes (its master prints its address).
    ``extra_env``: more of the contract's settings (``SUBSCRIPTION_MODE``, ``ROOM_SWEEP_INTERVAL``)."""
    env = {**os.environ, "PORT": "0", "REDIS_URL": redis_url, "NAME": name, "PYTHONPATH": str(ROOT), "ADAPTER": mode}
    env.update(extra_env or {})
    node = ["node", str(NODE_SERVER)]
    cmd = node if kind == "node" else [sys.executable, str(PY_SERVER), "--backend", backend, f"--workers={workers}"]
    async with await anyio.open_process(cmd, env=env, stderr=None) as proc:
        try:
            lines = Lines(proc, name)
            if workers > 1:
                with anyio.fail_after(STEP * 2):
                    while "workers listening on" not in (line := await lines.next_line()):
                        pass
                yield ServerProc(kind, name, int(line.rsplit(":", 1)[1]), {}, lines)
                return
            ready = await lines.until(lambda m: m.get("event") == "listening")
            yield ServerProc(kind, name, int(ready["port"]), ready["uids"], lines)
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(STEP):
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()


class Client:
    """An official socket.io-client (Node) on one namespace, driven over its stdin/stdout."""

    def __init__(self, lines: Lines, name: str) -> None:
        self.lines = lines
        self.name = name
        self.id = ""
        self._next = 0

    async def call(self, event: str, arg: Any = None, timeout_ms: int = 8000) -> Any:
        """Emit ``event`` with ``arg`` and return the server's ack value."""
        self._next += 1
        cid = self._next
        await self.lines.send({"cmd": "emit", "name": event, "args": [arg or {}], "ack": True, "id": cid})
        ack = await self.lines.until(lambda m: m.get("event") in ("ack", "ack_timeout") and m.get("id") == cid)
        assert ack["event"] == "ack", f"{self.name}: no ack for {event}"
        return ack["args"][0] if ack["args"] else None

    async def received(self, event: str) -> list[Any]:
        """The arguments of the next ``event`` this client receives."""
        msg = await self.lines.until(lambda m: m.get("event") == "recv" and m.get("name") == event)
        args: list[Any] = msg["args"]
        return args

    def got(self, event: str) -> list[list[Any]]:
        """Every ``event`` received so far (read or not)."""
        return [m["args"] for m in self.lines.seen if m.get("event") == "recv" and m.get("name") == event]

    async def disconnected(self) -> str:
        msg = await self.lines.until(lambda m: m.get("event") == "disconnect")
        return str(msg["reason"])


@asynccontextmanager
async def client(server: ServerProc, name: str, rooms: list[str], nsp: str = "/") -> AsyncIterator[Client]:
    auth = json.dumps({"name": name, "rooms": rooms})
    cmd = ["node", str(CLIENT), server.url, "--nsp", nsp, "--auth", auth, "--reconnection", "false"]
    async with await anyio.open_process(cmd, stderr=None) as proc:
        try:
            c = Client(Lines(proc, name), name)
            c.id = (await c.lines.until(lambda m: m.get("event") == "connect"))["id"]
            assert await c.received("welcome") == [server.name]
            await c.lines.send({"cmd": "ack_reply", "name": "question", "args": [name]})
            await c.lines.until(lambda m: m.get("event") == "ack_reply_set")
            yield c
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


@dataclass
class Cluster:
    redis: Redis
    node: ServerProc
    py: ServerProc
    clients: dict[str, Client]


@asynccontextmanager
async def placed_client(server: ServerProc, name: str, rooms: list[str], holds_link: bool) -> AsyncIterator[Client]:
    """A client of a machine with workers, on the worker that holds the Redis link or on another one (the kernel
    spreads connections: a client that lands on the wrong kind of worker is replaced)."""
    for _ in range(40):
        async with client(server, name, rooms) as c:
            if (await c.call("whoami"))["holds_link"] == holds_link:
                yield c
                return
            # Gone from the server before the next try: a client killed while still long-polling would leave its
            # session (and its socket in the rooms) until the heartbeat times out, and count in broadcasts.
            assert await c.call("kick", {"rooms": [c.id]}) is True
            assert await c.disconnected() == "io server disconnect"
    raise AssertionError(f"no client of {name} landed on a worker with holds_link={holds_link}")


@asynccontextmanager
async def mixed_cluster(
    backend: str, first: str = "node", mode: str = "classic", workers: int = 1, env: dict[str, str] | None = None
) -> AsyncIterator[Cluster]:
    """A Node server "N" (or, with ``first="anysio"``, a second anysio server) and an anysio server "P" (of
    ``workers`` processes), on the classic adapter or the sharded one (``mode``), both with ``env``. Clients: n1
    (rooms r1), n2 (r2) and nc (r1, on "/chat") on N; p1 (r1, r3), p2 (r2) and pc (r1, on "/chat") on P, with
    workers p1 on the worker that holds the Redis link and p2 on another."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        node = await stack.enter_async_context(cluster_server(first, "N", redis.url, backend, mode, 1, env))
        py = await stack.enter_async_context(cluster_server("anysio", "P", redis.url, backend, mode, workers, env))
        clients: dict[str, Client] = {}
        for name, server, rooms, nsp in [
            ("n1", node, ["r1"], "/"),
            ("n2", node, ["r2"], "/"),
            ("p1", py, ["r1", "r3"], "/"),
            ("p2", py, ["r2"], "/"),
            ("nc", node, ["r1"], "/chat"),
            ("pc", py, ["r1"], "/chat"),
        ]:
            if workers > 1 and name in ("p1", "p2"):
                placed = placed_client(server, name, rooms, holds_link=name == "p1")
                clients[name] = await stack.enter_async_context(placed)
            else:
                clients[name] = await stack.enter_async_context(client(server, name, rooms, nsp))
        yield Cluster(redis, node, py, clients)
