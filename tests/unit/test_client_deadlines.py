"""anysio.Client's ack timeouts (``manager.Deadlines``): answered acks do not pile up in the heap, and an ack left
unanswered still expires at its deadline, whatever was swept around it."""

from __future__ import annotations

import time

import anyio
import pytest

from anysio.client.manager import Deadlines

pytestmark = pytest.mark.anyio


class Shot:
    def __init__(self) -> None:
        self.fired = False

    def is_set(self) -> bool:
        return self.fired

    def set(self) -> None:
        self.fired = True

    async def wait(self) -> None:
        raise NotImplementedError


class Waiter:
    def __init__(self, expired: anyio.Event | None = None) -> None:
        self.done = Shot()
        self.expired = expired

    def expire(self) -> None:
        assert self.expired is not None, "only the unanswered ack expires"
        self.expired.set()
        self.done.set()


def test_answered_acks_are_swept_so_the_heap_stays_bounded() -> None:
    deadlines = Deadlines()
    far = time.monotonic() + 3600
    in_flight: list[Waiter] = []
    for n in range(100_000):  # 16 in flight, each answered before the next is sent, as a busy client does
        waiter = Waiter()
        deadlines.add(far + n, waiter)
        in_flight.append(waiter)
        if len(in_flight) > 16:
            in_flight.pop(0).done.set()
    assert len(deadlines) <= 2 * Deadlines.SWEEP_FROM  # before: 100,000, every answered ack kept until its deadline


def test_many_unanswered_acks_are_all_kept() -> None:
    deadlines = Deadlines()
    far = time.monotonic() + 3600
    for n in range(5000):
        deadlines.add(far + n, Waiter())
    assert len(deadlines) == 5000


async def test_an_unanswered_ack_expires_among_swept_ones() -> None:
    deadlines = Deadlines()
    late = Waiter(anyio.Event())
    async with anyio.create_task_group() as tg:
        tg.start_soon(deadlines.run)
        deadlines.add(time.monotonic() + 0.05, late)
        for _ in range(3 * Deadlines.SWEEP_FROM):
            answered = Waiter()
            deadlines.add(time.monotonic() + 0.01, answered)
            answered.done.set()
        assert late.expired is not None
        with anyio.fail_after(5):
            await late.expired.wait()
        tg.cancel_scope.cancel()
    assert len(deadlines) == 0
