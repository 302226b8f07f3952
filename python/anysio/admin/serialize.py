"""What the Admin UI reads: sockets as lib/index.ts's ``serialize`` writes them, the aggregated events
(``EventBuffer``), and timestamps as JSON writes a JavaScript ``Date``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ..adapters.base import FetchedSocket

#: Where instrument keeps what the UI shows of a socket in its ``data`` (Node's ``socket.data._admin``), so that
#: ``fetch_sockets`` carries it from other servers too.
ADMIN_KEY = "_admin"


def now() -> str:
    """The current time as JSON.stringify writes ``new Date()``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_data(data: dict[str, Any]) -> Any:
    """``socket.data`` without the admin's key, as JSON can carry it (what JSON cannot is written as its repr)."""
    return json.loads(json.dumps({k: v for k, v in data.items() if k != ADMIN_KEY}, default=repr))


def serialize(socket: FetchedSocket, nsp: str) -> dict[str, Any]:
    """A socket of this server or of another one, as the UI lists it (``SerializedSocket``)."""
    admin = socket.data.get(ADMIN_KEY) or {}
    hs = socket.handshake
    headers = hs.headers
    address = headers.get("cf-connecting-ip") or headers.get("x-forwarded-for") or hs.address
    return {
        "id": socket.id,
        "clientId": admin.get("clientId"),
        "transport": admin.get("transport"),
        "nsp": nsp,
        "data": user_data(socket.data),
        "handshake": {
            "address": address,
            "headers": headers,
            "query": hs.query,
            "issued": hs.issued,
            # A socket of another server carries only what Node's RemoteSocket does of its handshake.
            "secure": getattr(hs, "secure", False),
            "time": getattr(hs, "time", None),
            "url": getattr(hs, "url", None),
            "xdomain": getattr(hs, "xdomain", None),
        },
        "rooms": sorted(socket.rooms),
    }


class EventBuffer:
    """Counts of engine events per second, type and subtype, sent with each ``server_stats`` then cleared
    (Node's ``EventBuffer``: "rawConnection", "rawDisconnection" by reason)."""

    def __init__(self) -> None:
        self.buffer: dict[tuple[int, str, str | None], int] = {}

    def push(self, kind: str, sub: str | None = None, count: int = 1) -> None:
        key = (int(time.time()) * 1000, kind, sub)
        self.buffer[key] = self.buffer.get(key, 0) + count

    def take(self) -> list[dict[str, Any]]:
        values = [
            {"timestamp": ts, "type": kind, **({"subType": sub} if sub is not None else {}), "count": count}
            for (ts, kind, sub), count in self.buffer.items()
        ]
        self.buffer.clear()
        return values
