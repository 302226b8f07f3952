"""anysio.Client's end-to-end tests' peers: Node's socket.io server (tests/node/client_peer_server.mjs) as a
subprocess whose stdout lines are awaited, and anysio's own (sio_helpers.demo_server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

from tests.e2e.sio_helpers import ROOT, WAIT
from tests.notifier import Notifier

NODE_SERVER = ROOT / "tests" / "node" / "client_peer_server.mjs"


class NodePeer(Notifier):
    """Node's server: ``lines`` is what it said (JSON objects), ``port`` where it listens."""

    def __init__(self, process: anyio.abc.Process) -> None:
        super().__init__()
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _read(self) -> None:
        assert self.process.stdout is not None
        buffer = ""
        async for chunk in TextReceiveStream(self.process.stdout):
            buffer += chunk
            *whole, buffer = buffer.split("\n")
            for line in whole:
                self.lines.append(json.loads(line))
                self.notify()

    async def expect(self, event: str, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """The lines of ``event`` (with these fields) once there are ``count`` of them."""

        def found() -> list[dict[str, Any]] | None:
            hits = [
                line
                for line in self.lines
                if line["event"] == event and all(line.get(k) == v for k, v in fields.items())
            ]
            return hits if len(hits) >= count else None

        result: list[dict[str, Any]] = await self.wait_for(found, WAIT)
        return result


@asynccontextmanager
async def node_peer(*options: str, port: int = 0) -> AsyncIterator[NodePeer]:
    """Node's socket.io server for the body of the ``async with``, listening when the body starts."""
    argv = ["node", str(NODE_SERVER), str(port), *options]
    async with await anyio.open_process(argv, stderr=None) as process, anyio.create_task_group() as tg:
        peer = NodePeer(process)
        tg.start_soon(peer._read)
        try:
            peer.port = (await peer.expect("listening"))[0]["port"]
            yield peer
        finally:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
            tg.cancel_scope.cancel()


class Proxy:
    """A TCP proxy to ``upstream`` whose ``cut`` breaks every connection through it, as a network failure does
    (the server sees the connection end, the client sees it closed)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._streams: set[anyio.abc.SocketStream] = set()
        self._frozen: set[anyio.abc.SocketStream] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def cut(self) -> None:
        streams, self._streams = self._streams, set()
        for stream in streams:
            await stream.aclose()

    def freeze(self) -> None:
        """Stop carrying the connections through it, without closing them (a network that went silent: not even
        a peer's close gets through, so each end finds out by its own timeout); new connections are carried."""
        self._frozen |= self._streams
        self._streams = set()

    async def _pump(self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        try:
            async for chunk in source:
                if source not in self._frozen:
                    await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        except BaseException:
            await self._close(source, sink)
            raise
        if source not in self._frozen:
            await self._close(source, sink)

    @staticmethod
    async def _close(*streams: anyio.abc.SocketStream) -> None:
        with anyio.CancelScope(shield=True):
            for stream in streams:
                await stream.aclose()

    async def close_frozen(self) -> None:
        frozen, self._frozen = self._frozen, set()
        await self._close(*frozen)

    async def _serve(self, client: anyio.abc.SocketStream) -> None:
        server = await anyio.connect_tcp("127.0.0.1", self.upstream)
        self._streams |= {client, server}
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, client, server)
            tg.start_soon(self._pump, server, client)


@asynccontextmanager
async def proxy(upstream: int) -> AsyncIterator[Proxy]:
    p = Proxy(upstream)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        p.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, p._serve)
        try:
            yield p
        finally:
            await p.close_frozen()
            tg.cancel_scope.cancel()
