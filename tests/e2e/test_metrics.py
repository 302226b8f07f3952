"""``/metrics`` (``Server(metrics=True)``): scraped during an end-to-end run with the official Node client, the
numbers are what the test did; standalone and as an ASGI app under hypercorn, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import pytest

from anysio import AckTimeout, Socket
from tests.e2e.eio_helpers import HttpConn
from tests.e2e.metrics_helpers import Scrape, scrape, served, value
from tests.e2e.sio_helpers import demo_server, node_sio, silent_client
from tests.e2e.workers_helpers import clients, cluster

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
HANDLED = "anysio_handler_duration_seconds_count"


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.mark.parametrize("how", ["standalone", "asgi"])
async def test_metrics_count_what_the_clients_did(how: str) -> None:
    sio, rec = demo_server(metrics=True)

    @sio.on("ask_silent")
    async def ask_silent(socket: Socket, sid: str) -> str:
        try:  # a client that never acknowledges anything
            await sio.sockets[sid].emit_with_ack("question", timeout=0.2)
        except AckTimeout:
            return "late"
        return "answered"

    async with (
        served(sio, how) as address,
        node_sio(address, transports="websocket") as ws,
        node_sio(address, transports="polling") as poll,
    ):
        s0 = await scrape(address)
        for transport in ("websocket", "polling"):
            assert value(s0, "anysio_sockets", transport=transport) == 1
            assert value(s0, "anysio_engineio_sessions", transport=transport) == 1
            assert value(s0, "anysio_engineio_sessions_opened_total", transport=transport) == 1
        assert value(s0, "anysio_connects_total", result="accepted") == 2
        assert value(s0, "anysio_processes") == 1

        # Three echoes with acks: 3 packets in ('2N["echo","hi"]', 15 bytes), 3 acks out ('3N["hi"]', 8 bytes).
        for _ in range(3):
            assert await ws.call("echo", "hi") == ["hi"]
        s1 = await scrape(address)
        assert delta(s0, s1, "anysio_packets_received_total") == 3
        assert delta(s0, s1, "anysio_packets_sent_total") == 3
        assert delta(s0, s1, "anysio_bytes_received_total") == 3 * 15
        assert delta(s0, s1, "anysio_bytes_sent_total") == 3 * 8
        assert delta(s0, s1, HANDLED) == 3
        assert value(s1, "anysio_handler_duration_seconds_bucket", le="+Inf") == value(s1, HANDLED)
        assert 0 < value(s1, "anysio_handler_duration_seconds_sum") < 1

        # A broadcast to a room of two, but the sender: one broadcast, one delivery.
        await ws.call("join", "r")
        await poll.call("join", "r")
        await ws.call("shout", "r", "hey")
        assert await poll.receive("shout") == [["hey"]]
        s2 = await scrape(address)
        assert delta(s1, s2, "anysio_broadcasts_total") == 1
        assert delta(s1, s2, "anysio_broadcast_deliveries_total") == 1
        assert delta(s1, s2, HANDLED) == 3

        # Bad input: a payload that does not fit its handler, a request for an unknown session; an ack waited for
        # in vain.
        [answer] = await ws.call("add", "x", 1)
        assert "error" in answer
        conn = await HttpConn.open(address)
        res = await conn.request("GET", "/socket.io/?EIO=4&transport=polling&sid=nope")
        await conn.aclose()
        assert res.status == 400
        silent, silent_id = await silent_client(address)
        assert await ws.call("ask_silent", silent_id) == ["late"]
        s3 = await scrape(address)
        assert delta(s2, s3, "anysio_bad_input_total", kind="payload") == 1
        assert delta(s2, s3, "anysio_bad_input_total", kind="connection_error") == 1
        assert delta(s2, s3, "anysio_acks_timed_out_total") == 1
        assert value(s3, "anysio_acks_pending") == 0
        assert delta(s2, s3, HANDLED) == 1  # ask_silent; add was not called

        # The polling client leaves its namespace.
        await poll.command(cmd="disconnect")
        [(_, _, reason)] = await rec.wait("disconnect")
        assert reason == "client namespace disconnect"
        s4 = await scrape(address)
        assert delta(s3, s4, "anysio_disconnects_total", reason="client namespace disconnect") == 1
        assert value(s4, "anysio_sockets", transport="polling") == 0
        assert value(s4, "anysio_sockets", transport="websocket") == 2  # ws and silent
        await silent.aclose()


async def test_metrics_are_off_by_default_and_take_a_path() -> None:
    sio, _ = demo_server()
    assert sio.metrics is None
    async with served(sio, "standalone") as address:
        conn = await HttpConn.open(address)
        res = await conn.request("GET", "/metrics")
        await conn.aclose()
        assert res.status == 404
    other, _ = demo_server(metrics="/internal/metrics")
    async with served(other, "standalone") as address:
        scraped: Any = await scrape(address, "/internal/metrics")
        assert value(scraped, "anysio_processes") == 1


async def test_a_scrape_on_any_worker_shows_every_worker(anyio_backend: str) -> None:
    """``anysio run --workers 2``: the kernel gives each scrape to either worker, and each shows the sum."""
    app = "tests.e2e.apps.metrics_app:sio"
    async with cluster(2, anyio_backend, app=app) as (url, _), clients(url, 20, 5, "polling") as group:
        await group.until("connected", timeout=60)
        assert (await group.until("done", timeout=60))["acks"] == 20 * 5
        pids = (await group.ask({"cmd": "emit_all", "name": "whoami"}, "acks"))["args"]
        assert len(set(pids)) == 2, "clients on both workers"
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for _ in range(8):  # new connections: the kernel spreads them over the workers
            scraped = await scrape((host, int(port)))
            assert value(scraped, "anysio_processes") == 2
            assert value(scraped, "anysio_sockets", transport="polling") == 20
            assert value(scraped, "anysio_connects_total", result="accepted") == 20
            # Each client: its CONNECT, 5 echoes, a whoami; each handled but the CONNECT.
            assert value(scraped, "anysio_packets_received_total") == 20 * 7
            assert value(scraped, HANDLED) == 20 * 6
