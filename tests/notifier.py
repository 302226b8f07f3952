"""Awaiting a condition on state that callbacks change, without sleeping: each change calls ``notify``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio


class Notifier:
    def __init__(self) -> None:
        self._changed = anyio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """The predicate's first true value, waiting for changes at most ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            while not (result := predicate()):
                await self._changed.wait()
        return result
