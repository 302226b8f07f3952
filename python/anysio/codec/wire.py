"""Event arguments to and from Socket.IO's JSON-with-attachments form.

Binary values anywhere in the arguments travel as attachments: the JSON holds ``{"_placeholder": true,
"num": n}`` where attachment n was. Rust frames and reassembles the attachments, and writes the JSON of what is
emitted (``_native.encode_args``); this module swaps incoming attachments into the decoded values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic_core import from_json as _from_json

from .._native import encode_args as _encode_args
from .coerce import to_jsonable

logger = logging.getLogger("anysio")


def _json_parse_int(digits: str) -> int | float:
    """An integer as JSON.parse reads it where Python cannot: past Python's int/str digit limit (4300 digits by
    default) it is a float, as every number is to JSON.parse (Infinity past 309 digits)."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


# Python's JSON reader, as JSON.parse reads numbers: 1e400 is already float('inf'), and integers past the digit
# limit become floats. Its C scanner is called directly: the wrapper around it costs more than the work for the
# small payloads of most events.
_DECODER = json.JSONDecoder(parse_int=_json_parse_int)
_scan_once: Callable[[str, int], tuple[Any, int]] = getattr(_DECODER, "scan_once")  # noqa: B009


class BadAttachments(ValueError):
    """A placeholder names an attachment that did not arrive."""


class Undecodable(ValueError):
    """Arguments Python cannot read: in practice JSON nested deeper than Python's recursion limit lets its reader
    go (about 980 levels), which JSON.parse reads (Rust has checked that the text is a JSON array)."""


def encode_args(args: list[Any]) -> tuple[str, list[bytes]]:
    """JSON text of ``args`` (an array) and the attachments pulled out of them, in one pass in Rust; values JSON
    has no type for go through ``to_jsonable``. NaN and infinities are written ``null``, as JSON.stringify
    writes them. Raises TypeError, ValueError (a value that contains itself) as ``json.dumps`` would."""
    return _encode_args(args, to_jsonable)


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
    """The arguments of an EVENT or ACK (Rust has checked that the JSON is an array).

    pydantic-core's parser first (twice as fast as Python's for an event's arguments); what it refuses and
    JSON.parse accepts (a lone surrogate, nesting past 200 levels) goes to Python's, which decides."""
    try:
        values = _from_json(data_json)
    except ValueError:
        try:
            values = _python_json(data_json)
        except (ValueError, RecursionError) as e:
            raise Undecodable(f"event arguments Python cannot read: {type(e).__name__}: {e}") from None
    if not isinstance(values, list):
        raise Undecodable("event data is not an array")
    return _insert(values, attachments) if attachments else values


def _python_json(data_json: str) -> Any:
    try:
        values, end = _scan_once(data_json, 0)
    except StopIteration:  # leading white space: the general path
        values, end = _DECODER.decode(data_json), len(data_json)
    if end != len(data_json) and data_json[end:].strip():
        raise ValueError("trailing data after the event's arguments")
    return values


def refusal_json(message: str, data: Any) -> str:
    """CONNECT_ERROR data as Node sends it: {"message": ..., "data": ...}. Data that JSON cannot carry is left
    out (and logged) rather than leaving the client without an answer."""
    body: dict[str, Any] = {"message": str(message)}
    if data is not None:
        body["data"] = data
    try:
        # Written as every emitted value is (NaN and infinities as null, as JSON.stringify writes them).
        text, attachments = encode_args([body])
        if attachments:
            raise TypeError("binary data cannot go in a CONNECT_ERROR packet")
        return text[1:-1]
    except (TypeError, ValueError, RecursionError) as e:
        logger.error("ConnectionRefused data cannot be sent as JSON: %s", e)
        return json.dumps({"message": str(message)}, separators=(",", ":"), ensure_ascii=False)
