"""The workers scenario: anysio with 2 worker processes against 1, on the same port, same load, same run.

    python bench/workers.py [--reps 3] [--scenarios echo,poll] [--smoke]

Nothing is pinned: the workers may use both cores, and so may the load generator (one thread). The table gives
each configuration's throughput, the ratio 2 workers / 1 worker, the load generator's own CPU and the whole
machine's CPU while it ran, so a reader can tell when the machine, not anysio, is the limit: with 2 cores, two
workers and a load generator share what one worker and the load generator had to themselves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # bench/run.py, the main harness

SERVER = harness.SERVERS_DIR / "anysio_server.py"


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def one(loadgen: Path, sc: harness.Scenario, workers: int, rep: int, logs: Path) -> dict[str, Any]:
    spec = harness.ServerSpec(
        f"anysio-{workers}w", [harness.PY, str(SERVER), "--backend", "asyncio", "--workers", str(workers)], anysio=True
    )
    server = harness.ServerProcess(spec, False, logs / f"{spec.name}-{sc.name}-{rep}.log", loadgen)
    try:
        why = server.wait_ready()
        if why is not None:
            raise SystemExit(f"{spec.name}: {why}")
        busy0, total0 = machine_ticks()
        run = harness.drive(loadgen, sc, server, False, rep, 120)
        busy1, total1 = machine_ticks()
    finally:
        server.stop()
    if run.error:
        raise SystemExit(f"{spec.name} {sc.name}: {run.error}")
    assert sc.rate is not None
    return {
        "rate": harness.dig(run.result, sc.rate),
        "loadgen_cpu": harness.dig(run.result, ("loadgen_cpu",)),
        "machine_busy": (busy1 - busy0) / max(1, total1 - total0),
    }


def main() -> int:
    p = argparse.ArgumentParser(description="anysio: 2 workers against 1")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scenarios", default="echo,poll")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    loadgen = harness.setup("release" if not a.smoke else "dev")
    logs = harness.BENCH / "results" / time.strftime("workers-%Y%m%d-%H%M%S.logs")
    logs.mkdir(parents=True, exist_ok=True)
    wanted = a.scenarios.split(",")
    scs = [s for s in harness.scenarios(a.smoke, harness._fd_limit(), 1) if s.name in wanted]
    rows = []
    for sc in scs:
        got: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for rep in range(1 if a.smoke else a.reps):
            for workers in (1, 2) if rep % 2 == 0 else (2, 1):  # interleaved
                got[workers].append(one(loadgen, sc, workers, rep, logs))
        med = {w: statistics.median(r["rate"] for r in got[w]) for w in got}
        busy = {w: statistics.median(r["machine_busy"] for r in got[w]) for w in got}
        lg = {w: statistics.median(r["loadgen_cpu"] or 0 for r in got[w]) for w in got}
        rows.append(
            [
                sc.title,
                f"{med[1]:,.0f}",
                f"{med[2]:,.0f}",
                f"{med[2] / med[1]:.2f}x" if med[1] else "-",
                f"{lg[1]:.0%} / {lg[2]:.0%}",
                f"{busy[1]:.0%} / {busy[2]:.0%}",
            ]
        )
    header = ["scenario", "1 worker", "2 workers", "2w / 1w", "loadgen CPU (1w / 2w)", "machine busy (1w / 2w)"]
    print(harness.table(rows, header))
    print("(rates are per second; machine busy is the share of both cores in use while the load ran)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
