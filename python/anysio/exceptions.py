"""The exceptions a user of anysio meets."""

from __future__ import annotations

from typing import Any


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


class AckTimeout(AnysioError, TimeoutError):
    """No acknowledgement arrived in time. ``replies`` holds those that did (broadcasts)."""

    def __init__(self, message: str, replies: list[Any] | None = None) -> None:
        super().__init__(message)
        self.replies = replies or []


def reply_value(values: list[Any]) -> Any:
    """An ack's arguments as one value: the argument itself, a tuple of several, or None."""
    return values[0] if len(values) == 1 else tuple(values) if values else None


class Disconnected(AnysioError):
    """The socket disconnected before its acknowledgement arrived."""
