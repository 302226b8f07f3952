"""anysio: a Socket.IO server for Python on asyncio or trio, with its hot path in Rust.

This is the one place that re-exports the public names; each is defined once, in the module ``docs/architecture.md``
places it in."""

from ._native import __version__
from .adapters.base import Adapter, BroadcastOptions
from .asgi import ASGIApp
from .engineio.http import Request
from .engineio.runtime import Cookie, EngineOptions, RequestRefused
from .engineio.server import EngineServer, Session
from .exceptions import AckTimeout, AnysioError, ConnectionRefused, Disconnected
from .server.broadcast import BroadcastOperator
from .server.server import Namespace, Server
from .server.socket import Ack, Handshake, Socket

__all__ = [
    "ASGIApp",
    "Ack",
    "AckTimeout",
    "Adapter",
    "AnysioError",
    "BroadcastOperator",
    "BroadcastOptions",
    "ConnectionRefused",
    "Cookie",
    "Disconnected",
    "EngineOptions",
    "EngineServer",
    "Handshake",
    "Namespace",
    "Request",
    "RequestRefused",
    "Server",
    "Session",
    "Socket",
    "__version__",
]
