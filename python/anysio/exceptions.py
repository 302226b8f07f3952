"""The exceptions a user of anysio meets."""

from __future__ import annotations

import builtins
import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class AnysioError(Exception):
    """Base of anysio's own exceptions."""


class ConnectionRefused(AnysioError):
    """Raise from a middleware or a connect handler to refuse a connection.

    The client receives ``connect_error`` with ``message`` (and ``data`` when given), as from Node's
    ``next(new Error(message))`` with ``err.data``.
    """

    def __init__(self, message: str = "Connection rejected by server", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ConnectionError(AnysioError, builtins.ConnectionError):
    """``anysio.Client`` could not connect: the server refused the namespace (``message`` is the server's, with
    its ``data``, as Node's ``connect_error``), refused the handshake, or could not be reached (the cause is
    ``__cause__``). Also a builtin ``ConnectionError``."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class AckTimeout(AnysioError, TimeoutError):
    """No acknowledgement arrived in time. ``replies`` holds those that did (broadcasts)."""

    def __init__(self, message: str, replies: list[Any] | None = None) -> None:
        super().__init__(message)
        self.replies = replies or []


def reply_value(values: list[Any]) -> Any:
    """An ack's arguments as one value: the argument itself, a tuple of several, or None."""
    return values[0] if len(values) == 1 else tuple(values) if values else None


class BackendUnavailable(AnysioError, LookupError):
    """The event loop asked for is not installed. str(e) is one line naming the ``pip install`` that fixes it."""


class ClusterError(AnysioError):
    """A cluster operation could not be done: Redis is unreachable, or the other servers did not answer."""


class ProtocolError(AnysioError):
    """Bad input from a client (a malformed request, frame or packet), as the ``error`` handler receives it with
    no socket. ``remote`` is the peer's (host, port) when known."""

    def __init__(self, message: str, remote: tuple[str, int] | None = None) -> None:
        super().__init__(message)
        self.remote = remote


class Disconnected(AnysioError):
    """The socket disconnected before its acknowledgement arrived."""


class DrainTimeout(AnysioError, TimeoutError):
    """``await socket.emit(...)`` waited for the client's buffer to fall under ``high_water_mark`` longer than
    ``drain_timeout``: the client reads slower than it is written to. The event was not sent."""


def unknown_option(name: str, valid: Iterable[str]) -> TypeError:
    """``TypeError: unknown option 'ping_intervall' (did you mean 'ping_interval'?)``."""
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    return TypeError(f"unknown option {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def checked_options(extra: Iterable[str] = ()) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (or ``__init__``) whose keyword arguments are options: a misspelt one raises
    ``unknown_option`` naming the closest valid one, instead of Python's plain "unexpected keyword argument"
    or, behind ``**options``, nothing at all. ``extra`` names what ``**options`` accepts."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        params = inspect.signature(fn).parameters.values()
        valid = frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)) | set(extra)
        valid -= {"self"}

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            for name in kwargs:
                if name not in valid:
                    raise unknown_option(name, valid)
            return fn(*args, **kwargs)

        return call

    return decorate
