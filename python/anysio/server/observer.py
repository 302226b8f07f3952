"""Watching a server from the side: what tools such as the Admin UI (``anysio.instrument``) are told of its sockets.

Node's Admin UI listens to the server's own events (a namespace's ``connection``, a socket's ``disconnect``, the
adapter's ``join-room``, the engine's ``connection``); anysio calls an ``Observer`` at the same places instead, so
that the server knows nothing of the tools that watch it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .socket import Socket

logger = logging.getLogger("anysio")


class Observer:
    """What a server tells of its sockets (``Server.observe``). Subclass it and override what you need.

    Each method is called where the change happens, in the server's own turn: it must return quickly and not
    raise (what it raises is logged and does not undo the change); work that waits belongs in a task."""

    def socket_connected(self, socket: Socket) -> None:
        """``socket`` is connected (accepted, in the room of its own id)."""

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        """``socket`` is gone, for Node's ``reason`` ("client namespace disconnect", "transport close", ...)."""

    def room_joined(self, socket: Socket, room: str) -> None:
        """``socket`` joined ``room``, which it was not in (Node's adapter event ``join-room``)."""

    def room_left(self, socket: Socket, room: str) -> None:
        """``socket`` left ``room``, which it was in (Node's adapter event ``leave-room``)."""

    def client_opened(self) -> None:
        """An Engine.IO session opened (Node's ``io.engine`` event ``connection``)."""

    def client_closed(self, reason: str) -> None:
        """An Engine.IO session closed, for ``reason`` (its socket's ``close`` event in Node)."""


class Observers(Observer):
    """The observers of one server, told in the order they were added; false while there are none."""

    def __init__(self) -> None:
        self.observers: list[Observer] = []

    def __bool__(self) -> bool:
        return bool(self.observers)

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    def socket_connected(self, socket: Socket) -> None:
        for o in self.observers:
            _told(o.socket_connected, socket)

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        for o in self.observers:
            _told(o.socket_disconnected, socket, reason)

    def room_joined(self, socket: Socket, room: str) -> None:
        for o in self.observers:
            _told(o.room_joined, socket, room)

    def room_left(self, socket: Socket, room: str) -> None:
        for o in self.observers:
            _told(o.room_left, socket, room)

    def client_opened(self) -> None:
        for o in self.observers:
            _told(o.client_opened)

    def client_closed(self, reason: str) -> None:
        for o in self.observers:
            _told(o.client_closed, reason)


def _told(method: Callable[..., object], *args: object) -> None:
    try:
        method(*args)
    except Exception:
        logger.exception("observer %s failed", getattr(method, "__qualname__", method))
