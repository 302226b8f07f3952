"""Node's dynamic namespaces (parent namespaces: ``sio.of(re.compile(...))``, ``sio.of(predicate)``) and
``cleanup_empty_child_namespaces``, with the official client. Every test runs on asyncio and trio."""

from __future__ import annotations

import re
from typing import Any

import pytest

from anysio import ConnectionRefused, Namespace, ParentNamespace, Server, Socket
from tests.e2e.sio_helpers import Record, node_sio, serving

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def dynamic_server(**options: Any) -> tuple[Server, Record, ParentNamespace]:
    """ "/dyn-N" (a pattern) and "/team-*" (an async predicate on the auth); handlers, a middleware and an error
    handler on the pattern's parent."""
    sio = Server(**options)
    rec = Record()
    dyn = sio.of(re.compile(r"^/dyn-\d+$"))

    @dyn.use
    def no_strangers(socket: Socket) -> None:
        if socket.handshake.auth.get("name") == "stranger":
            raise ConnectionRefused("who are you?")

    @dyn.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        rec.add("connect", socket.namespace)

    @dyn.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        rec.add("disconnect", socket.namespace)

    @dyn.on("whoami")
    def whoami(socket: Socket) -> str:
        return socket.namespace

    @dyn.on("fail")
    def fail(socket: Socket) -> None:
        raise RuntimeError(f"failed in {socket.namespace}")

    @dyn.on("error")
    def error(socket: Socket | None, exc: BaseException) -> None:
        rec.add("error", (socket.namespace if socket else None, str(exc)))

    async def teams(name: str, auth: Any) -> bool:
        return name.startswith("/team-") and auth.get("member") is True

    team = sio.of(teams)

    @team.on("whoami")
    def team_whoami(socket: Socket) -> str:
        return "team " + socket.namespace

    return sio, rec, dyn


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_children_are_created_on_connect_and_share_the_parents_handlers(transports: str) -> None:
    sio, rec, dyn = dynamic_server()
    async with (
        serving(sio) as address,
        node_sio(address, nsp="/dyn-1", transports=transports) as one,
        node_sio(address, nsp="/dyn-22", transports=transports) as two,
    ):
        assert await one.call("whoami") == ["/dyn-1"]
        assert await two.call("whoami") == ["/dyn-22"]
        assert sorted(await rec.wait("connect", 2)) == ["/dyn-1", "/dyn-22"]
        assert {"/dyn-1", "/dyn-22"} <= set(sio.namespaces)

        # The parent's emit reaches every child; a child's reaches its own.
        assert sio.namespaces["/dyn-1"].parent is dyn
        await dyn.emit("hello", 1)
        await sio.of("/dyn-22").emit("hello", 2)
        assert await one.receive("hello") == [[1]]
        assert await two.receive("hello", 2) == [[1], [2]]

        # Handlers registered on the parent later reach the children; a child's own stay its own.
        @dyn.on("late")
        def late(socket: Socket) -> str:
            return "late " + socket.namespace

        @sio.of("/dyn-1").on("own")
        def own(socket: Socket) -> str:
            return "own"

        assert await two.call("late") == ["late /dyn-22"]
        assert await one.call("own") == ["own"]
        assert "own" not in sio.namespaces["/dyn-22"].handlers

        await one.emit("fail")  # no ack: the handler raises
        assert await rec.wait("error") == [("/dyn-1", "failed in /dyn-1")]


async def test_names_no_parent_matches_are_refused_and_middlewares_apply() -> None:
    sio, _, dyn = dynamic_server()
    async with serving(sio) as address:
        # The parent itself ("/_N", as in Node) is no namespace a client can join.
        for nsp, auth in (("/dyn-x", None), ("/team-a", {"member": False}), (dyn.name, None)):
            async with node_sio(address, nsp=nsp, auth=auth, connected=False) as refused:
                err = await refused.expect("connect_error")
                assert (err["message"], err["data"]) == ("Invalid namespace", None), nsp
        async with node_sio(address, nsp="/dyn-3", auth={"name": "stranger"}, connected=False) as stranger:
            assert (await stranger.expect("connect_error"))["message"] == "who are you?"
        async with node_sio(address, nsp="/team-a", auth={"member": True}) as member:
            assert await member.call("whoami") == ["team /team-a"]


async def test_cleanup_empty_child_namespaces() -> None:
    sio, rec, _ = dynamic_server(cleanup_empty_child_namespaces=True)
    async with serving(sio) as address:
        async with node_sio(address, nsp="/dyn-5") as first:
            assert await first.call("whoami") == ["/dyn-5"]
            child = sio.namespaces["/dyn-5"]
        await rec.wait("disconnect")
        assert "/dyn-5" not in sio.namespaces
        assert child.parent is not None and "/dyn-5" not in child.parent.children
        async with node_sio(address, nsp="/dyn-5") as again:
            assert await again.call("whoami") == ["/dyn-5"]
            assert sio.namespaces["/dyn-5"] is not child
    # Without the option, an emptied child stays.
    sio, rec, _ = dynamic_server()
    async with serving(sio) as address:
        async with node_sio(address, nsp="/dyn-5") as first:
            assert await first.call("whoami") == ["/dyn-5"]
        await rec.wait("disconnect")
        assert "/dyn-5" in sio.namespaces


async def test_of_a_name_a_pattern_matches_makes_a_child() -> None:
    sio, _, dyn = dynamic_server()
    child = sio.of("/dyn-7")
    assert child.parent is dyn and dyn.children == {"/dyn-7": child}
    async with serving(sio) as address, node_sio(address, nsp="/dyn-7") as client:
        assert await client.call("whoami") == ["/dyn-7"]
        with pytest.raises(NotImplementedError):
            await dyn.fetch_sockets()


async def test_new_namespace_announces_each_namespace_made() -> None:
    """Node's ``io.on("new_namespace")``: each namespace made after it is registered, by ``of`` or as a child on a
    client's first connect (a cleaned-up child made again is announced again); a coroutine listener runs in a
    task, and a listener that raises is reported as a handler that raises is, the others still called."""
    sio, rec, _ = dynamic_server(cleanup_empty_child_namespaces=True)
    made: list[str] = []

    @sio.on("new_namespace")
    def first(nsp: Namespace) -> None:
        made.append(nsp.name)

    @sio.on("new_namespace")
    async def second(nsp: Namespace) -> None:
        rec.add("announced", nsp.name)

    @sio.on("new_namespace")
    def broken(nsp: Namespace) -> None:
        raise RuntimeError(f"cannot take {nsp.name}")

    @sio.on("error")
    def error(socket: Socket | None, exc: BaseException) -> None:
        rec.add("error", (socket, str(exc)))

    sio.of("/plain")
    assert made == ["/plain"]  # before serving: the coroutine listener's task cannot start
    async with serving(sio) as address:
        for n in (1, 2):
            async with node_sio(address, nsp="/dyn-8") as client:
                assert await client.call("whoami") == ["/dyn-8"]
            await rec.wait("disconnect", n)
        sio.of("/plain")  # there already: not made again
        assert made == ["/plain", "/dyn-8", "/dyn-8"]
        assert await rec.wait("announced", 2) == ["/dyn-8", "/dyn-8"]
        errors = await rec.wait("error", 3)
    assert errors == [(None, "cannot take /plain"), (None, "cannot take /dyn-8"), (None, "cannot take /dyn-8")]
    assert "new_namespace" not in sio.handlers  # the server's own event, no namespace's
