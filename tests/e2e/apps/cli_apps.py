"""Applications the command-line tests serve: a factory, one that cannot start in a worker, and ``Server.run``."""

from __future__ import annotations

import sys

import __main__
import anysio


def create() -> anysio.Server:
    """A factory (``anysio run tests.e2e.apps.cli_apps:create --factory``)."""
    sio = anysio.Server()

    @sio.on("echo")
    async def echo(socket: anysio.Socket, value: object) -> object:
        return value

    return sio


def fails_in_workers() -> anysio.Server:
    """Loads in the master (which checks the target), fails in every worker process."""
    if getattr(getattr(__main__, "__spec__", None), "name", None) == "anysio.workers":
        raise RuntimeError("no database in this worker")
    return create()


not_a_server = 42

if __name__ == "__main__":
    create().run("127.0.0.1", 0, backend=sys.argv[1])
