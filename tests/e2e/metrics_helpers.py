"""Scraping ``/metrics`` during an end-to-end run, and serving an ``ASGIApp`` with hypercorn in this process (on
asyncio or trio, whichever runs the test)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import sniffio
from hypercorn.asyncio import serve as asyncio_serve
from hypercorn.config import Config
from hypercorn.trio import serve as trio_serve
from prometheus_client.parser import text_string_to_metric_families

from anysio import ASGIApp, Server
from tests.e2e.eio_helpers import HttpConn
from tests.e2e.sio_helpers import Address, serving

#: A scrape: (metric sample name, its labels as sorted pairs) -> value.
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(address: Address, path: str = "/metrics") -> Scrape:
    """GET ``path`` and parse it as Prometheus text (prometheus-client's parser: it must be valid)."""
    conn = await HttpConn.open(address)
    try:
        res = await conn.request("GET", path, headers=[("Host", "127.0.0.1")])
    finally:
        await conn.aclose()
    assert res.status == 200, res
    assert (res.header("content-type") or "").startswith("text/plain; version=")
    out: Scrape = {}
    for family in text_string_to_metric_families(res.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped: Scrape, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@asynccontextmanager
async def asgi_serving(app: ASGIApp) -> AsyncIterator[Address]:
    """``app`` under hypercorn on 127.0.0.1, on the running backend; shut down when the block ends. The socket
    listens before hypercorn starts (it is handed over as ``fd://``), so clients may connect at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    address: Address = sock.getsockname()
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn's now: it closes it when it stops
    config.accesslog = None
    config.errorlog = None
    stop = anyio.Event()
    serve = trio_serve if sniffio.current_async_library() == "trio" else asyncio_serve
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            yield address
        finally:
            stop.set()


@asynccontextmanager
async def served(sio: Server, how: str) -> AsyncIterator[Address]:
    """``sio`` served standalone (``how`` "standalone") or as an ASGI app under hypercorn ("asgi")."""
    if how == "asgi":
        async with asgi_serving(ASGIApp(sio)) as address:
            yield address
    else:
        async with serving(sio) as address:
            yield address
