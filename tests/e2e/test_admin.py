"""``anysio.instrument`` speaking the Admin UI's protocol (@socket.io/admin-ui 0.5), with the official
socket.io-client (tests/node/sio_client.mjs) as the UI's peer on "/admin", on asyncio and trio: the login (bcrypt
hashes made by bcryptjs, the UI's own library), ``config``, ``server_stats``, ``all_sockets``, the socket, room and
event notices of development mode, the ``join``/``leave``/``_disconnect``/``emit`` commands, read-only servers
that ignore them, and production mode's statistics alone; then every server of ``anysio run --workers 2`` and of
two machines joined by Redis, seen and driven from one UI connection."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import anyio
import pytest

import anysio
from anysio import Server, Socket
from anysio.adapters.redis import RedisCluster
from tests.e2e.cluster_helpers import redis_server
from tests.e2e.sio_helpers import ROOT, NodeSio, node_sio, serving
from tests.e2e.test_asgi import call_http, eio, http_scope, lifespan
from tests.e2e.workers_helpers import clients, cluster, spread

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

PASSWORD = "s3cret"


def bcryptjs_hash(password: str) -> str:
    """A hash as the Admin UI's README makes one: bcryptjs (a dependency of @socket.io/admin-ui), cost 10."""
    script = "process.stdout.write(require('bcryptjs').hashSync(process.argv[1], 10))"
    node = ROOT / "tests" / "node"
    return subprocess.run(
        ["node", "-e", script, password], cwd=node, check=True, capture_output=True, text=True, timeout=30
    ).stdout


def app(adapter: Any = None, **options: Any) -> Server:
    """A server with "/" and "/chat": "echo" acks its arguments, "join" joins a room and acks the rooms, "tell"
    emits "told" back; instrumented with ``options`` (and on ``adapter`` when given)."""
    sio = Server(adapter=adapter) if adapter is not None else Server()
    for nsp in (sio.of("/"), sio.of("/chat")):

        @nsp.on("echo")
        def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
            return args

        @nsp.on("join")
        def join(socket: Socket, room: str) -> list[str]:
            socket.join(room)
            return sorted(socket.rooms)

        @nsp.on("tell")
        async def tell(socket: Socket, value: Any) -> None:
            await socket.emit("told", value)

    anysio.instrument(sio, **{"auth": None, **options})
    return sio


async def notices(ui: NodeSio, name: str, count: int = 1) -> list[list[Any]]:
    return await ui.receive(name, count)


async def test_login_refused_then_accepted_then_resumed_by_session() -> None:
    sio = app(auth={"type": "basic", "username": "admin", "password": bcryptjs_hash(PASSWORD)})
    async with serving(sio) as address:
        async with node_sio(
            address, nsp="/admin", auth={"username": "admin", "password": "wrong"}, connected=False
        ) as ui:
            refused = await ui.expect("connect_error")
            assert refused["message"] == "invalid credentials"
        async with node_sio(
            address, nsp="/admin", auth={"username": "root", "password": PASSWORD}, connected=False
        ) as ui:
            assert (await ui.expect("connect_error"))["message"] == "invalid credentials"
        # Credentials of the wrong types, and a password past bcrypt's 72 bytes, are refused the same way.
        for bad in ({"username": ["admin"], "password": 1}, {"username": "admin", "password": PASSWORD * 20}):
            async with node_sio(address, nsp="/admin", auth=bad, connected=False) as ui:
                assert (await ui.expect("connect_error"))["message"] == "invalid credentials"
        async with node_sio(address, nsp="/admin", auth={"username": "admin", "password": PASSWORD}) as ui:
            [[session]] = await notices(ui, "session")
            assert isinstance(session, str) and len(session) == 16
            [[config]] = await notices(ui, "config")
            assert "JOIN" in config["supportedFeatures"] and "ALL_EVENTS" in config["supportedFeatures"]
        # The UI reconnects with the session id a login gave it, without the password.
        async with node_sio(address, nsp="/admin", auth={"sessionId": session}) as ui:
            await notices(ui, "config")
            assert ui.received("session") == []
        async with node_sio(address, nsp="/admin", auth={"sessionId": "0" * 16}, connected=False) as ui:
            assert (await ui.expect("connect_error"))["message"] == "invalid credentials"
        # Other namespaces know nothing of the admin's login.
        async with node_sio(address) as client:
            assert await client.call("echo", 1) == [1]


def test_auth_must_be_a_bcrypt_hash() -> None:
    with pytest.raises(ValueError, match="valid bcrypt hash"):
        anysio.instrument(Server(), auth={"type": "basic", "username": "admin", "password": "plain"})
    with pytest.raises(ValueError, match="invalid `auth` option"):
        anysio.instrument(Server(), auth={"type": "digest"})


async def test_development_mode_tells_sockets_rooms_and_events() -> None:
    sio = app(server_id="test-server")
    async with (
        serving(sio) as address,
        node_sio(address, nsp="/chat") as early,
        node_sio(address, nsp="/admin") as ui,
    ):
        [[config]] = await notices(ui, "config")
        assert config["supportedFeatures"] == [
            *("EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"),
            *("AGGREGATED_EVENTS", "ALL_EVENTS"),
        ]
        [[sockets]] = await notices(ui, "all_sockets")
        [listed] = [s for s in sockets if s["nsp"] == "/chat"]
        early_id = early.all("connect")[0]["id"]
        assert listed["id"] == early_id and listed["rooms"] == [early_id]
        assert listed["transport"] in ("polling", "websocket") and len(listed["clientId"]) == 12
        assert listed["handshake"]["address"] == "127.0.0.1" and listed["data"] == {}
        assert listed["handshake"]["url"].startswith("/socket.io/")

        [[stats], *_] = await notices(ui, "server_stats")
        assert stats["serverId"] == "test-server" and stats["clientsCount"] == 2
        assert {"name": "/chat", "socketsCount": 1} in stats["namespaces"]
        assert {"name": "/admin", "socketsCount": 1} in stats["namespaces"]
        assert {"timestamp", "type", "count"} <= set(stats["aggregatedEvents"][0])

        async with node_sio(address, nsp="/chat") as client:
            cid = client.all("connect")[0]["id"]
            connected = await ui.wait_for(lambda: _notice(ui, "socket_connected", lambda a: a[0]["id"] == cid))
            assert connected[0]["nsp"] == "/chat" and connected[1].endswith("Z")
            assert await client.call("join", "lobby") == [sorted([cid, "lobby"])]
            joined = await ui.wait_for(lambda: _notice(ui, "room_joined", lambda a: a[2] == cid))
            assert joined[:3] == ["/chat", "lobby", cid]
            # Joining a room it is in already is no news (Node's adapter tells only a new member).
            assert await client.call("join", "lobby") == [sorted([cid, "lobby"])]
            assert await client.call("echo", "hi", 2) == ["hi", 2]
            received = await ui.wait_for(lambda: _notice(ui, "event_received", lambda a: a[2][0] == "echo"))
            assert received[:3] == ["/chat", cid, ["echo", "hi", 2]]
            # Notices go out in order: any for the second join would have come before the echo's.
            assert [a[1] for a in ui.received("room_joined") if a[2] == cid] == ["lobby"]
            await client.emit("tell", {"x": 1})
            sent = await ui.wait_for(lambda: _notice(ui, "event_sent", lambda a: a[2][0] == "told"))
            assert sent[:3] == ["/chat", cid, ["told", {"x": 1}]]
        gone = await ui.wait_for(lambda: _notice(ui, "socket_disconnected", lambda a: a[1] == cid))
        assert gone[:3] == ["/chat", cid, "client namespace disconnect"]


def _notice(ui: NodeSio, name: str, match: Any) -> list[Any] | None:
    return next((args for args in ui.received(name) if match(args)), None)


async def test_commands_join_leave_emit_and_disconnect() -> None:
    sio = app()
    async with serving(sio) as address, node_sio(address, nsp="/chat") as client, node_sio(address, nsp="/admin") as ui:
        cid = client.all("connect")[0]["id"]
        await notices(ui, "config")
        socket = sio.of("/chat").sockets[cid]
        await ui.emit("join", "/chat", "vip", cid)
        await ui.wait_for(lambda: _notice(ui, "room_joined", lambda a: a[1:3] == ["vip", cid]))
        assert socket.rooms == {cid, "vip"}
        await ui.emit("emit", "/chat", "vip", "news", "for vips")
        assert await client.receive("news") == [["for vips"]]
        await ui.emit("leave", "/chat", "vip", cid)
        await ui.wait_for(lambda: _notice(ui, "room_left", lambda a: a[1:3] == ["vip", cid]))
        assert socket.rooms == {cid}
        # A command for a namespace the server does not have makes none.
        await ui.emit("join", "/nowhere", "x")
        await ui.emit("_disconnect", "/chat", False, cid)
        assert (await client.expect("disconnect"))["reason"] == "io server disconnect"
        await ui.wait_for(lambda: _notice(ui, "socket_disconnected", lambda a: a[1] == cid))
        assert "/nowhere" not in sio.namespaces


async def test_the_upgrade_to_websocket_is_told() -> None:
    sio = app()
    async with serving(sio) as address, node_sio(address, nsp="/admin") as ui:
        await notices(ui, "config")
        async with node_sio(address) as client:
            cid = client.all("connect")[0]["id"]
            [connected, _] = await ui.wait_for(lambda: _notice(ui, "socket_connected", lambda a: a[0]["id"] == cid))
            # Told at connection if the upgrade came first, else by socket_updated (within the stats' 2 s).
            if connected["transport"] != "websocket":
                [updated] = await ui.wait_for(lambda: _notice(ui, "socket_updated", lambda a: a[0]["id"] == cid))
                assert updated == {"id": cid, "nsp": "/", "transport": "websocket"}


async def test_bad_commands_get_errors_and_disturb_nothing() -> None:
    sio = app()
    async with serving(sio) as address, node_sio(address) as client, node_sio(address, nsp="/admin") as ui:
        await notices(ui, "config")
        await ui.emit("join", 1, ["not", "a room"])
        [[error]] = await ui.receive("error")
        assert error["event"] == "join" and error["errors"][0]["loc"] == ["nsp"]
        await ui.emit("_disconnect", {"nsp": "/"})
        await ui.receive("error", 2)
        assert await client.call("echo", "still here") == ["still here"]


async def test_read_only_ignores_commands() -> None:
    sio = app(read_only=True)
    marks: list[str] = []

    @sio.of("/admin").on("mark")
    def mark(socket: Socket) -> str:
        marks.append(socket.id)
        return "marked"

    async with serving(sio) as address, node_sio(address) as client, node_sio(address, nsp="/admin") as ui:
        cid = client.all("connect")[0]["id"]
        [[config]] = await notices(ui, "config")
        assert config["supportedFeatures"] == ["AGGREGATED_EVENTS", "ALL_EVENTS"]
        await ui.emit("join", "/", "vip", cid)
        await ui.emit("_disconnect", "/", True)
        # Events of one socket are handled in order: once "mark" is answered, the commands were not acted on.
        assert await ui.call("mark") == ["marked"]
        assert sio.sockets[cid].rooms == {cid}
        assert await client.call("echo", "still connected") == ["still connected"]
        assert client.all("disconnect") == []


async def test_production_mode_sends_statistics_only() -> None:
    sio = app(mode="production")
    async with serving(sio) as address, node_sio(address, nsp="/admin") as ui:
        [[config]] = await notices(ui, "config")
        assert "ALL_EVENTS" not in config["supportedFeatures"] and "AGGREGATED_EVENTS" in config["supportedFeatures"]
        async with node_sio(address) as client:
            assert await client.call("echo", 1) == [1]
        stats = await ui.wait_for(lambda: _stats_with_events(ui))
        kinds = {e["type"] for e in stats["aggregatedEvents"]}
        assert "rawConnection" in kinds
        assert ui.received("all_sockets") == ui.received("socket_connected") == ui.received("event_received") == []


def _stats_with_events(ui: NodeSio) -> dict[str, Any] | None:
    found = [e for [s] in ui.received("server_stats") for e in s["aggregatedEvents"]]
    merged = {"aggregatedEvents": found}
    return merged if {"rawConnection", "rawDisconnection"} <= {e["type"] for e in found} else None


async def test_the_ui_is_served_without_cdn() -> None:
    sio = Server()
    anysio.instrument(sio, auth=None, ui=ROOT / "tests" / "node" / "node_modules")
    async with serving(sio) as (host, port), await anyio.connect_tcp(host, port) as stream:
        await stream.send(b"GET /admin-ui/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        with anyio.fail_after(10):
            async for chunk in stream:
                body += chunk
    head, page = body.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head
    assert b"Socket.IO Admin UI" in page and b"https://" not in page
    assert b'href="mdi/css/materialdesignicons.min.css"' in page


async def test_workers_show_every_server_and_obey_the_ui(anyio_backend: str) -> None:
    app = "tests.e2e.apps.admin_app:sio"
    async with cluster(2, anyio_backend, app=app) as (url, _), clients(url, 12) as group:
        spread_ = await spread(group, 2)
        ids = [c["id"] for c in group.events("connected")[0]["clients"]]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        async with node_sio((host, int(port)), nsp="/admin") as ui:
            # Each worker's statistics reach the UI, whichever worker it is connected to.
            servers = await ui.wait_for(lambda: _servers(ui, 2), 30)
            assert {s["pid"] for s in servers.values()} == set(spread_.pids)
            assert all(f"#{s['pid']}" in server_id for server_id, s in servers.items())
            assert sum(_sockets(s, "/") for s in servers.values()) == 12
            # all_sockets gathers the sockets of every worker (fetch_sockets through the bus).
            [[listed]] = await ui.receive("all_sockets")
            assert {s["id"] for s in listed if s["nsp"] == "/"} == set(ids)
            # Commands reach a socket of each worker.
            victims = [ids[spread_.workers.index(w)] for w in (0, 1)]
            for victim in victims:
                await ui.emit("join", "/", "vip", victim)
            await ui.wait_for(lambda: len([a for a in ui.received("room_joined") if a[1] == "vip"]) == 2, 30)
            for victim in victims:
                await ui.emit("_disconnect", "/", False, victim)
            dropped = {ids.index(v) for v in victims}
            await group.wait_for(lambda: dropped <= {m["client"] for m in group.events("disconnect")}, 30)
            assert {m["reason"] for m in group.events("disconnect")} == {"io server disconnect"}
            await ui.wait_for(lambda: {a[1] for a in ui.received("socket_disconnected")} >= set(victims), 30)


def _servers(ui: NodeSio, n: int) -> dict[str, dict[str, Any]] | None:
    latest = {s["serverId"]: s for [s] in ui.received("server_stats")}
    return latest if len(latest) == n else None


def _sockets(stats: dict[str, Any], nsp: str) -> int:
    count: int = next(n["socketsCount"] for n in stats["namespaces"] if n["name"] == nsp)
    return count


async def test_servers_of_other_machines_through_redis() -> None:
    """Two servers joined by the Redis adapter (two machines): the UI connected to one sees both, the sockets of
    both, and its commands reach the other one's sockets."""
    async with redis_server() as redis:
        links = RedisCluster(redis.url), RedisCluster(redis.url)
        login = {"type": "basic", "username": "admin", "password": bcryptjs_hash(PASSWORD)}
        a, b = (
            app(adapter=link.adapter, server_id=f"machine-{n}", auth=login) for link, n in zip(links, "ab", strict=True)
        )
        async with (
            links[0],
            links[1],
            serving(a) as address_a,
            serving(b) as address_b,
            node_sio(address_b) as far,
            node_sio(address_a, nsp="/admin", auth={"username": "admin", "password": PASSWORD}) as ui,
        ):
            # The session a login on one machine opened lets the UI in on the other.
            [[session]] = await ui.receive("session")
            async with node_sio(address_b, nsp="/admin", auth={"sessionId": session}) as again:
                await again.receive("config")
            far_id = far.all("connect")[0]["id"]
            servers = await ui.wait_for(lambda: _servers(ui, 2))
            assert set(servers) == {"machine-a", "machine-b"}
            assert _sockets(servers["machine-b"], "/") == 1 and _sockets(servers["machine-a"], "/") == 0
            [[listed]] = await ui.receive("all_sockets")
            assert far_id in {s["id"] for s in listed if s["nsp"] == "/"}
            async with node_sio(address_b, nsp="/chat") as newcomer:
                new_id = newcomer.all("connect")[0]["id"]
                await ui.wait_for(lambda: _notice(ui, "socket_connected", lambda a: a[0]["id"] == new_id))
            await ui.emit("join", "/", "vip", far_id)
            await ui.wait_for(lambda: _notice(ui, "room_joined", lambda a: a[1:3] == ["vip", far_id]))
            await ui.emit("_disconnect", "/", False, far_id)
            assert (await far.expect("disconnect"))["reason"] == "io server disconnect"
            await ui.wait_for(lambda: _notice(ui, "socket_disconnected", lambda a: a[1] == far_id))


async def test_an_observer_that_raises_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(anysio.Observer):
        def socket_connected(self, socket: Socket) -> None:
            raise RuntimeError("observer bug")

    sio = Server()
    sio.observe(Broken())  # before instrument's observer: its failure must not keep the next one from being told
    anysio.instrument(sio, auth=None)
    async with serving(sio) as address, node_sio(address, nsp="/admin") as ui, node_sio(address) as client:
        cid = client.all("connect")[0]["id"]
        await ui.wait_for(lambda: _notice(ui, "socket_connected", lambda a: a[0]["id"] == cid))
        assert sio.sockets[cid].connected
    failures = [r for r in caplog.records if "observer" in r.getMessage() and r.exc_info]
    assert failures and str(failures[0].exc_info[1]) == "observer bug"  # type: ignore[index]


async def test_under_asgi_the_ui_is_served_and_stats_go_out() -> None:
    """Behind an ASGI server the app serves the UI's files the server was given, and instrument's loop runs
    while the app does (its lifespan), so a polling UI on "/admin" hears server_stats."""
    sio = Server()
    anysio.instrument(sio, auth=None, ui=ROOT / "tests" / "node" / "node_modules")
    app = anysio.ASGIApp(sio)
    with anyio.fail_after(30):
        async with lifespan(app):
            page = await call_http(app, http_scope("GET", "/admin-ui/"))
            assert page is not None and page[0] == 200 and b"Socket.IO Admin UI" in page[2]
            script = await call_http(app, http_scope("GET", "/admin-ui/favicon.png"))
            assert script is not None and script[0] == 200 and script[1]["content-type"] == "image/png"
            handshake = await eio(app, "GET", "EIO=4&transport=polling")
            query = f"EIO=4&transport=polling&sid={json.loads(handshake[1:])['sid']}"
            assert await eio(app, "POST", query, b"40/admin,") == "ok"
            received = ""
            while '"server_stats"' not in received:
                received += await eio(app, "GET", query)
            assert received.startswith('40/admin,{"sid":') and '42/admin,["config"' in received
