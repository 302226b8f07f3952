"""anysio.server.dispatcher without sockets: the core's event tuples in, handler calls and core calls out.

``FakeCore`` stands in for ``_native.EngineCore``: mypy checks that it provides ``SioCore``, the interface the
Socket.IO layer calls (which the real core provides too, per its stub), and it records every call, so each test can
say exactly what the Rust layer would have been asked to do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, assert_type

import anyio
import pytest

from anysio import Ack, AckTimeout, ConnectionRefused, Disconnected, Server, Socket
from anysio.codec.wire import refusal_json
from anysio.engineio.runtime import SioCore, native_core
from tests.notifier import Notifier

if TYPE_CHECKING:
    from anysio._native import CoreEvent

    pass

REQUEST = (
    "GET",
    "/socket.io/",
    "EIO=4&transport=polling&x=1",
    [("host", "h"), ("origin", "http://o")],
    ("10.0.0.1", 7),
)
CLIENT = 1


def event(key: int, data: str, ack_id: int | None, attachments: list[bytes] | None) -> tuple[Any, ...]:
    """The "event" tuple the core hands over for an EVENT whose data is ``data``: the name taken out as Rust does."""
    values = json.loads(data)
    if isinstance(values[0], str):
        args = json.dumps(values[1:], separators=(",", ":"))
        return ("event", key, values[0], args, len(values) - 1, ack_id, attachments)
    return ("event", key, None, data, len(values), ack_id, attachments)


class FakeCore(Notifier):
    """Records the calls the dispatcher, sockets and adapter make on the core."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.accepting = True

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self.notify()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == name]

    def emits(self) -> list[tuple[int, Any, list[bytes], int | None, bool]]:
        """emit_to calls with the JSON decoded: (socket, args, attachments, id, ack_reply)."""
        return [(s, json.loads(d), a, i, r) for s, d, a, i, r in self.named("emit_to")]

    # SioCore: the Socket.IO layer's calls.
    def add_namespace(self, nsp: str) -> None:
        self._record("add_namespace", nsp)

    def remove_namespace(self, nsp: str) -> bool:
        self._record("remove_namespace", nsp)
        return True

    def set_dynamic_namespaces(self, on: bool) -> None:
        self._record("set_dynamic_namespaces", on)

    def accept(self, socket: int) -> bool:
        self._record("accept", socket)
        return self.accepting

    def refuse(self, socket: int, data_json: str) -> None:
        self._record("refuse", socket, json.loads(data_json))

    def disconnect(self, socket: int, close: bool = False) -> None:
        self._record("disconnect", socket, close)

    def close(self, key: int) -> None:
        self._record("close", key)

    def emit_to(
        self,
        socket: int,
        data_json: str | bytes,
        attachments: Any = (),
        id: int | None = None,
        ack_reply: bool = False,
        compress: bool = True,
    ) -> bool:
        self._record("emit_to", socket, data_json, list(attachments), id, ack_reply, *([] if compress else [False]))
        return True

    def join(self, socket: int, rooms: list[str]) -> None:
        self._record("join", socket, rooms)

    def rooms_of(self, socket: int) -> list[str]:
        return []

    def leave(self, socket: int, room: str) -> None:
        self._record("leave", socket, room)

    def targets(self, nsp: str, rooms: list[str] = [], except_rooms: list[str] = []) -> list[int]:  # noqa: B006
        return []

    def broadcast_event(
        self,
        nsp: str,
        data_json: str | bytes,
        rooms: list[str] = [],  # noqa: B006
        except_rooms: list[str] = [],  # noqa: B006
        attachments: list[bytes] = [],  # noqa: B006
        id: int | None = None,
        volatile: bool = False,
        compress: bool = True,
    ) -> list[int]:
        flags = [] if compress else [False]
        self._record("broadcast_event", nsp, data_json, rooms, except_rooms, attachments, id, volatile, *flags)
        return []

    def socket_count(self, nsp: str) -> int:
        return 0

    def metrics(self) -> dict[str, Any]:
        return {}

    def buffered_amount(self, socket: int) -> int | None:
        return 0

    def watch_drain(self, socket: int, mark: int) -> None:
        pass

    def respond(self, conn: int, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._record("respond", conn, status, headers, body)

    def accept_handshake(self, conn: int, sid: str | None = None) -> None:
        self._record("accept_handshake", conn, sid)

    def refuse_handshake(self, conn: int, code: int, message: str | None = None) -> None:
        self._record("refuse_handshake", conn, code, message)


@asynccontextmanager
async def running(sio: Server, core: FakeCore | None = None) -> AsyncIterator[FakeCore]:
    """``sio`` with a FakeCore, its dispatcher's tasks in a task group of the test's backend."""
    core = core or FakeCore()
    sio._core = core  # checked: FakeCore provides SioCore
    async with anyio.create_task_group() as tg:
        with sio.runtime.hosting(tg):
            try:
                yield core
            finally:
                tg.cancel_scope.cancel()


def dispatch(sio: Server, *events: tuple[Any, ...]) -> None:
    sio._dispatcher.dispatch(list(events))


def open_and_connect(sio: Server, key: int, nsp: str = "/", auth: str | None = None, sid: str | None = None) -> None:
    dispatch(sio, ("open", CLIENT, "eio-sid", "", REQUEST), ("connect", key, CLIENT, nsp, sid or f"s{key}", auth))


async def connected(sio: Server, core: FakeCore, key: int = 10, nsp: str = "/") -> Socket:
    open_and_connect(sio, key, nsp)
    await core.wait_for(lambda: (key,) in core.named("accept"))
    return sio._dispatcher.sockets[key]


@pytest.mark.anyio
async def test_connect_is_accepted_with_auth_and_handshake() -> None:
    sio = Server()
    seen: list[Any] = []

    @sio.on("connect")
    async def connect(socket: Socket, auth: dict[str, str]) -> None:
        seen.append((socket.id, auth, socket.connected))
        await socket.emit("welcome", auth.get("token"))

    async with running(sio) as core:
        open_and_connect(sio, 10, auth='{"token":"t1"}', sid="abc")
        await core.wait_for(lambda: core.named("accept"))
        assert seen == [("abc", {"token": "t1"}, False)]
        assert core.emits() == [(10, ["welcome", "t1"], [], None, False)]
        socket = sio.sockets["abc"]
        assert socket.connected and sio._dispatcher.sockets[10] is socket
        hs = socket.handshake
        assert (hs.auth, hs.address, hs.query["x"], hs.xdomain, hs.url) == (
            {"token": "t1"},
            "10.0.0.1",
            "1",
            True,
            "/socket.io/?EIO=4&transport=polling&x=1",
        )
        assert socket.eio_sid == "eio-sid" and socket.namespace == "/"

        # Without an auth payload the handler gets {}, as Node's socket.handshake.auth.
        open_and_connect(sio, 11)
        await core.wait_for(lambda: len(core.named("accept")) == 2)
        assert seen[-1] == ("s11", {}, False)


@pytest.mark.anyio
async def test_middleware_refuses_with_data_and_stops_there() -> None:
    sio = Server()
    admin = sio.of("/admin")
    order: list[str] = []

    @admin.use
    async def first(socket: Socket) -> None:
        order.append("first")
        if socket.handshake.auth.get("role") != "admin":
            raise ConnectionRefused("not allowed", {"code": 403, "need": ["admin"]})

    @admin.use
    def second(socket: Socket) -> None:
        order.append("second")
        socket.data["checked"] = True

    @admin.on("connect")
    def connect(socket: Socket) -> None:
        order.append("connect")

    async with running(sio) as core:
        open_and_connect(sio, 10, "/admin", '{"role":"guest"}')
        await core.wait_for(lambda: core.named("refuse"))
        assert core.named("refuse") == [(10, {"message": "not allowed", "data": {"code": 403, "need": ["admin"]}})]
        assert order == ["first"]
        assert 10 not in sio._dispatcher.sockets and not admin.sockets and not core.named("accept")

        open_and_connect(sio, 11, "/admin", '{"role":"admin"}')
        await core.wait_for(lambda: core.named("accept"))
        assert order == ["first", "first", "second", "connect"]
        assert admin.sockets["s11"].data == {"checked": True}


@pytest.mark.anyio
async def test_connect_handler_refusals() -> None:
    sio = Server()
    outcome: dict[str, Any] = {}

    @sio.on("connect")
    def connect(socket: Socket, auth: dict[str, Any]) -> Any:
        what = auth.get("do")
        if what == "raise":
            raise ConnectionRefused("go away")
        if what == "data":
            raise ConnectionRefused("bad data", object())  # not JSON: the message alone is sent
        if what == "crash":
            raise RuntimeError("bug")
        return outcome.get("result")

    async with running(sio) as core:
        for key, auth in enumerate(['{"do":"false"}', '{"do":"raise"}', '{"do":"data"}', '{"do":"crash"}'], 10):
            outcome["result"] = False
            open_and_connect(sio, key, auth=auth)
            await core.wait_for(lambda k=key: any(c[0] == k for c in core.named("refuse")))  # type: ignore[misc]
        assert [data for _, data in core.named("refuse")] == [
            {"message": "Connection rejected by server"},
            {"message": "go away"},
            {"message": "bad data"},
            {"message": "Internal server error"},
        ]
        assert not sio.sockets


@pytest.mark.anyio
async def test_coercion_errors_are_answered_in_the_ack() -> None:
    sio = Server()

    @sio.on("add")
    def add(a: int, b: int) -> int:
        return a + b

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(sio, event(10, '["add","x",2]', 5, None))
        await core.wait_for(lambda: core.emits())
        [(socket, [reply], _, ack_id, ack_reply)] = core.emits()
        assert (socket, ack_id, ack_reply) == (10, 5, True)
        # A short message for today's clients, and every problem in pydantic's form.
        assert reply == {
            "error": "invalid argument 'a': Input should be a valid integer, unable to parse string as an integer",
            "errors": [
                {
                    "loc": ["a"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                }
            ],
        }

        # Without an ack id the client hears of it as an "error" event.
        dispatch(sio, event(10, '["add",1]', None, None))
        await core.wait_for(lambda: len(core.emits()) == 2)
        _, (name, body), _, ack_id, _ = core.emits()[1]
        assert (name, body["event"], ack_id) == ("error", "add", None)
        assert body["error"] == "missing argument 'b'"
        assert body["errors"] == [{"loc": ["b"], "msg": "Field required", "type": "missing"}]


@pytest.mark.anyio
async def test_return_value_is_the_ack() -> None:
    sio = Server()

    @sio.on("add")
    def add(a: int, b: int) -> int:
        return a + b

    @sio.on("pair")
    async def pair(socket: Socket, x: str) -> tuple[str, bytes]:
        return x, x.encode()

    @sio.on("nothing")
    def nothing() -> None:
        return None

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(
            sio,
            event(10, '["add","3",4]', 1, None),  # lax coercion: "3" fits an int
            event(10, '["pair","hi"]', 2, None),
            event(10, '["nothing"]', 3, None),
            event(10, '["add",1,1]', None, None),  # no ack asked: nothing sent
        )
        await core.wait_for(lambda: len(core.emits()) == 3)
        assert sorted(core.emits(), key=lambda e: e[3] or 0) == [
            (10, [7], [], 1, True),
            (10, ["hi", {"_placeholder": True, "num": 0}], [b"hi"], 2, True),
            (10, [], [], 3, True),
        ]


@pytest.mark.anyio
async def test_ack_injection() -> None:
    sio = Server()
    calls: list[Any] = []
    core = FakeCore()

    @sio.on("job")
    async def job(socket: Socket, n: int, ack: Ack) -> str:
        calls.append((n, ack.requested))
        core.notify()  # what the test waits for is this list too, not only the core's calls
        ack("started", n)
        ack("twice")  # ignored, as in Node
        return "not the ack: the handler took one"

    async with running(sio, core) as core:
        await connected(sio, core)
        dispatch(sio, event(10, '["job",4]', 8, None), event(10, '["job",5]', None, None))
        await core.wait_for(lambda: len(calls) == 2 and core.emits())
        assert core.emits() == [(10, ["started", 4], [], 8, True)]
        assert sorted(calls) == [(4, True), (5, False)]


@pytest.mark.anyio
async def test_catch_all_and_unknown_events() -> None:
    sio = Server()
    got: list[Any] = []

    @sio.on("*")
    def anything(socket: Socket, name: Any, *args: Any) -> Any:
        got.append((name, args))
        return "seen"

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(
            sio,
            event(10, '["whatever",1,{"a":2}]', 1, None),
            event(10, "[42]", 2, None),  # numeric event names exist in socket.io-parser
            event(99, '["ghost"]', 3, None),  # no such socket
        )
        await core.wait_for(lambda: len(core.emits()) == 2)
        assert sorted(got, key=str) == [("whatever", (1, {"a": 2})), (42, ())]


@pytest.mark.anyio
async def test_unknown_event_without_catch_all_is_ignored() -> None:
    sio = Server()

    @sio.on("known")
    def known() -> str:
        return "ok"

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(sio, event(10, '["unknown"]', 1, None), event(10, '["known"]', 2, None))
        await core.wait_for(lambda: core.emits())
        assert core.emits() == [(10, ["ok"], [], 2, True)]


@pytest.mark.anyio
async def test_disconnect_handler_gets_the_reason_and_pending_acks_end() -> None:
    sio = Server()
    reasons: list[tuple[str, str]] = []
    gone = anyio.Event()

    @sio.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        reasons.append((socket.id, reason))
        gone.set()

    async with running(sio) as core:
        socket = await connected(sio, core)
        failures: list[BaseException] = []

        async def ask() -> None:
            try:
                await socket.emit_with_ack("question")
            except Disconnected as e:
                failures.append(e)
                core.notify()

        sio.runtime.spawn(ask)
        await core.wait_for(lambda: core.emits())
        dispatch(sio, ("disconnect", 10, "client namespace disconnect"))
        with anyio.fail_after(5):
            await gone.wait()
        await core.wait_for(lambda: failures)
        assert reasons == [("s10", "client namespace disconnect")]
        assert not socket.connected and not sio.sockets
        with pytest.raises(Disconnected):
            await socket.emit_with_ack("after")


@pytest.mark.anyio
async def test_emit_with_ack_gets_the_reply_or_times_out() -> None:
    sio = Server()
    async with running(sio) as core:
        socket = await connected(sio, core)
        results: list[Any] = []

        async def ask(timeout: float | None) -> None:
            try:
                results.append(await socket.emit_with_ack("q", b"\x01", timeout=timeout))
            except AckTimeout as e:
                results.append(e)
            core.notify()

        sio.runtime.spawn(ask, None)
        await core.wait_for(lambda: core.emits())
        [(_, args, attachments, ack_id, ack_reply)] = core.emits()
        assert (args, attachments, ack_reply) == (["q", {"_placeholder": True, "num": 0}], [b"\x01"], False)
        dispatch(sio, ("ack", 10, '["yes",{"_placeholder":true,"num":0}]', ack_id, [b"\x02"]))
        await core.wait_for(lambda: results)
        assert results == [("yes", b"\x02")]

        sio.runtime.spawn(ask, 0.05)
        await core.wait_for(lambda: len(results) == 2)
        assert isinstance(results[1], AckTimeout)
        # A late ack for it, or one for an id never sent, is dropped.
        late_id = core.emits()[-1][3]
        dispatch(sio, ("ack", 10, '["late"]', late_id, None), ("ack", 10, "[]", 12345, None))
        assert len(results) == 2


@pytest.mark.anyio
async def test_bad_attachments_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="anysio")
    sio = Server()
    called: list[Any] = []
    sio.on("up", lambda socket, data: called.append(data))
    async with running(sio) as core:
        await connected(sio, core)
        dispatch(sio, event(10, '["up",{"_placeholder":true,"num":1}]', None, [b"only one"]))
        dispatch(sio, ("ack", 10, '[{"_placeholder":true,"num":3}]', 0, [b"x"]))
        assert core.named("close") == [(CLIENT,), (CLIENT,)]
        assert not core.named("disconnect") and not called
        assert "bad packet" in caplog.text


@pytest.mark.anyio
async def test_a_failing_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    sio = Server()

    @sio.on("boom")
    def boom() -> None:
        raise RuntimeError("handler bug")

    @sio.on("unsendable")
    def unsendable() -> object:
        return object()

    @sio.on("ok")
    def ok() -> str:
        return "fine"

    async with running(sio) as core:
        await connected(sio, core)
        dispatch(
            sio,
            event(10, '["boom"]', 1, None),
            event(10, '["unsendable"]', 2, None),
            event(10, '["ok"]', 3, None),
        )
        await core.wait_for(lambda: core.emits())
        assert core.emits() == [(10, ["fine"], [], 3, True)]
        assert "handler bug" in caplog.text and "cannot be sent" in caplog.text


@pytest.mark.anyio
async def test_close_drops_sockets_still_connecting() -> None:
    sio = Server()
    release = anyio.Event()

    @sio.use
    async def slow(socket: Socket) -> None:
        await release.wait()

    async with running(sio) as core:
        open_and_connect(sio, 10)
        await core.wait_for(lambda: 10 in sio._dispatcher.sockets)
        dispatch(sio, ("close", CLIENT, "transport close"))
        assert 10 not in sio._dispatcher.sockets
        core.accepting = False  # the Rust layer forgot the socket with its session
        release.set()
        await core.wait_for(lambda: core.named("accept"))
        assert not sio.sockets and 10 not in sio._dispatcher.sockets


class NoScan(dict[int, Socket]):
    """The dispatcher's socket table, refusing to be scanned: a session's close must find its sockets through
    an index, not by visiting every socket of the server (quadratic in a disconnect storm)."""

    def _refuse(self) -> AssertionError:
        return AssertionError("a session close visited every socket of the server")

    def __iter__(self) -> NoReturn:
        raise self._refuse()

    def keys(self) -> NoReturn:
        raise self._refuse()

    def values(self) -> NoReturn:
        raise self._refuse()

    def items(self) -> NoReturn:
        raise self._refuse()


@pytest.mark.anyio
async def test_a_session_close_touches_only_its_own_sockets() -> None:
    sio = Server()
    release = anyio.Event()
    admin = sio.of("/admin")

    @sio.use
    async def slow(socket: Socket) -> None:
        await release.wait()

    admin.use(slow)

    async with running(sio) as core:
        other = CLIENT + 1
        dispatch(
            sio,
            ("open", CLIENT, "sid-1", "", REQUEST),
            ("open", other, "sid-2", "", REQUEST),
            ("connect", 10, CLIENT, "/", "a", None),
            ("connect", 11, CLIENT, "/admin", "b", None),
            ("connect", 12, other, "/", "c", None),
            ("connect", 13, other, "/admin", "d", None),
        )
        sockets = sio._dispatcher.sockets
        await core.wait_for(lambda: all(k in sockets for k in (10, 11, 12, 13)))
        sio._dispatcher.sockets = NoScan(sockets)
        dispatch(sio, ("close", CLIENT, "transport close"))
        table = sio._dispatcher.sockets
        assert (10 in table, 11 in table, 12 in table, 13 in table) == (False, False, True, True)
        dispatch(sio, ("close", other, "transport close"))
        assert not any(k in table for k in (10, 11, 12, 13))
        core.accepting = False
        release.set()
        await core.wait_for(lambda: len(core.named("accept")) == 4)
        assert not sio.sockets and not admin.sockets


def test_the_real_core_and_the_fake_provide_the_same_typed_interface() -> None:
    """Checked by mypy more than run: the real core (per its stub) and FakeCore both provide ``SioCore``, and the
    core's turn gives its event tuples, typed, to the dispatcher (which matches on them)."""
    real = native_core(path="/socket.io", defer_handshakes=False, socketio=True)
    cores: list[SioCore] = [real, FakeCore()]
    events = real.turn()
    if TYPE_CHECKING:  # the stub-only alias exists for mypy alone
        assert_type(events, list[CoreEvent])
    assert events == [] and len(cores) == 2
    sio = Server()
    sio._dispatcher.dispatch(events)


def test_refusal_data_is_written_as_emitted_values_are(caplog: pytest.LogCaptureFixture) -> None:
    assert json.loads(refusal_json("no", {"score": float("nan"), "n": [1, float("inf")]})) == {
        "message": "no",
        "data": {"score": None, "n": [1, None]},
    }
    # Binary data has no place in a CONNECT_ERROR packet: the client still gets the message.
    assert json.loads(refusal_json("no", {"blob": b"x"})) == {"message": "no"}
    assert "cannot be sent as JSON" in caplog.text
