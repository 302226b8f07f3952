"""Event arguments to and from Socket.IO's JSON-with-attachments form.

Binary values anywhere in the arguments travel as attachments: the JSON holds ``{"_placeholder": true,
"num": n}`` where attachment n was. Rust frames and reassembles the attachments; this module only swaps them in
and out of the Python values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .coerce import to_jsonable

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_BINARY = (bytes, bytearray, memoryview)
_PLAIN = frozenset({str, int, float, bool, type(None)})
# The C encoder and scanner behind json.dumps / json.loads, called directly: the wrappers around them cost more
# than the work for the small payloads of most events. (No circular-reference check: such a value raises
# RecursionError, which the callers treat as unsendable.)
_c_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(json.encoder, "c_make_encoder", None)
_dump_chunks = (
    _c_encoder(None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if _c_encoder is not None
    else None
)
_scan_once: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009


def _dumps(value: Any) -> str:
    return "".join(_dump_chunks(value, 0)) if _dump_chunks is not None else _encoder.encode(value)


class BadAttachments(ValueError):
    """A placeholder names an attachment that did not arrive."""


def _extract(value: Any, out: list[bytes]) -> Any:
    if isinstance(value, _BINARY):
        out.append(bytes(value))
        return {"_placeholder": True, "num": len(out) - 1}
    if isinstance(value, list | tuple):
        return [_extract(v, out) for v in value]
    if isinstance(value, dict):
        return {k: _extract(v, out) for k, v in value.items()}
    return value


def _has_binary(value: Any) -> bool:
    if isinstance(value, _BINARY):
        return True
    if isinstance(value, list | tuple):
        return any(_has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(_has_binary(v) for v in value.values())
    return False


def encode_args(args: list[Any]) -> tuple[str, list[bytes]]:
    """JSON text of ``args`` (an array) and the attachments pulled out of them."""
    plain = _PLAIN
    for a in args:
        if type(a) not in plain:
            break
    else:
        return _dumps(args), []
    values = [to_jsonable(a) for a in args]
    attachments: list[bytes] = []
    if _has_binary(values):
        values = _extract(values, attachments)
    return _dumps(values), attachments


def _insert(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, list):
        return [_insert(v, attachments) for v in value]
    if isinstance(value, dict):
        # As socket.io-parser's reconstructPacket: any object whose _placeholder is true stands for an
        # attachment, other keys or not; a num that names none is an error (Node then closes the connection).
        if value.get("_placeholder") is True:
            num = value.get("num")
            index = int(num) if type(num) is float and num.is_integer() else num
            if type(index) is not int or not 0 <= index < len(attachments):
                raise BadAttachments(f"placeholder for attachment {num!r} of {len(attachments)}")
            return attachments[index]
        return {k: _insert(v, attachments) for k, v in value.items()}
    return value


def decode_args(data_json: str, attachments: list[bytes] | None) -> list[Any]:
    """The arguments of an EVENT or ACK (Rust has checked that the JSON is an array)."""
    try:
        values, end = _scan_once(data_json, 0)
    except StopIteration:  # leading white space: the general path
        values, end = json.loads(data_json), len(data_json)
    if end != len(data_json) and data_json[end:].strip():
        raise ValueError("trailing data after the event's arguments")
    if not isinstance(values, list):
        raise ValueError("event data is not an array")
    return _insert(values, attachments) if attachments else values
