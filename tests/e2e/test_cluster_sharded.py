"""The sharded mode's room channels (issue 11): anysio subscribes to a room's own channel while it has the room,
as Node's ``createShardedAdapter`` does in each ``subscriptionMode`` ("static": never, "dynamic": rooms that are
not socket ids, "dynamic-private": every room), with 1 process and with 2 workers (the workers report their
rooms to the one that holds the Redis link). A room's channel is unsubscribed once the room is empty: at once
when a socket of that process leaves it, by the sweep (every ``ROOM_SWEEP_INTERVAL``) otherwise. Broadcasts to
one room and to one socket cross both ways on those channels. Redis itself tells who is subscribed (PUBSUB
SHARDNUMSUB: Node's server and the anysio machine count once each)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from anysio.adapters.redis import RedisAddress
from tests.e2e.cluster_helpers import Client, RespConnection, mixed_cluster

pytestmark = pytest.mark.anyio

SWEEP = {"ROOM_SWEEP_INTERVAL": "0.2"}


def channel(room: str) -> str:
    return f"socket.io#/#{room}#"


class Subscribers:
    """PUBSUB SHARDNUMSUB on one connection to the test's Redis."""

    def __init__(self, conn: RespConnection) -> None:
        self.conn = conn

    async def of(self, rooms: list[str]) -> dict[str, int]:
        reply = await self.conn.command("PUBSUB", "SHARDNUMSUB", *map(channel, rooms))
        return {room: int(reply[i * 2 + 1]) for i, room in enumerate(rooms)}

    async def until(self, expected: dict[str, int]) -> None:
        """Returns once each room's channel has its number of subscribers: a server subscribes after what made
        it join (a message from Redis, a bus message between workers, a sweep), so each look is a round trip."""
        with anyio.fail_after(5):
            while await self.of(list(expected)) != expected:
                pass


@asynccontextmanager
async def subscribers(redis_url: str) -> AsyncIterator[Subscribers]:
    conn = await RespConnection.open(RedisAddress.parse(redis_url), 5.0)
    try:
        yield Subscribers(conn)
    finally:
        await conn.aclose()


async def crosses(sender: Client, rooms: list[str], hearers: list[Client], event: str) -> None:
    assert await sender.call("to", {"rooms": rooms, "event": event, "args": [sender.name]}) is True
    for hearer in hearers:
        assert await hearer.received(event) == [sender.name]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("subscription", ["static", "dynamic", "dynamic-private"])
async def test_room_channels_follow_the_subscription_mode(anyio_backend: str, subscription: str, workers: int) -> None:
    env = {"SUBSCRIPTION_MODE": subscription, **SWEEP}
    async with (
        mixed_cluster(anyio_backend, mode="sharded", workers=workers, env=env) as c,
        subscribers(c.redis.url) as subs,
    ):
        cl = c.clients
        rooms = 0 if subscription == "static" else 1
        ids = 1 if subscription == "dynamic-private" else 0
        n1, n2, p1, p2 = cl["n1"], cl["n2"], cl["p1"], cl["p2"]
        await subs.until({"r1": 2 * rooms, "r2": 2 * rooms, "r3": rooms, p1.id: ids, p2.id: ids, n1.id: ids})

        # One room, one socket: on the room's (or socket's) channel when there is one, both ways.
        await crosses(n1, ["r3"], [p1], "to-r3")
        await crosses(p2, ["r1"], [n1, p1], "to-r1")
        await crosses(n1, [p2.id], [p2], "to-p2")
        await crosses(p1, [n2.id], [n2], "to-n2")

        # A room joined through another server (a sockets_join from Node) gets its channel too.
        assert await n1.call("join_all", {"rooms": [p2.id], "room": "r5"}) is True
        await subs.until({"r5": rooms})
        await crosses(n1, ["r5"], [p2], "to-r5")

        # Emptied rooms lose their channel: r3 when p1 leaves it, p2's rooms when it is disconnected.
        assert await n1.call("leave_all", {"rooms": ["r3"], "room": "r3"}) is True
        await subs.until({"r3": 0})
        assert await n1.call("kick", {"rooms": [p2.id]}) is True
        assert await p2.disconnected() == "io server disconnect"
        await subs.until({"r2": rooms, "r5": 0, p2.id: 0, "r1": 2 * rooms})


@pytest.mark.parametrize("subscription", ["dynamic", "dynamic-private"])
async def test_subscriptions_keep_their_order(anyio_backend: str, subscription: str) -> None:
    """A room joined and left again and again ends subscribed as it ends joined: SSUBSCRIBE and SUNSUBSCRIBE reach
    Redis in the order the rooms changed."""
    env = {"SUBSCRIPTION_MODE": subscription, **SWEEP}
    async with mixed_cluster(anyio_backend, mode="sharded", env=env) as c, subscribers(c.redis.url) as subs:
        p1, n1 = c.clients["p1"], c.clients["n1"]
        for _ in range(10):
            assert await p1.call("join_all", {"rooms": [p1.id], "room": "r6"}) is True
            assert await p1.call("leave_all", {"rooms": [p1.id], "room": "r6"}) is True
        await subs.until({"r6": 0})
        assert await p1.call("join_all", {"rooms": [p1.id], "room": "r6"}) is True
        await subs.until({"r6": 1})
        await crosses(n1, ["r6"], [p1], "to-r6")
