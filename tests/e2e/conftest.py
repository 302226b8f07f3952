"""Servers for the end-to-end tests: a real EngineServer on 127.0.0.1, an ephemeral port, the test's backend."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anysio import EngineServer, Session
from tests.e2e.eio_helpers import Address, closing_connections, load_vectors
from tests.notifier import Notifier

CONFIG = load_vectors("engineio_server.json")["config"]

# The spec's test-suite server (tests/vectors/engineio_server.json "config").
SPEC_OPTIONS: dict[str, Any] = {
    "ping_interval": CONFIG["ping_interval_ms"] / 1000,
    "ping_timeout": CONFIG["ping_timeout_ms"] / 1000,
    "max_payload": CONFIG["max_payload"],
    "path": CONFIG["path"],
    "cors_allowed_origins": CONFIG["cors_allowed_origins"],
}
# Long enough that no test meets a heartbeat it did not ask for.
QUIET = {**SPEC_OPTIONS, "ping_interval": 30.0, "ping_timeout": 30.0}


class EchoServer(Notifier):
    """An EngineServer that sends every message back and records opens, messages and closes."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.eio = EngineServer(**{**QUIET, **options})
        self.address: Address = ("127.0.0.1", 0)
        self.opened: list[Session] = []
        self.messages: list[tuple[str, str | bytes]] = []
        self.closed: list[tuple[str, str]] = []

        @self.eio.on_open
        def opened(session: Session) -> None:
            self.opened.append(session)
            self.notify()

        @self.eio.on_message
        def echo(session: Session, data: str | bytes) -> None:
            self.messages.append((session.sid, data))
            session.send(data)
            self.notify()

        @self.eio.on_close
        def closed(session: Session, reason: str) -> None:
            self.closed.append((session.sid, reason))
            self.notify()

    async def closed_reason(self, sid: str, timeout: float = 5.0) -> str:
        """Wait until session ``sid`` is closed; the reason the server gave."""
        await self.wait_for(lambda: any(s == sid for s, _ in self.closed), timeout)
        return next(r for s, r in self.closed if s == sid)


@asynccontextmanager
async def serving(server: EchoServer) -> AsyncIterator[EchoServer]:
    """Run ``server`` on an ephemeral port for the body of the ``async with``."""
    async with closing_connections(), anyio.create_task_group() as tg:
        server.address = await tg.start(server.eio.serve, "127.0.0.1", 0)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


@pytest.fixture
def eio_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog recording the "anysio" logger from INFO up."""
    caplog.set_level(logging.INFO, logger="anysio")
    return caplog


def anysio_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "anysio"]
