"""anysio: a Socket.IO server for Python on asyncio or trio, with its hot path in Rust.

This is the one place that re-exports the public names; each is defined once, in the module ``docs/architecture.md``
places it in."""

from typing import TYPE_CHECKING

from ._native import __version__
from .adapters.base import Adapter, BroadcastOptions
from .admin.instrument import instrument
from .asgi import ASGIApp
from .client.socket import Client
from .engineio.http import Request
from .engineio.runtime import ConnectionErrorInfo, Cookie, EngineEvents, EngineOptions, RequestRefused
from .engineio.server import EngineServer, Session
from .exceptions import (
    AckTimeout,
    AnysioError,
    ClusterError,
    ConnectionError,
    ConnectionRefused,
    Disconnected,
    DrainTimeout,
    ProtocolError,
)
from .server.broadcast import BroadcastOperator
from .server.flow import RateLimit
from .server.metrics import Metrics
from .server.namespace import Namespace, ParentNamespace
from .server.observer import Observer
from .server.recovery import ConnectionStateRecovery
from .server.server import Server
from .server.socket import Ack, Handshake, Socket, TimedSocket

if TYPE_CHECKING:
    from .adapters.redis import Emitter, RedisCluster


def __getattr__(name: str) -> object:
    # The Redis adapter needs hiredis (the "redis" extra): imported on first use.
    if name in ("RedisCluster", "Emitter"):
        from .adapters import redis

        return getattr(redis, name)
    raise AttributeError(f"module 'anysio' has no attribute {name!r}")


__all__ = [
    "ASGIApp",
    "Ack",
    "AckTimeout",
    "Adapter",
    "AnysioError",
    "BroadcastOperator",
    "BroadcastOptions",
    "Client",
    "ClusterError",
    "ConnectionError",
    "ConnectionErrorInfo",
    "ConnectionRefused",
    "ConnectionStateRecovery",
    "Cookie",
    "Disconnected",
    "DrainTimeout",
    "Emitter",
    "EngineEvents",
    "EngineOptions",
    "EngineServer",
    "Handshake",
    "Metrics",
    "Namespace",
    "Observer",
    "ParentNamespace",
    "ProtocolError",
    "RateLimit",
    "RedisCluster",
    "Request",
    "RequestRefused",
    "Server",
    "Session",
    "Socket",
    "TimedSocket",
    "__version__",
    "instrument",
]
