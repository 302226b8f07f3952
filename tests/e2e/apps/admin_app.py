"""The application the Admin UI's worker test runs in N processes: "/" with "echo" and "whoami", instrumented for
the UI without a login."""

from __future__ import annotations

import os
from typing import Any

import anysio

sio = anysio.Server()


@sio.on("echo")
async def echo(socket: anysio.Socket, value: Any) -> Any:
    return value


@sio.on("whoami")
async def whoami(socket: anysio.Socket) -> int:
    return os.getpid()


anysio.instrument(sio, auth=None)
