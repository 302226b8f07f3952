"""anysio.Client's reconnection delays: socket.io-client's backoff (backo2), figure for figure."""

from __future__ import annotations

import pytest

from anysio.client.manager import Backoff


def test_without_jitter_the_delay_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(1.0, 5.0, 0.0)
    assert [backoff.duration() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.duration() == 1.0


@pytest.mark.parametrize(
    ("rand", "expected"),
    # Math.random() r: deviation floor(r * 0.5 * ms); subtracted when floor(r * 10) is even, else added.
    [(0.0, [1.0, 2.0, 4.0]), (0.15, [1.075, 2.15, 4.3]), (0.25, [0.875, 1.75, 3.5]), (0.99, [1.495, 2.99, 5.0])],
)
def test_jitter_moves_each_delay_as_backo2_does(
    monkeypatch: pytest.MonkeyPatch, rand: float, expected: list[float]
) -> None:
    monkeypatch.setattr("anysio.client.manager.random.random", lambda: rand)
    backoff = Backoff(1.0, 5.0, 0.5)
    assert [backoff.duration() for _ in range(3)] == expected


def test_the_delays_stay_within_their_bounds() -> None:
    backoff = Backoff(0.5, 3.0, 0.5)
    delays = [backoff.duration() for _ in range(10)]
    assert all(0.25 <= d <= 3.0 for d in delays) and delays[-1] == 3.0  # past the maximum: the maximum, as Node
    first = []
    for _ in range(200):
        backoff.reset()
        first.append(backoff.duration())
    assert all(0.25 <= d <= 0.75 for d in first) and len(set(first)) > 20  # jittered
