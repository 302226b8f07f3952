"""The workers' bus decoder fuzzed with Hypothesis: any bytes are a message or dropped (never an exception), and
malformed messages of every kind, sent over a real unix socket to a bus serving a real server, are logged and
dropped while the bus goes on reading (a failure there would end the worker's bus: every broadcast between
workers lost)."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anysio import Server
from anysio.adapters.bus import BusAdapter, attach
from anysio.ipc import Bus, _parse

#: What JSON carries, NaN and the infinities included (Python's json reads and writes them).
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: The message kinds the bus serves (anysio.adapters.bus.attach), and a well-formed value for every field they read.
KINDS = ["broadcast", "broadcast_ack", "fetch", "join", "leave", "disconnect", "server_side", "acks", "ack_reply"]
KINDS += ["up", "reply", "unheard-of"]
WELL_FORMED: dict[str, Any] = {
    "nsp": "/",
    "rooms": [],
    "except": ["a"],
    "data": '["x",1]',
    "att": [],
    "volatile": False,
    "timeout": 0.5,
    "to": ["r"],
    "close": False,
    "rid": "r1",
    "op": "fetch",
    "from": 1,
    "req": 1,
}
FIELDS = sorted(WELL_FORMED)
#: A well-formed message of some kind with fields left out and others replaced by any JSON.
messages = st.builds(
    lambda kind, missing, replaced: {
        "t": kind,
        **{k: v for k, v in WELL_FORMED.items() if k not in missing},
        **replaced,
    },
    st.sampled_from(KINDS),
    st.sets(st.sampled_from(FIELDS), max_size=2),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=2),
)


def expected(value: Any) -> bool:
    """Whether ``_parse`` takes ``value`` as a message."""
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        return False
    return value["t"] != "reply" or isinstance(value.get("req"), int)


@given(st.binary(max_size=512))
def test_any_bytes_are_a_message_or_dropped(body: bytes) -> None:
    msg = _parse(body)
    assert msg is None or isinstance(msg["t"], str)


@given(json_values | messages)
def test_json_is_a_message_exactly_when_it_has_a_kind(value: Any) -> None:
    assert (_parse(json.dumps(value).encode()) is not None) == expected(value)


@given(st.integers(min_value=1_000, max_value=100_000), st.sampled_from(["[", '{"a":', '{"t":"x","data":[']))
def test_nesting_deeper_than_the_stack_is_dropped(depth: int, opener: str) -> None:
    """json.loads raises RecursionError past about a thousand levels: that was the bus's end."""
    closer = {"[": "]", '{"a":': "}", '{"t":"x","data":[': "]"}[opener]
    body = (opener * depth + "0" + closer * depth).encode()
    assert _parse(body) is None


def frame(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg).encode()
    return struct.pack(">I", len(body)) + body


@asynccontextmanager
async def serving_bus() -> AsyncIterator[tuple[anyio.abc.SocketStream, Probe]]:
    """A bus (worker 0 of 2) serving a real server's namespaces, as anysio.workers wires one, and a stream to it."""
    directory = Path(tempfile.mkdtemp(prefix="anysio-"))  # short: a unix socket's path fits in 108 bytes
    try:
        bus = Bus(str(directory), 0, 2)
        server = Server()
        server.become_worker(0, lambda nsp: BusAdapter(nsp, bus), bus.hand_off)
        attach(server, bus)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.serve)
            async with await anyio.connect_unix(directory / "b0.sock") as stream:
                probe = Probe(stream)
                bus.on("probe", probe.heard)
                yield stream, probe
            tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Probe:
    """Proof that the bus still reads: a message of its own, sent after the others and handled in order."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.events: list[anyio.Event] = []

    def heard(self, msg: dict[str, Any]) -> None:
        self.events[msg["n"]].set()

    async def answered(self) -> None:
        """Probes handled after everything sent before them: the second also after the tasks that the handlers of
        the others started have had their turn (one that fails ends the bus's task group, and with it this wait)."""
        for _ in range(2):
            self.events.append(anyio.Event())
            await self.stream.send(frame({"t": "probe", "n": len(self.events) - 1}))
            with anyio.fail_after(5):
                await self.events[-1].wait()


@pytest.mark.anyio
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(messages, min_size=1, max_size=8))
async def test_malformed_messages_leave_the_bus_serving(anyio_backend: str, batch: list[dict[str, Any]]) -> None:
    async with serving_bus() as (stream, probe):
        for msg in batch:
            await stream.send(frame(msg))
        await probe.answered()


@pytest.mark.anyio
async def test_a_deeply_nested_message_and_a_failing_task_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """The two ways a peer's message ended the bus, as regressions: json.loads's RecursionError, and an exception
    in a task a handler spawned (an "acks" message without "from" made the reply fail in its own task)."""
    acks = {"t": "acks", "nsp": "/", "rooms": [], "except": [], "data": '["x"]', "att": [], "volatile": False}
    async with serving_bus() as (stream, probe):
        await stream.send(struct.pack(">I", 200_000) + b"[" * 100_000 + b"]" * 100_000)
        await stream.send(frame({**acks, "timeout": 1, "rid": "r"}))
        await probe.answered()
    logged = [r.getMessage() for r in caplog.records]
    assert len([m for m in logged if m.startswith("malformed bus message dropped")]) == 1, logged
    assert len([m for m in logged if m.startswith("bus task reply failed")]) == 1, logged
