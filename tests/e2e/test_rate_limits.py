"""Rate limits an application sets: events per second per socket (``event_rate_limit``, ``socket.rate_limit``),
with the reply the official client gets when it goes over; and new connections per second per IP address
(``connection_rate_limit``). Every test runs on asyncio and trio."""

from __future__ import annotations

from typing import Any

import pytest

from anysio import RateLimit, Server, Socket
from tests.e2e.eio_helpers import HttpConn, ws_headers
from tests.e2e.metrics_helpers import scrape, value
from tests.e2e.sio_helpers import node_sio, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def limited_server(**options: Any) -> tuple[Server, dict[str, Socket]]:
    sio = Server(metrics=True, **options)
    sockets: dict[str, Socket] = {}

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        sockets[socket.id] = socket
        if auth.get("plan") == "unlimited":
            socket.rate_limit = None  # the application decides per socket
        elif auth.get("plan") == "fast":
            socket.rate_limit = RateLimit(100, burst=50)

    @sio.on("echo")
    def echo(socket: Socket, value: Any) -> Any:
        return value

    return sio, sockets


def is_limited(reply: list[Any]) -> bool:
    return len(reply) == 1 and isinstance(reply[0], dict) and "rate limit exceeded" in reply[0].get("error", "")


async def test_events_over_a_sockets_rate_are_refused_with_a_reply() -> None:
    # One event per 2 s after a burst of 3: a fourth in a row is over, however slow the machine.
    sio, sockets = limited_server(event_rate_limit=RateLimit(0.5, burst=3))
    async with serving(sio) as address, node_sio(address) as client, node_sio(address, auth={"plan": "fast"}) as fast:
        assert [await client.call("echo", i) for i in range(3)] == [[0], [1], [2]]
        reply = await client.call("echo", 3)
        assert is_limited(reply), reply
        assert 0 < reply[0]["retry_after"] <= 2
        # Without an ack, the client gets an "error" event naming the event.
        await client.emit("echo", 4)
        [[error]] = await client.receive("error")
        assert error["event"] == "echo" and "rate limit exceeded" in error["error"]

        # Each socket has its own bucket, and the application may give a socket another limit.
        assert [await fast.call("echo", i) for i in range(10)] == [[i] for i in range(10)]
        scraped = await scrape(address)
        assert value(scraped, "anysio_rate_limited_total", kind="event") == 2
        assert value(scraped, "anysio_handler_duration_seconds_count") == 3 + 10, "refused events are not handled"

        # Lifted for this socket: its events are handled again.
        [socket] = [s for s in sockets.values() if s.rate_limit == RateLimit(0.5, burst=3)]
        socket.rate_limit = None
        assert [await client.call("echo", i) for i in range(5)] == [[i] for i in range(5)]


async def test_new_connections_per_address_over_the_rate_are_refused_with_429() -> None:
    sio, _ = limited_server(connection_rate_limit=RateLimit(0.5, burst=2))
    async with serving(sio) as address:
        for _ in range(2):
            conn = await HttpConn.open(address)
            res = await conn.request("GET", "/socket.io/?EIO=4&transport=polling")
            await conn.aclose()
            assert res.status == 200 and res.text.startswith("0{")
        conn = await HttpConn.open(address)
        res = await conn.request("GET", "/socket.io/?EIO=4&transport=polling")
        await conn.aclose()
        assert res.status == 429
        assert res.json() == {"code": 4, "message": "Too many connections from this address"}
        # A WebSocket handshake is refused the same way, before its upgrade.
        conn = await HttpConn.open(address)
        res = await conn.request("GET", "/socket.io/?EIO=4&transport=websocket", headers=ws_headers())
        await conn.aclose()
        assert res.status == 429
        # The official client sees a connect_error.
        async with node_sio(address, connected=False, reconnection=False) as client:
            await client.expect("connect_error")
        scraped = await scrape(address)
        assert value(scraped, "anysio_rate_limited_total", kind="connection") == 3
        assert value(scraped, "anysio_engineio_sessions_opened_total", transport="polling") == 2


def test_a_rate_limit_is_checked() -> None:
    with pytest.raises(ValueError, match="per_second > 0"):
        RateLimit(0)
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimit(5, burst=0.5)
    assert RateLimit.of(10) == RateLimit(10.0)
    assert RateLimit.of({"per_second": 2, "burst": 4}) == RateLimit(2, 4)
