"""Connection state recovery's Python half without sockets: the options as Node and Python users write them, and
what the ``data`` kept per disconnected socket costs (the README's figure)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from anysio import ConnectionStateRecovery, Server
from anysio.server.recovery import Recovery


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        (False, None),
        (True, ConnectionStateRecovery(120.0, True)),
        ({}, ConnectionStateRecovery(120.0, True)),
        ({"max_disconnection_duration": 30, "skip_middlewares": False}, ConnectionStateRecovery(30, False)),
        ({"maxDisconnectionDuration": 30_000, "skipMiddlewares": False}, ConnectionStateRecovery(30, False)),
        (ConnectionStateRecovery(5), ConnectionStateRecovery(5, True)),
    ],
)
def test_options_as_node_and_python_users_write_them(given: Any, expected: ConnectionStateRecovery | None) -> None:
    assert ConnectionStateRecovery.of(given) == expected
    Server(connection_state_recovery=given)  # the core takes them


def test_a_misspelt_option_names_the_closest_valid_one() -> None:
    with pytest.raises(TypeError, match="did you mean 'skip_middlewares'"):
        Server(connection_state_recovery={"skip_middleware": True})


class NoCore:
    """Recovery's view of the core, unused by what is measured here."""

    def pid_of(self, socket: int) -> str | None:
        return None

    def restore(self, socket: int, pid: str, offset: str) -> str | None:
        return None

    def take_session(self, nsp: str, pid: str, offset: str) -> Any:
        return None

    def adopt_session(self, socket: int, session: Any) -> str | None:
        return None


def test_the_python_half_costs_one_entry_per_disconnected_socket() -> None:
    """Per disconnected socket Python keeps its pid (20 characters, as the core makes them) and a reference to
    its ``data`` (the application's object, kept alive): this measures both, not the data."""
    recovery = Recovery(ConnectionStateRecovery(), NoCore())
    n = 20_000
    datas: list[dict[str, Any]] = [{} for _ in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, data in enumerate(datas):
        recovery.kept[f"{i:020d}"] = data
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    print(f"recovery, Python: {per_entry:.0f} B per disconnected socket (its pid and the entry)")
    assert 50 < per_entry < 250
    for i in range(n):
        recovery.expired(f"{i:020d}")
    assert recovery.kept == {}
