"""The examples the README shows, driven by the official socket.io-client: examples/echo.py and the conformance
servers' exact configuration. Also the echo example on uvloop, the third event loop anysio supports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from anysio import Server

from .sio_helpers import Address, node_sio, serving

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anyio


def load_example(relative: str) -> ModuleType:
    """Import an example file afresh (each test gets its own module, so its own Server)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their string annotations through it
    spec.loader.exec_module(module)
    return module


async def check_echo_example(sio: Server) -> None:
    async with serving(sio) as address:
        await check_echo_clients(address)


async def check_echo_clients(address: Address) -> None:
    """examples/echo.py, served at ``address``, as the official client meets it: a refusal, joins, a chat that
    reaches the room, a payload that does not fit, binary echoed in an ack."""
    async with node_sio(address, auth={"token": "wrong"}, connected=False) as refused:
        err = await refused.expect("connect_error")
        assert err["message"] == "login first" and err["data"] == {"hint": "send a token"}
    async with node_sio(address) as alice, node_sio(address, transports="websocket") as bob:
        assert await alice.call("join", "lobby") == [sorted(["lobby", alice.all("connect")[0]["id"]])]
        await bob.call("join", "lobby")
        # A dict is coerced into the Message dataclass; the room but not the sender gets it back as JSON.
        assert await alice.call("chat", {"room": "lobby", "text": "hi"}) == ["delivered"]
        assert await bob.receive("chat") == [[{"room": "lobby", "text": "hi"}]]
        assert alice.received("chat") == []
        # A payload that does not fit the dataclass is answered in the ack, and the server goes on.
        (error,) = await alice.call("chat", {"room": "lobby"})
        assert "text" in error["error"]
        payload = ["x", b"\x00\x01", {"nested": [b"\xff"]}]
        assert await bob.call("echo", *payload) == payload


async def test_echo_example(anyio_backend: str) -> None:
    await check_echo_example(load_example("examples/echo.py").sio)


def test_echo_example_on_uvloop() -> None:
    sio = load_example("examples/echo.py").sio
    anyio.run(check_echo_example, sio, backend="asyncio", backend_options={"use_uvloop": True})


@pytest.mark.parametrize("parser", ["default", "msgpack"])
async def test_conformance_socketio_server(anyio_backend: str, parser: str) -> None:
    """The test suite's configuration, and with ``--parser msgpack`` the same with socket.io-msgpack-parser."""
    example = load_example("examples/conformance/socketio_server.py")
    sio = example.make_msgpack_server() if parser == "msgpack" else example.make_server()
    async with serving(sio) as address:
        for nsp in ("/", "/custom"):
            async with node_sio(address, nsp=nsp, auth={"token": "123"}, parser=parser) as client:
                assert await client.receive("auth") == [[{"token": "123"}]]
                await client.emit("message", 1, "2", {"3": b"\x04"})
                assert await client.receive("message-back") == [[1, "2", {"3": b"\x04"}]]
                assert await client.call("message-with-ack", 1, "2", {"3": b"\x04"}) == [1, "2", {"3": b"\x04"}]
