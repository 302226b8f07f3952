"""Write the fuzz targets' seed corpora from the test vectors (tests/vectors/*.json) into fuzz/seeds/TARGET/, one
file per seed named by its hash, in each target's input format (fuzz/fuzz_targets/*.rs say what it is).

    python3 scripts/fuzz_seeds.py [OUT_DIR]      # fuzz/seeds by default; scripts/fuzz.sh runs it
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
#: socketio_session's record separator and record kinds.
RECORD, BINARY, MSGPACK = b"\x1e", b"\x01", b"\x05"
#: The first byte of http_request's and websocket_frames' input: the default limits, the bytes split in the middle
#: or the small limits, split near the start.
KNOBS = (b"\x80", b"\x15")


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def field(case: dict[str, Any], key: str) -> bytes | None:
    """``key`` as text, or ``key_hex`` as hex."""
    if isinstance(case.get(key), str):
        return str(case[key]).encode()
    if isinstance(case.get(f"{key}_hex"), str):
        return bytes.fromhex(case[f"{key}_hex"])
    return None


def reference_steps() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for name in ("eio_reference.json", "sio_reference.json"):
        for case in load(name)["cases"]:
            yield name, case["steps"]


def reference_requests() -> Iterator[bytes]:
    """The recorded requests, written as a client writes them (the records keep LF and leave out the end)."""
    for _, steps in reference_steps():
        for step in steps:
            if "request" in step:
                body = str(step.get("body", "")).encode()
                head = step["request"].replace("<port>", "3000").replace("<sid>", "AAAAAAAAAAAAAAAAAAAA")
                yield head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def http_wires() -> Iterator[bytes]:
    for case in load("http.json")["cases"]:
        wire = field(case, "wire")
        if wire is not None:
            yield wire
    for case in load("engineio_server.json")["errors"]:
        yield str(case["request"]).encode()
    yield from reference_requests()


def websocket_frames() -> Iterator[bytes]:
    doc = load("websocket.json")
    for key in ("decode", "encode"):
        for case in doc[key]:
            yield bytes.fromhex(case["hex"])


def engineio_payloads() -> Iterator[bytes]:
    doc = load("engineio_packets.json")
    for case in doc["payloads"]:
        yield str(case["wire"]).replace("\\x1e", "\x1e").encode()
    for wire in doc["invalid_payloads"]:
        yield str(wire).replace("\\x1e", "\x1e").encode()
    server = load("engineio_server.json")
    yield from (str(case["body"]).encode() for case in server["posts"])
    yield from (str(case["text"]).encode() for case in server["ws_frames"] if "text" in case)
    # Engine.IO v3 (socket.io-client 2.x): text payloads with lengths, a binary payload, a binary WebSocket frame.
    yield from (b"1:2", b"12:4hello world1:6", "4:4\u20ac\U0001f600".encode(), b"6:b4AQID")
    yield from (bytes([0, 2, 255]) + b"4a" + bytes([1, 3, 255, 4, 1, 2]), bytes([4, 1, 2, 3]))


def socketio_packets() -> Iterator[bytes]:
    doc = load("socketio_packets.json")
    yield from (str(case["wire"]).encode() for case in doc["decode"])
    yield from (b"2" + str(case["data"]).encode() for case in doc["event_name"])


def socketio_sessions() -> Iterator[bytes]:
    """Each reference case's client messages: WebSocket frames as they are, polling POST bodies packet by packet."""
    for name, steps in reference_steps():
        if name != "sio_reference.json":
            continue
        records: list[bytes] = []
        for step in steps:
            send = step.get("ws_send")
            if send is not None and send["op"] == "binary":
                records.append(BINARY + bytes.fromhex(send["frame"]))
            elif send is not None:
                records.append(str(send["frame"]).encode())
            elif "body" in step:
                records.extend(str(step["body"]).encode().split(RECORD))
        if records:
            yield RECORD.join(records)
    # socket.io-msgpack-parser sessions: the client's packets as the official client writes them, in order.
    client = [BINARY + bytes.fromhex(case["hex"]) for case in load("msgpack_packets.json")["client"]]
    yield RECORD.join([MSGPACK, *client])
    yield RECORD.join([MSGPACK, *(client[i] for i in (0, 2, 3, 5, 6, 7))])


def socketio_msgpack() -> Iterator[bytes]:
    doc = load("msgpack_packets.json")
    for side in ("client", "server"):
        yield from (bytes.fromhex(case["hex"]) for case in doc[side])


def redis_messages() -> Iterator[bytes]:
    yield from (bytes.fromhex(m["hex"]) for m in load("redis_adapter.json")["messages"])


def permessage_deflate() -> Iterator[bytes]:
    """Offers (first byte 0), raw DEFLATE messages as a client sends them (1: sync-flushed, the trailer cut) and
    plain messages (2, and 0x3e: a 15-bit window at level 1)."""
    offers = [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
        'x-webkit-deflate-frame, permessage-deflate; server_max_window_bits="12"',
        "permessage-deflate; client_max_window_bits=16",
    ]
    yield from (b"\x00" + offer.encode() for offer in offers)
    for message in (b'42["chat","hello hello hello"]', b"x" * 3000, bytes(range(256))):
        deflate = zlib.compressobj(wbits=-15)
        yield b"\x01" + (deflate.compress(message) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
        yield b"\x02" + message
        yield b"\x3e" + message


def with_knobs(seeds: Iterable[bytes]) -> Iterator[bytes]:
    for seed in seeds:
        for knobs in KNOBS:
            yield knobs + seed


TARGETS = {
    "http_request": lambda: with_knobs(http_wires()),
    "http_differential": http_wires,
    "websocket_frames": lambda: with_knobs(websocket_frames()),
    "engineio_packets": engineio_payloads,
    "socketio_packet": socketio_packets,
    "socketio_session": socketio_sessions,
    "socketio_msgpack": socketio_msgpack,
    "redis_messages": redis_messages,
    "permessage_deflate": permessage_deflate,
}


def main(out: Path) -> None:
    for target, seeds in TARGETS.items():
        directory = out / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        count = 0
        for seed in seeds():
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
            count += 1
        print(f"{target}: {count} seeds")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds")
