"""The application the workers' metrics test runs in N processes: ``/metrics`` on, an echo and whoami."""

from __future__ import annotations

import os
from typing import Any

import anysio

sio = anysio.Server(metrics=True)


@sio.on("echo")
async def echo(socket: anysio.Socket, value: Any) -> Any:
    return value


@sio.on("whoami")
def whoami(socket: anysio.Socket) -> int:
    return os.getpid()
