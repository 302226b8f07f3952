"""Node's catch-all listeners (onAny, onAnyOutgoing), several handlers of one event, per-packet middleware
(socket.use) and socket.timeout(t).emit_with_ack, with the official client (tests/node/sio_client.mjs). Every test
runs on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from anysio import Ack, AckTimeout, Server, Socket
from tests.e2e.sio_helpers import Record, node_sio, serving, silent_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def listening_server() -> tuple[Server, Record]:
    """Each socket gets two catch-all listeners (the prepended one first) and an outgoing one; "greet" has two
    handlers; "quiet" removes the socket's listeners."""
    sio = Server()
    rec = Record()

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        @socket.on_any
        def second(event: str, *args: Any) -> None:
            rec.add("order", ("any-2", event))

        @socket.prepend_any
        def first(event: str, *args: Any) -> None:
            has_ack = bool(args) and isinstance(args[-1], Ack)
            rec.add("any", (event, list(args[:-1] if has_ack else args), has_ack))
            rec.add("order", ("any-1", event))
            if event == "claim" and has_ack:
                args[-1]("from the catch-all")  # answers first: the handler's reply is ignored

        @socket.on_any_outgoing
        def outgoing(event: str, *args: Any) -> None:
            rec.add("out", [event, *args])

    @sio.on("greet")
    def greet_first(socket: Socket, name: str) -> str:
        rec.add("order", ("greet-1", name))
        return f"hello {name}"

    @sio.on("greet")
    async def greet_second(socket: Socket, name: str, ack: Ack) -> None:
        rec.add("order", ("greet-2", name))
        ack("too late")

    @sio.on("claim")
    def claim(socket: Socket) -> str:
        return "from the handler"

    @sio.on("news")
    async def news(socket: Socket, text: str) -> None:
        await socket.emit("news", text, 1)
        await sio.emit("all", text)

    @sio.on("quiet")
    def quiet(socket: Socket) -> None:
        socket.off_any()
        socket.off_any_outgoing()

    return sio, rec


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_catch_all_listeners_and_several_handlers_in_order(transports: str) -> None:
    sio, rec = listening_server()
    async with serving(sio) as address, node_sio(address, transports=transports) as client:
        assert await client.call("greet", "ann") == ["hello ann"]
        assert rec.values("order") == [("any-1", "greet"), ("any-2", "greet"), ("greet-1", "ann"), ("greet-2", "ann")]
        assert rec.values("any") == [("greet", ["ann"], True)]

        assert await client.call("claim") == ["from the catch-all"]
        await client.emit("no-handler", {"x": [1, None]})
        await client.call("news", "hi")
        assert client.received("news") == [["hi", 1]] and client.received("all") == [["hi"]]
        assert rec.values("any")[1:] == [
            ("claim", [], True),
            ("no-handler", [{"x": [1, None]}], False),
            ("news", ["hi"], True),
        ]
        # Its own emits and the broadcasts that reach it; acks are not events.
        assert rec.values("out") == [["news", "hi", 1], ["all", "hi"]]

        await client.call("quiet")
        await client.call("news", "later")
        assert await client.call("greet", "bob") == ["hello bob"]
        assert len(rec.values("any")) == 5  # the "quiet" event itself was the last one seen
        assert len(rec.values("out")) == 2


async def test_a_failing_catch_all_listener_is_reported_and_the_event_goes_on() -> None:
    sio = Server()
    rec = Record()

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        @socket.on_any
        async def broken(event: str, *args: Any) -> None:
            raise RuntimeError(f"listener saw {event}")

    @sio.on("error")
    def error(socket: Socket | None, exc: BaseException) -> None:
        rec.add("error", (socket.id if socket else None, str(exc)))

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with serving(sio) as address, node_sio(address) as client:
        assert await client.call("echo", 1) == [1]
        [(sid, message)] = await rec.wait("error")
        assert (sid, message) == (client.all("connect")[0]["id"], "listener saw echo")


def guarded_server() -> tuple[Server, Record]:
    """Packet middlewares: a plain one stopping "secret", then a coroutine one recording every packet; "/"'s
    error handler records what stopped."""
    sio = Server()
    rec = Record()

    @sio.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        @socket.use
        def no_secrets(packet: list[Any]) -> None:
            if packet[0] == "secret":
                raise PermissionError("unauthorized event")

        @socket.use
        async def record(packet: list[Any]) -> None:
            rec.add("passed", packet)

    @sio.on("error")
    def error(socket: Socket | None, exc: BaseException) -> None:
        rec.add("error", (socket.id if socket else None, type(exc).__name__, str(exc)))

    @sio.on("secret")
    def secret(socket: Socket, *args: Any) -> str:
        rec.add("secret", args)
        return "leaked"

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    return sio, rec


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_packet_middleware_stops_a_packet_and_reports_it(transports: str) -> None:
    sio, rec = guarded_server()
    async with serving(sio) as address, node_sio(address, transports=transports) as client:
        sid = client.all("connect")[0]["id"]
        secret = await client.emit("secret", "pin", ack=True)
        # One socket's packets are handled in order: once "echo" is answered, "secret" has been stopped.
        assert await client.call("echo", b"\x01", {"n": 2}) == [b"\x01", {"n": 2}]
        assert rec.values("error") == [(sid, "PermissionError", "unauthorized event")]
        assert rec.values("secret") == []
        assert rec.values("passed") == [["echo", b"\x01", {"n": 2}]]
        assert not [e for e in client.all("ack") if e["id"] == secret]


async def test_socket_timeout_emit_with_ack() -> None:
    sio = Server()

    @sio.on("ask")
    async def ask(socket: Socket, question: str) -> Any:
        return await socket.timeout(5).emit_with_ack(question, 1)

    @sio.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with serving(sio) as address, node_sio(address) as client:
        await client.ack_reply("question", "answer")
        assert await client.call("ask", "question") == ["answer"]
        assert client.received("question") == [[1]]
        ws, silent_id = await silent_client(address)
        with anyio.fail_after(5):
            while silent_id not in sio.sockets:  # its CONNECT is answered before it is in the table
                await client.call("echo")
        with pytest.raises(AckTimeout):
            await sio.sockets[silent_id].timeout(0.2).emit_with_ack("question")
        await ws.aclose()
