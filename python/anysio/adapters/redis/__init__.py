"""Servers on one Redis as one cluster, wire-compatible with Node's ``@socket.io/redis-adapter`` 8.x (its
classic and sharded modes), and ``Emitter``, which publishes as ``@socket.io/redis-emitter`` does.

``docs/redis-adapter.md`` is the protocol; the messages are decoded and encoded by the Rust codec
(``rust/adapter/redis``, through ``anysio._native.redis_*``): a broadcast heard from Redis goes from its bytes
to the local sockets in two calls into Rust, whatever the number of recipients. Redis itself is spoken with
hiredis's sans-IO reader and command packer over anyio streams, so it runs on asyncio and trio alike::

    cluster = anysio.RedisCluster("redis://127.0.0.1:6379")
    sio = anysio.Server(adapter=cluster.adapter)
    async with cluster:  # connects, subscribes, reconnects with backoff while Redis is away
        await sio.serve("0.0.0.0", 5000)

The modules, top to bottom (import-linter keeps the order): ``cluster`` (``RedisCluster``), ``classic`` and
``sharded`` (the two modes' adapters), ``link`` (``LinkedAdapter``, what they share), ``exchange`` (the
connections, subscriptions and publishing) beside ``emitter``, ``messages`` (the codec's Python side), ``resp``
(one connection).
"""

from .classic import RedisAdapter
from .cluster import RedisCluster
from .emitter import Emitter, EmitterOperator
from .exchange import Exchange
from .link import LinkedAdapter, LinkOptions
from .messages import DEFAULT_KEY, EMITTER_UID, decode, encode
from .resp import RedisAddress, RedisReplyError, RespConnection
from .sharded import ShardedRedisAdapter

__all__ = [
    "DEFAULT_KEY",
    "EMITTER_UID",
    "Emitter",
    "EmitterOperator",
    "Exchange",
    "LinkOptions",
    "LinkedAdapter",
    "RedisAdapter",
    "RedisAddress",
    "RedisCluster",
    "RedisReplyError",
    "RespConnection",
    "ShardedRedisAdapter",
    "decode",
    "encode",
]
