"""anysio: a Socket.IO server for Python on asyncio or trio, with its hot path in Rust."""

from ._native import __version__
from .engineio import Cookie, EngineServer, Request, RequestRefused, Session

__all__ = ["Cookie", "EngineServer", "Request", "RequestRefused", "Session", "__version__"]
