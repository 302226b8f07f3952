"""Coroutine handlers started eagerly: run to their first suspension where the event is dispatched, and finished
in a task only if they suspend.

Most handlers never wait (an emit or a broadcast returns at once), so a task per handler, or per burst, is pure
cost. A coroutine that has suspended cannot move to another task, though: on trio (and under anyio's cancel
scopes on asyncio) what it did before suspending is bound to the task it ran in (a cancel scope entered, the task
registered with an Event to be woken). So the task that started it finishes it, and hands its own job, the driver
loop or the rest of a batch, to a new task instead (``Suspended.rest``; see ``runtime.run_core``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

__all__ = ["Suspended", "resume"]


class _Resume:
    """Awaiting this continues ``coro`` from its first suspension, which yielded ``first`` to its event loop."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.first
        self.first = None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the event loop: cancellation, above all
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


def resume(coro: Coroutine[Any, Any, Any], first: Any) -> Awaitable[Any]:
    """The rest of ``coro``, whose first ``send(None)`` yielded ``first``; await it in the task that sent that."""
    return _Resume(coro, first)


class Suspended:
    """A handler suspended during a batch: the calling task must finish it (``finish``), and leave ``rest``, the
    batch's events after it, to a new task."""

    __slots__ = ("finish", "rest")

    def __init__(self, finish: Callable[[], Awaitable[None]], rest: list[Any]) -> None:
        self.finish = finish
        self.rest = rest
