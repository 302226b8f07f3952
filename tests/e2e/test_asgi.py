"""anysio.ASGIApp: in-process ASGI calls, then uvicorn (asyncio) and hypercorn (trio worker) as subprocesses
driven by the official socket.io-client."""

from __future__ import annotations

import gzip
import importlib
import json
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

import anysio
from anysio.asgi import ASGIApplication, Message, Scope

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SIO_CLIENT = ROOT / "tests" / "node" / "sio_client.mjs"
SIO_CLIENT_V2 = ROOT / "tests" / "node" / "sio_client_v2.mjs"

pytestmark = pytest.mark.anyio


# ---- in-process: the ASGI protocol without a server --------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: ASGIApplication) -> AsyncIterator[None]:
    """Run `app`'s lifespan: startup before the block, shutdown after it."""
    to_app, app_in = anyio.create_memory_object_stream[Message](4)
    app_out, from_app = anyio.create_memory_object_stream[Message](4)

    async def run() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, app_in.receive, app_out.send)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        yield
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


def http_scope(method: str, path: str, query: str = "", root_path: str = "") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "query_string": query.encode(),
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
    }


async def call_http(
    app: ASGIApplication, scope: Scope, body: bytes = b"", gone: anyio.Event | None = None
) -> tuple[int, dict[str, str], bytes] | None:
    """One request; None when the app sent no response (the client left first, when `gone` is set)."""
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await (gone.wait() if gone is not None else anyio.sleep_forever())
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if not sent:
        return None
    start, end = sent[0], sent[-1]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, end.get("body", b"")


async def eio(app: ASGIApplication, method: str, query: str, body: bytes = b"") -> str:
    result = await call_http(app, http_scope(method, "/socket.io/", query), body)
    assert result is not None
    status, _, payload = result
    assert status == 200, payload
    return payload.decode()


async def open_polling(app: ASGIApplication) -> str:
    """A polling session connected to "/"; returns its query (with the sid)."""
    handshake = await eio(app, "GET", "EIO=4&transport=polling")
    assert handshake.startswith("0{")
    query = f"EIO=4&transport=polling&sid={json.loads(handshake[1:])['sid']}"
    assert await eio(app, "POST", query, b"40") == "ok"
    assert (await eio(app, "GET", query)).startswith('40{"sid":')
    return query


async def test_polling_session_acks_and_emits_in_process() -> None:
    sio = anysio.Server()

    @sio.on("echo")
    async def echo(socket: anysio.Socket, *args: object) -> tuple[object, ...]:
        return args

    app = anysio.ASGIApp(sio)
    with anyio.fail_after(10):
        async with lifespan(app):
            query = await open_polling(app)
            assert await eio(app, "POST", query, b'421["echo","x",2]') == "ok"
            assert await eio(app, "GET", query) == '431["x",2]'
            async with anyio.create_task_group() as tg:
                results: list[str] = []

                async def poll() -> None:
                    results.append(await eio(app, "GET", query))

                tg.start_soon(poll)
                await anyio.wait_all_tasks_blocked()
                assert not results, "the GET waits for packets"
                await sio.emit("news", 1)
            assert results == ['42["news",1]']


async def test_engineio_server_and_payload_limit_in_process() -> None:
    eio_server = anysio.EngineServer(path="/socket.io", max_payload=16)

    @eio_server.on_message
    def echo(session: anysio.Session, data: str | bytes) -> None:
        session.send(data)

    app = anysio.ASGIApp(eio_server)
    with anyio.fail_after(10):
        async with lifespan(app):
            handshake = await eio(app, "GET", "EIO=4&transport=polling")
            query = f"EIO=4&transport=polling&sid={json.loads(handshake[1:])['sid']}"
            assert await eio(app, "POST", query, b"4hi\x1ebAQI=") == "ok"
            assert await eio(app, "GET", query) == "4hi\x1ebAQI="
            too_big = await call_http(app, http_scope("POST", "/socket.io/", query), b"4" + b"x" * 100)
            assert too_big is not None and too_big[0] == 413


async def test_dropped_parked_get_and_shutdown_close_sessions() -> None:
    sio = anysio.Server()
    reasons: list[str] = []

    @sio.on("disconnect")
    async def gone(socket: anysio.Socket, reason: str) -> None:
        reasons.append(reason)

    app = anysio.ASGIApp(sio)
    with anyio.fail_after(10):
        async with lifespan(app):
            results: list[Any] = []

            async def poll(query: str, left: anyio.Event) -> None:
                results.append(await call_http(app, http_scope("GET", "/socket.io/", query), gone=left))

            left = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll, await open_polling(app), left)
                await anyio.wait_all_tasks_blocked()
                left.set()
            assert results == [None]
            assert sio.engine_count == 0
            await anyio.wait_all_tasks_blocked()
            assert reasons == ["transport error"]

            # A parked GET is answered with the close packet when the server shuts down.
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll, await open_polling(app), anyio.Event())
                await anyio.wait_all_tasks_blocked()
                app._shutdown()
            assert results[-1][2] == b"1"
            assert sio.engine_count == 0


async def test_polling_responses_are_compressed_in_process() -> None:
    """``http_compression`` holds under ASGI: the engine compresses the response, the ASGI server sends it."""
    sio = anysio.Server()
    big = "compressible " * 500

    @sio.on("big")
    async def send_big(socket: anysio.Socket) -> None:
        await socket.emit("big", big)

    app = anysio.ASGIApp(sio)
    with anyio.fail_after(10):
        async with lifespan(app):
            query = await open_polling(app)
            assert await eio(app, "POST", query, b'42["big"]') == "ok"
            scope = http_scope("GET", "/socket.io/", query)
            scope["headers"] = [(b"host", b"test"), (b"accept-encoding", b"gzip, deflate")]
            result = await call_http(app, scope)
            assert result is not None
            status, headers, body = result
            assert (status, headers["content-encoding"]) == (200, "gzip")
            assert gzip.decompress(body).decode() == json.dumps(["big", big], separators=(",", ":")).join(["42", ""])


async def test_websocket_in_process() -> None:
    sio = anysio.Server()

    @sio.on("echo")
    async def echo(socket: anysio.Socket, *args: object) -> tuple[object, ...]:
        return args

    app = anysio.ASGIApp(sio)
    to_app, app_in = anyio.create_memory_object_stream[Message](8)
    app_out, from_app = anyio.create_memory_object_stream[Message](8)
    scope: Scope = {
        "type": "websocket",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=websocket",
        "headers": [(b"host", b"test"), (b"sec-websocket-key", b"whatever")],
        "client": ("127.0.0.1", 1),
    }
    with anyio.fail_after(10):
        async with lifespan(app), anyio.create_task_group() as tg:
            tg.start_soon(app, scope, app_in.receive, app_out.send)
            await to_app.send({"type": "websocket.connect"})
            assert (await from_app.receive()) == {"type": "websocket.accept", "headers": []}
            assert (await from_app.receive())["text"].startswith('0{"sid":')
            await to_app.send({"type": "websocket.receive", "text": "40"})
            assert (await from_app.receive())["text"].startswith('40{"sid":')
            await to_app.send({"type": "websocket.receive", "text": '451-7["echo",{"_placeholder":true,"num":0}]'})
            await to_app.send({"type": "websocket.receive", "bytes": b"\x01\x02"})
            assert (await from_app.receive())["text"] == '461-7[{"_placeholder":true,"num":0}]'
            assert (await from_app.receive())["bytes"] == b"\x01\x02"
            assert sio.engine_count == 1
            await to_app.send({"type": "websocket.disconnect", "code": 1001})
        assert sio.engine_count == 0


@pytest.mark.parametrize("extension", [True, False], ids=["http-response", "close"])
async def test_refused_websocket_handshake(extension: bool) -> None:
    """An unknown sid: the engine's 400 as is where the server can send it, else a refusal."""
    app = anysio.ASGIApp(anysio.Server())
    sent: list[Message] = []
    incoming = iter([{"type": "websocket.connect"}])

    async def receive() -> Message:
        return next(incoming, {"type": "websocket.disconnect"})

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "websocket",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=websocket&sid=unknown",
        "extensions": {"websocket.http.response": {}} if extension else {},
    }
    with anyio.fail_after(10):
        async with lifespan(app):
            await app(scope, receive, send)
    if extension:
        assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 400
        assert b"Session ID unknown" in sent[1]["body"]
    else:
        assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_routing_static_files_other_app_and_lifespan(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>hi</p>")
    (tmp_path / "site" / "app.js").write_text("1")
    (tmp_path / "secret.txt").write_text("no")
    static = anysio.ASGIApp(anysio.Server(), static_files={"/": tmp_path / "site"})
    assert await call_http(static, http_scope("GET", "/")) == (
        200,
        {"content-type": "text/html; charset=utf-8", "cache-control": "no-cache"},
        b"<p>hi</p>",
    )
    js = await call_http(static, http_scope("GET", "/app.js"))
    assert js is not None and js[1]["content-type"].startswith(("text/javascript", "application/javascript"))
    escape = await call_http(static, http_scope("GET", "/../secret.txt"))
    assert escape is not None and escape[0] == 404
    bare = await call_http(anysio.ASGIApp(anysio.Server()), http_scope("GET", "/x"))
    assert bare is not None and bare[0] == 404

    seen: list[str] = []

    async def other(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                seen.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        else:
            seen.append(scope["path"])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    app = anysio.ASGIApp(anysio.Server(), other_app=other, socketio_path="/rt/io/")
    with anyio.fail_after(10):
        async with lifespan(app):
            assert await call_http(app, http_scope("GET", "/hello")) == (204, {}, b"")
            # Mounted below a root path, the engine path is what follows it.
            handshake = await call_http(app, http_scope("GET", "/rt/io/", "EIO=4&transport=polling", "/mnt"))
            assert handshake is not None and handshake[2].startswith(b"0{")
    assert seen == ["lifespan", "lifespan.startup", "http", "/hello", "lifespan.shutdown"]


# ---- real ASGI servers and the official client ------------------------------------------------------------------


def serve_example() -> ASGIApplication:
    """The example app, plus a handler that tells the tests which transport carries the session, and
    socket.io-client 2.x let in (allow_eio3)."""
    sys.path.insert(0, str(EXAMPLES))
    example = importlib.import_module("asgi_app")
    sio: anysio.Server = example.sio
    sio.allow_eio3 = True

    @sio.on("transport")
    async def transport(socket: anysio.Socket) -> str | None:
        return sio.runtime.core.transport_of(socket.client)

    app: ASGIApplication = example.app
    return app


def serve_mounted() -> ASGIApplication:
    """The example mounted in Starlette, which passes no lifespan events to mounts: the background task starts
    with the first request."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/", app=serve_example())])


SERVERS = {
    "uvicorn": ["uvicorn", "--factory", "tests.e2e.test_asgi:serve_example", "--lifespan", "on"],
    "uvicorn-no-lifespan": ["uvicorn", "--factory", "tests.e2e.test_asgi:serve_example", "--lifespan", "off"],
    "hypercorn-trio": ["hypercorn", "--worker-class", "trio", "tests.e2e.test_asgi:serve_example()"],
    "hypercorn-trio-mounted": ["hypercorn", "--worker-class", "trio", "tests.e2e.test_asgi:serve_mounted()"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server process on a free port; its URL once the port accepts connections."""
    port = free_port()
    name, *args = SERVERS[request.param]
    if name == "uvicorn":
        args += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "2"]
    else:
        args += ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", name, *args], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    log: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        # Both servers log this line once they listen.
        while True:
            line = lines.get(timeout=30)
            assert line is not None, "".join(log)
            if f"127.0.0.1:{port}" in line and "unning on" in line:
                break
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    errors = [line for line in log if "Traceback" in line or "ERROR" in line]
    assert not errors, "".join(log)


class SioClient:
    """socket.io-client in Node (tests/node/sio_client.mjs): JSON-line commands in, events out."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.buffer = b""
        self.ids = count()

    async def send(self, **cmd: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(cmd).encode() + b"\n")

    async def expect(self, event: str, **fields: Any) -> dict[str, Any]:
        """The next output line of kind `event` whose fields match; others (pings, our own acks) are skipped."""
        assert self.process.stdout is not None
        while True:
            while b"\n" not in self.buffer:
                self.buffer += await self.process.stdout.receive()
            line, self.buffer = self.buffer.split(b"\n", 1)
            out: dict[str, Any] = json.loads(line)
            assert out["event"] not in ("bad_command", "connect_error"), out
            if out["event"] == event and all(out.get(k) == v for k, v in fields.items()):
                return out

    async def call(self, name: str, *args: Any) -> list[Any]:
        """Emit with an ack; the ack's arguments."""
        ack_id = f"{name}-{next(self.ids)}"
        await self.send(cmd="emit", name=name, args=list(args), ack=True, id=ack_id)
        reply: list[Any] = (await self.expect("ack", id=ack_id))["args"]
        return reply


@asynccontextmanager
async def sio_client(url: str, transports: str | None, script: Path = SIO_CLIENT) -> AsyncIterator[SioClient]:
    options = ["--reconnection", "false"] + (["--transports", transports] if transports else [])
    async with await anyio.open_process(["node", str(script), url, *options], stderr=None) as process:
        yield SioClient(process)
        # Leaving the context closes stdin: the client disconnects and exits.


@pytest.mark.parametrize("transports", [None, "polling"], ids=["default", "polling"])
async def test_official_client(server: str, transports: str | None) -> None:
    with anyio.fail_after(30):
        async with sio_client(server, transports) as a, sio_client(server, transports) as b:
            a_id = (await a.expect("connect"))["id"]
            b_id = (await b.expect("connect"))["id"]

            # The default client starts polling and upgrades; the server sees the WebSocket in the end.
            want = "polling" if transports == "polling" else "websocket"
            while (transport := await a.call("transport")) != [want]:
                assert transport == ["polling"]

            assert await a.call("join", "room") == [sorted([a_id, "room"])]
            assert await b.call("join", "room") == [sorted([b_id, "room"])]
            assert await a.call("chat", {"room": "room", "text": "hi"}) == ["delivered"]
            assert (await b.expect("recv", name="chat"))["args"] == [{"room": "room", "text": "hi"}]

            binary = [{"binary": "00ff10"}, "x", {"nested": {"binary": ""}}]
            assert await b.call("echo", *binary) == binary


async def test_compression_is_the_asgi_server_s(server: str) -> None:
    """permessage-deflate is negotiated by the ASGI server (uvicorn and hypercorn, through wsproto, accept the
    client's offer; anysio's ``per_message_deflate`` does not apply), and big messages cross intact both ways."""
    big = "compressible " * 500
    with anyio.fail_after(30):
        async with sio_client(server, None) as client:
            await client.expect("connect")
            while await client.call("transport") != ["websocket"]:
                pass
            await client.send(cmd="transport")
            assert (await client.expect("transport"))["extensions"] == "permessage-deflate"
            assert await client.call("echo", big) == [big]
        async with sio_client(server, "polling") as client:
            await client.expect("connect")
            assert await client.call("echo", big) == [big]


@pytest.mark.parametrize("transports", [None, "polling"], ids=["default", "polling"])
async def test_socket_io_client_2_beside_the_current_one(server: str, transports: str | None) -> None:
    with anyio.fail_after(30):
        async with sio_client(server, transports, SIO_CLIENT_V2) as old, sio_client(server, transports) as new:
            old_id = (await old.expect("connect"))["id"]
            new_id = (await new.expect("connect"))["id"]
            want = "polling" if transports == "polling" else "websocket"
            while (transport := await old.call("transport")) != [want]:
                assert transport == ["polling"]
            assert await old.call("join", "room") == [sorted([old_id, "room"])]
            assert await new.call("join", "room") == [sorted([new_id, "room"])]
            assert await new.call("chat", {"room": "room", "text": "hi"}) == ["delivered"]
            assert (await old.expect("recv", name="chat"))["args"] == [{"room": "room", "text": "hi"}]
            binary = [{"binary": "00ff10"}, "x", {"nested": {"binary": ""}}]
            assert await old.call("echo", *binary) == binary


async def test_starlette_route_beside(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = b""
            try:
                while True:
                    response += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    reply = json.loads(body)
    assert reply["hello"] == "world" and isinstance(reply["sessions"], int)
