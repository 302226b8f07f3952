"""``RedisCluster``: what a server gives ``anysio.Server(adapter=cluster.adapter)`` to be one server of a cluster
on Redis, in the classic mode (``createAdapter``) or the sharded one (``createShardedAdapter``)."""

from __future__ import annotations

import logging
from types import TracebackType

import anyio

from ..base import AdapterNamespace, MachineScope, RoomsWanted
from .classic import RedisAdapter
from .exchange import Exchange
from .link import LinkedAdapter, LinkOptions
from .messages import DEFAULT_KEY
from .resp import RedisAddress
from .sharded import SUBSCRIPTION_MODES, ShardedRedisAdapter

logger = logging.getLogger("anysio")


class RedisCluster:
    """The Redis side of a server, shared by the adapters of every namespace (``adapter`` is the factory to give
    ``anysio.Server``). Run it with ``async with``: it connects, subscribes, and reconnects with backoff while
    Redis is away. With workers, the worker that holds it builds each namespace's ``uplink`` over its machine."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379",
        *,
        key: str = DEFAULT_KEY,
        sharded: bool = False,
        subscription_mode: str = "dynamic",
        requests_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_reconnect_delay: float = 2.0,
        room_sweep_interval: float = 5.0,
    ) -> None:
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise ValueError(f"subscription_mode: one of {', '.join(map(repr, SUBSCRIPTION_MODES))}")
        self.address = RedisAddress.parse(url)
        #: Node's ``createShardedAdapter`` (Redis 7 sharded pub/sub) instead of ``createAdapter``.
        self.sharded = sharded
        self.options = LinkOptions(key, requests_timeout, subscription_mode, room_sweep_interval)
        self.exchange = Exchange(
            self.address,
            sharded=sharded,
            requests_timeout=requests_timeout,
            connect_timeout=connect_timeout,
            max_reconnect_delay=max_reconnect_delay,
        )
        #: Each namespace's adapter (or, with workers, its uplink), by name.
        self.adapters: dict[str, LinkedAdapter] = {}

    @property
    def subscribed(self) -> anyio.Event:
        """Set while the listening connection is subscribed to every adapter's channels."""
        return self.exchange.subscribed

    @property
    def rooms_wanted(self) -> RoomsWanted:
        """Which rooms the machine's workers report to the worker that holds the link (``ClusterLink``)."""
        return SUBSCRIPTION_MODES[self.options.subscription_mode] if self.sharded else "none"

    def adapter(self, nsp: AdapterNamespace, machine: MachineScope | None = None) -> LinkedAdapter:
        """The adapter of one namespace (give this method to ``anysio.Server(adapter=...)``)."""
        old = self.adapters.get(nsp.name)
        if old is not None:
            old.close()
        kind = ShardedRedisAdapter if self.sharded else RedisAdapter
        adapter = self.adapters[nsp.name] = kind(nsp, self.exchange, self.options, machine)
        return adapter

    def uplink(self, nsp: AdapterNamespace, machine: MachineScope) -> LinkedAdapter:
        """The namespace's Redis adapter in the worker that holds the link of a machine with workers: what other
        machines ask is done on ``machine`` (every worker), and the other workers' cluster operations come to it
        over the bus (``adapters.bus.HolderLink``). The machine is one server of the cluster: one uid."""
        return self.adapter(nsp, machine)

    async def __aenter__(self) -> RedisCluster:
        await self.exchange.__aenter__()
        if self.rooms_wanted != "none":
            self.exchange.spawn(self._sweep_rooms)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self.exchange.__aexit__(exc_type, exc, tb)

    async def _sweep_rooms(self) -> None:
        while True:
            await anyio.sleep(self.options.room_sweep_interval)  # a period, not a wait for an event
            for adapter in list(self.adapters.values()):
                if isinstance(adapter, ShardedRedisAdapter):
                    try:
                        await adapter.sweep_rooms()
                    except Exception:  # the next sweep tries again; the cluster goes on meanwhile
                        logger.exception("the sweep of %s's room channels failed", adapter.nsp.name)
