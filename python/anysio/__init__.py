"""anysio: a Socket.IO server for Python on asyncio or trio, with its hot path in Rust."""

from ._native import __version__
from .adapters.base import Adapter, BroadcastOptions
from .asgi import ASGIApp
from .engineio.runtime import Cookie, EngineOptions, EngineServer, Request, RequestRefused, Session
from .exceptions import AckTimeout, AnysioError, ConnectionRefused, Disconnected
from .server.server import BroadcastOperator, Namespace, Server
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
