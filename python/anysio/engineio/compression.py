"""Node's two compression options, read into what the Rust core takes: ``per_message_deflate`` (WebSocket
permessage-deflate, RFC 7692; off by default) and ``http_compression`` (gzip or deflate of long-polling responses;
on by default). Each takes True, False, or a dict of options in Python's or Node's spelling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Node's threshold for both: messages and responses shorter than this many bytes go out uncompressed.
THRESHOLD = 1024

_DEFLATE_KEYS = {
    "threshold": "threshold",
    "server_no_context_takeover": "server_no_context_takeover",
    "serverNoContextTakeover": "server_no_context_takeover",
    "client_no_context_takeover": "client_no_context_takeover",
    "clientNoContextTakeover": "client_no_context_takeover",
    "server_max_window_bits": "server_max_window_bits",
    "serverMaxWindowBits": "server_max_window_bits",
    "client_max_window_bits": "client_max_window_bits",
    "clientMaxWindowBits": "client_max_window_bits",
    "level": "level",
}


@dataclass(frozen=True)
class PerMessageDeflate:
    """ws's ``perMessageDeflate`` options. ``server_no_context_takeover``: None accepts what the client asks,
    True always asks it (the server then keeps no compressor between messages), False declines offers that ask
    for it. ``client_no_context_takeover``: ask the client not to keep its context (the server then keeps no
    decompressor between messages). ``server_max_window_bits`` (9 to 15) and ``client_max_window_bits`` (8 to
    15): the windows, smaller windows for less memory per connection. ``level``: zlib's (0 to 9)."""

    threshold: int = THRESHOLD
    server_no_context_takeover: bool | None = None
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    level: int = 6

    def __post_init__(self) -> None:
        checks = (
            (self.threshold >= 0, "threshold must be >= 0"),
            (self.server_max_window_bits in (None, *range(9, 16)), "server_max_window_bits must be 9 to 15"),
            (self.client_max_window_bits in (None, *range(8, 16)), "client_max_window_bits must be 8 to 15"),
            (0 <= self.level <= 9, "level must be 0 to 9"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"per_message_deflate: {message}")

    def native(self) -> tuple[int, bool | None, bool, int | None, int | None, int]:
        """The tuple ``EngineCore(per_message_deflate=)`` takes."""
        return (
            self.threshold,
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self.client_max_window_bits,
            self.level,
        )


def per_message_deflate(value: bool | Mapping[str, Any] | PerMessageDeflate | None) -> PerMessageDeflate | None:
    """The ``per_message_deflate=`` option: False or None is off (Node's default), True is Node's defaults."""
    if value is None or value is False:
        return None
    if value is True:
        return PerMessageDeflate()
    if isinstance(value, PerMessageDeflate):
        return value
    unknown = [key for key in value if key not in _DEFLATE_KEYS]
    if unknown:
        raise TypeError(f"per_message_deflate: unknown option {unknown[0]!r}")
    return PerMessageDeflate(**{_DEFLATE_KEYS[key]: v for key, v in value.items()})


def http_compression(value: bool | Mapping[str, Any] | None) -> int | None:
    """The ``http_compression=`` option as the threshold in bytes, or None when off (False or None): True (the
    default) is Node's 1024 bytes; ``{"threshold": n}`` sets it."""
    if value is True:
        return THRESHOLD
    if value is None or value is False:
        return None
    unknown = [key for key in value if key != "threshold"]
    if unknown:
        raise TypeError(f"http_compression: unknown option {unknown[0]!r}")
    threshold = int(value.get("threshold", THRESHOLD))
    if threshold < 0:
        raise ValueError("http_compression: threshold must be >= 0")
    return threshold
