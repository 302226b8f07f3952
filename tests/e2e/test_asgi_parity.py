"""The Node API parity features through ``anysio.ASGIApp`` (in process, the ASGI messages by hand): a dynamic
namespace, a catch-all listener, the headers and connection_error engine events. The ASGI app dispatches events in
tasks rather than eagerly, so this is the other path through the dispatcher. Every test runs on asyncio and trio."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest

import anysio
from tests.e2e.test_asgi import call_http, eio, http_scope, lifespan

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_dynamic_namespace_catch_all_and_engine_events_over_asgi() -> None:
    sio = anysio.Server()
    dyn = sio.of(re.compile(r"^/dyn-\d+$"))
    seen: list[tuple[str, str, Any]] = []
    errors: list[tuple[int, dict[str, Any]]] = []
    refused = anyio.Event()

    @dyn.on("connect")
    def connect(socket: anysio.Socket, auth: Any) -> None:
        socket.on_any(lambda event, *args: seen.append((socket.namespace, event, args)))

    @dyn.on("echo")
    async def echo(socket: anysio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.engine.on("connection_error")
    def connection_error(err: anysio.ConnectionErrorInfo) -> None:
        errors.append((err.code, err.context))
        refused.set()

    @sio.engine.on("headers")
    def headers(headers: dict[str, Any], request: anysio.Request) -> None:
        headers["X-Anysio"] = "yes"

    app = anysio.ASGIApp(sio)
    with anyio.fail_after(10):
        async with lifespan(app):
            result = await call_http(app, http_scope("GET", "/socket.io/", "EIO=4&transport=polling"))
            assert result is not None
            status, sent, body = result
            assert status == 200 and {k.lower(): v for k, v in sent.items()}["x-anysio"] == "yes"
            query = f"EIO=4&transport=polling&sid={json.loads(body[1:])['sid']}"
            assert await eio(app, "POST", query, b"40/dyn-3,") == "ok"
            assert (await eio(app, "GET", query)).startswith('40/dyn-3,{"sid":')
            assert await eio(app, "POST", query, b'42/dyn-3,1["echo","x"]') == "ok"
            assert await eio(app, "GET", query) == '43/dyn-3,1["x"]'
            [(nsp, event, args)] = seen
            assert (nsp, event, args[0], type(args[1])) == ("/dyn-3", "echo", "x", anysio.Ack)
            assert "/dyn-3" in sio.namespaces

            answer = await call_http(app, http_scope("GET", "/socket.io/", "EIO=4&transport=polling&sid=nope"))
            assert answer is not None and answer[0] == 400
            await refused.wait()  # the driver loop dispatches the request's events after it was answered
            assert errors == [(1, {"sid": "nope"})]
