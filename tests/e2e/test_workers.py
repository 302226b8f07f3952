"""N worker processes on one port, driven by the official socket.io-client with default settings.

Each run starts ``anysio run tests.e2e.apps.workers_app:sio --workers N`` (on the test's anyio backend) and:
100 polling-only clients exchange acked events with no error; 20 default clients upgrade to WebSocket; a broadcast
from one worker's handler reaches every client exactly once; ``fetch_sockets`` and a broadcast with ack see every
client; after ``kill -9`` of one worker its clients come back, and broadcasts reach the restarted worker.
"""

from __future__ import annotations

import os
import signal
from functools import partial

import pytest

from .workers_helpers import Lines, clients, cluster

pytestmark = pytest.mark.anyio


def all_got(group: Lines, value: str, n: int) -> bool:
    """Whether ``n`` different clients of ``group`` got the broadcast of ``value``."""
    return len({m["client"] for m in group.events("bcast") if m.get("value") == value}) == n


@pytest.mark.parametrize("workers", [2, 4])
async def test_workers_behave_as_one_server(anyio_backend: str, workers: int) -> None:
    async with cluster(workers, anyio_backend) as (url, master), clients(url, 100, 10, "polling") as polling:
        await polling.until("connected", timeout=60)
        done = await polling.until("done", timeout=60)
        assert done["errors"] == [] and done["connect_errors"] == 0
        assert done["acks"] == 100 * 10, "every acked event of every polling client, no HTTP 400"

        async with clients(url, 20, 2, None) as default:
            await default.until("connected", timeout=60)
            # Upgrades may be reported before every client is connected: count those already seen too.
            await default.wait_for(lambda: len({m["client"] for m in default.events("upgraded")}) == 20, 60)
            assert (await default.until("done", timeout=60))["acks"] == 20 * 2

            # Which worker serves each polling client: the handler answers with its process id.
            pids: list[int] = (await polling.ask({"cmd": "emit_all", "name": "whoami"}, "acks"))["args"]
            assert None not in pids and len(set(pids)) == workers, "the kernel spreads clients over every worker"
            count = await polling.ask({"cmd": "emit", "client": 0, "name": "count"}, "ack")
            assert count["args"] == [120], "fetch_sockets sees the clients of every worker"
            ask_all = await polling.ask({"cmd": "emit", "client": 7, "name": "ask_all"}, "ack")
            # From every worker, each answer as the asking worker's own sockets give it: a tuple, bytes kept.
            assert ask_all["args"] == [[120, ["tuple int bytes"]]], "broadcast acks come back from every worker"

            await polling.ask({"cmd": "emit", "client": 3, "name": "bcast", "args": ["x"]}, "ack")
            for group, n in ((polling, 100), (default, 20)):
                # Every client of every worker gets it (other workers hear of it over the bus, later).
                await group.wait_for(partial(all_got, group, "x", n), 30)
                # A duplicate would have to arrive before this round trip of every client's.
                echo = await group.ask({"cmd": "emit_all", "name": "echo", "args": ["sync"]}, "acks")
                assert echo["args"] == ["sync"] * n
                counts = await group.ask({"cmd": "counts"}, "counts")
                assert counts["bcast"] == [1] * n, "each client exactly once"

        # kill -9 one worker: its clients notice, and they come back.
        victim = pids[0]
        mine = {i for i, pid in enumerate(pids) if pid == victim}
        os.kill(victim, signal.SIGKILL)
        await polling.wait_for(lambda: mine <= {m["client"] for m in polling.events("reconnected")}, 30)
        # A polling client of another worker whose next request the kernel had just given to the killed worker
        # (a new connection not yet handed over) has that request fail, and reconnects too (README, "Deployment
        # with workers"); over WebSocket nobody else notices (test_worker_faults).
        dropped = {m["client"] for m in polling.events("disconnect")}
        await polling.wait_for(lambda: dropped <= {m["client"] for m in polling.events("reconnected")}, 30)
        assert mine <= dropped
        # The master restarts the dead worker.
        await master.until_text("listening again")
        again = await polling.ask({"cmd": "emit_all", "name": "echo", "args": ["again"]}, "acks")
        assert again["args"] == ["again"] * 100
        # A worker that stayed up broadcasts over the bus again: its stream to the dead worker is replaced by one to
        # the restarted worker, and every client hears the broadcast.
        survivor_client = min(set(range(100)) - mine)
        answer = await polling.ask({"cmd": "emit", "client": survivor_client, "name": "bcast", "args": ["y"]}, "ack")
        assert answer["args"] == [1]
        await polling.wait_for(partial(all_got, polling, "y", 100), 30)
