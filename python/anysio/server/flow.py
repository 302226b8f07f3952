"""Flow control an application can see and set: backpressure (a socket's ``buffered_amount``, ``await emit``
waiting for a slow client to drain, ``emit_nowait`` refusing) and rate limits (events per second per socket; the
per-address limit on new connections is the core's, ``RateLimit`` says it for both)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import anyio

from ..codec.wire import encode_args
from ..engineio.runtime import SioCore
from ..exceptions import DrainTimeout

logger = logging.getLogger("anysio")
#: The default high-water mark: a client with this much waiting makes ``await socket.emit`` wait.
HIGH_WATER_MARK = 1024 * 1024


@dataclass(frozen=True)
class RateLimit:
    """At most ``per_second`` on average, with bursts of up to ``burst`` (``per_second`` when None) at once: a
    token bucket. ``Server(event_rate_limit=...)`` applies it to the events of each socket,
    ``Server(connection_rate_limit=...)`` to the new connections (handshakes) from each IP address."""

    per_second: float
    burst: float | None = None

    def __post_init__(self) -> None:
        if not self.per_second > 0 or (self.burst is not None and not self.burst >= 1):
            raise ValueError(f"a rate limit needs per_second > 0 and burst >= 1: {self}")

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(self.per_second, 1.0)

    @classmethod
    def pair(cls, value: RateLimit | float | Mapping[str, Any] | None) -> tuple[float, float] | None:
        """(per second, burst) for the core, or None."""
        rate = cls.of(value)
        return (rate.per_second, rate.capacity) if rate is not None else None

    @classmethod
    def of(cls, value: RateLimit | float | Mapping[str, Any] | None) -> RateLimit | None:
        """``RateLimit(...)``, a number (per second), a dict of its fields, or None (no limit)."""
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        return cls(float(value))


class TokenBucket:
    """One socket's events against its ``RateLimit``."""

    __slots__ = ("at", "limit", "tokens", "warned")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = limit.capacity
        self.at = time.monotonic()
        self.warned = False

    def take(self) -> bool:
        """Spend one token; False (nothing spent) when there is none."""
        now = time.monotonic()
        limit = self.limit
        self.tokens = min(limit.capacity, self.tokens + (now - self.at) * limit.per_second)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        return round(max(0.0, 1.0 - self.tokens) / self.limit.per_second, 3)


def limited_reply(event: str, retry_after: float) -> dict[str, Any]:
    """What a client gets for an event over its socket's rate limit: in its ack when it asked for one, else as
    an ``error`` event (with ``event`` added), as for a payload that does not fit its handler."""
    return {"error": f"rate limit exceeded: {event!r} not handled", "retry_after": retry_after}


class Flow:
    """A server's flow control. Its high-water mark: ``await socket.emit`` waits while the socket's buffer is at
    or over it, until the client reads it down (the core reports ``("drained", socket)``), or raises
    DrainTimeout. Its event rate limit: each new socket's token bucket (``socket.rate_limit`` changes it)."""

    def __init__(
        self,
        core: SioCore,
        high_water_mark: int | None,
        drain_timeout: float | None,
        event_rate_limit: RateLimit | None,
    ) -> None:
        if high_water_mark is not None and high_water_mark < 1:
            raise ValueError("high_water_mark must be at least 1 byte (None: emits never wait)")
        self.core = core
        self.mark = high_water_mark
        self.timeout = drain_timeout
        self.event_rate_limit = event_rate_limit
        #: Events refused for their socket's rate limit (``/metrics``).
        self.rate_limited = 0
        self._waiting: dict[int, anyio.Event] = {}

    def limited(self, socket: int, sid: str, bucket: TokenBucket, event: str | None, ack_id: int | None) -> None:
        """An event over its socket's rate limit: not handled; the client is told (``limited_reply``), and the
        first of each socket's is logged."""
        self.rate_limited += 1
        name = event if event is not None else "(numeric)"
        reply = limited_reply(name, bucket.retry_after())
        if not bucket.warned:
            bucket.warned = True
            logger.info("events from %s over its rate limit (%s): refused", sid, bucket.limit)
        if ack_id is not None:
            data, attachments = encode_args([reply])
            self.core.emit_to(socket, data, attachments, ack_id, True)
        else:
            data, attachments = encode_args(["error", {"event": name, **reply}])
            self.core.emit_to(socket, data, attachments)

    def full(self, socket: int) -> bool:
        """Whether an emit to ``socket`` has to wait (or, without waiting, is refused)."""
        return self.mark is not None and (self.core.buffered_amount(socket) or 0) >= self.mark

    async def drain(self, socket: int, name: str) -> None:
        """Wait until ``socket``'s buffer is under the mark (or the socket is gone)."""
        assert self.mark is not None
        drained = self._waiting.get(socket)
        if drained is None:
            drained = self._waiting[socket] = anyio.Event()
            self.core.watch_drain(socket, self.mark)
        try:
            with anyio.fail_after(self.timeout) if self.timeout is not None else nullcontext():
                await drained.wait()
        except TimeoutError:
            raise DrainTimeout(
                f"{name}'s buffer stayed over high_water_mark ({self.mark} bytes) for {self.timeout} s: not sent"
            ) from None

    def drained(self, socket: int) -> None:
        """The core's ``("drained", socket)``: the emitters waiting for it go on."""
        drained = self._waiting.pop(socket, None)
        if drained is not None:
            drained.set()
