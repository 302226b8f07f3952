"""``/metrics``: the server's counts in the Prometheus text format (``Server(metrics=True)``).

The hot counts (packets, bytes, sessions, connects, broadcasts, bad input, slow consumers) are kept in Rust
(``rust/metrics.rs``) and read in one call at the scrape; Python keeps only what happens in Python: the handlers'
time, the acks it waits for, and the bad input it finds (a payload that does not fit, a packet it cannot decode).
A scrape is a snapshot: plain JSON numbers, summed over the workers (``gather``) before prometheus-client writes
the exposition, so a scrape on any worker shows the whole machine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from .._native import HandlerTimes
from ..engineio.http import Request, StaticFiles

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError:  # the optional dependency: Server(metrics=True) says how to install it
    CollectorRegistry = None  # type: ignore[assignment,misc]

#: A snapshot: counts by name; a labelled count is a dict of label -> count; the histogram a dict of its parts.
Snapshot = dict[str, Any]
#: The handlers' time is counted (in Rust: ``_native.HandlerTimes``) in buckets of powers of two nanoseconds,
#: from 2**_LOW (about 1 us) to 2**(_LOW + _BUCKETS - 1) (about 17 s), and one over them.
_LOW, _BUCKETS = HandlerTimes.LOW, HandlerTimes.BUCKETS
_DOCS = {
    "packets_in": ("packets_received", "Engine.IO message packets received (a Socket.IO packet, or one attachment)"),
    "packets_out": ("packets_sent", "Engine.IO message packets sent, one per target of a broadcast"),
    "bytes_in": ("bytes_received", "Bytes of the message packets received (no HTTP or WebSocket framing)"),
    "bytes_out": ("bytes_sent", "Bytes of the message packets sent, counted once per target"),
    "upgrades": ("engineio_upgrades", "Engine.IO sessions upgraded from long-polling to WebSocket"),
    "broadcasts": ("broadcasts", "Broadcasts (to rooms or a namespace), each counted once by every process"),
    "deliveries": ("broadcast_deliveries", "Sockets that broadcasts reached"),
    "slow_consumers": ("slow_consumers_dropped", "Peers dropped because their output passed max_buffered"),
    "acks_timed_out": ("acks_timed_out", "Acknowledgements the server waited for in vain (one per socket)"),
}
_LABELLED = {
    "sessions_opened": ("engineio_sessions_opened", "transport", "Engine.IO sessions opened, by transport"),
    "sessions_closed": ("engineio_sessions_closed", "reason", "Engine.IO sessions closed, by Node's reason"),
    "connects": ("connects", "result", "Socket.IO CONNECTs, by result"),
    "disconnects": ("disconnects", "reason", "Sockets disconnected, by Node's reason"),
    "bad_input": ("bad_input", "kind", "Input refused as bad, by kind (each logged once)"),
    "rate_limited": ("rate_limited", "kind", "Events (per socket) and connections (per address) over their rate limit"),
}
_GAUGES = {
    "sockets": ("sockets", "transport", "Connected sockets, by the transport of their session"),
    "sessions": ("engineio_sessions", "transport", "Open Engine.IO sessions, by transport"),
}


class Counts:
    """What Python counts: the handlers' time and the bad input Python finds."""

    def __init__(self) -> None:
        self.handler_times = HandlerTimes()
        self.bad_input: dict[str, int] = {"payload": 0, "undecodable": 0}

    def bad(self, kind: str) -> None:
        self.bad_input[kind] = self.bad_input.get(kind, 0) + 1


class MetricsCore(Protocol):
    def metrics(self) -> dict[str, Any]: ...


class FlowCounts(Protocol):
    rate_limited: int


class AckTable(Protocol):
    timed_out: int

    def pending_count(self) -> int: ...


class Reporting(Protocol):
    """Where the server counts (its dispatcher)."""

    counts: Counts | None
    times: HandlerTimes | None

    @property
    def acks(self) -> AckTable: ...


def add(total: Snapshot, more: Snapshot) -> Snapshot:
    """Two snapshots summed, name by name (the workers' view)."""
    out = dict(total)
    for name, value in more.items():
        mine = out.get(name)
        if isinstance(value, dict):
            out[name] = add(mine if isinstance(mine, dict) else {}, value)
        elif isinstance(value, list):
            old = mine if isinstance(mine, list) else [0] * len(value)
            out[name] = [a + b for a, b in zip(old, value, strict=True)]
        else:
            out[name] = (mine or 0) + value
    return out


class Metrics:
    """A server's ``/metrics``: its snapshot, summed with the other workers' (``gather``), as Prometheus text."""

    def __init__(self, path: str, core: MetricsCore, acks: AckTable, counts: Counts, flow: FlowCounts) -> None:
        if CollectorRegistry is None:
            raise ImportError(
                "metrics=True needs prometheus-client, which is not installed: pip install 'anysio[metrics]'"
            )
        self.path = path
        self.core = core
        self.acks = acks
        self.counts = counts
        self.flow = flow
        #: The other workers' snapshots, when this server is one of several (set by anysio.workers).
        self.gather: Callable[[], Awaitable[list[Snapshot]]] | None = None

    def snapshot(self) -> Snapshot:
        """This process's counts, as plain JSON numbers."""
        snap = self.core.metrics()
        snap["bad_input"] = add(snap.get("bad_input", {}), self.counts.bad_input)
        snap["handler_seconds"] = self.counts.handler_times.snapshot()
        snap["acks_pending"] = self.acks.pending_count()
        snap["acks_timed_out"] = self.acks.timed_out
        snap["rate_limited"] = {"event": self.flow.rate_limited, "connection": snap.pop("rate_limited_connections", 0)}
        snap["processes"] = 1
        return snap

    @classmethod
    def enable(cls, option: bool | str, core: MetricsCore, reporting: Reporting, flow: FlowCounts) -> Metrics | None:
        """``Server(metrics=...)``: None when off; else the server's Metrics, its dispatcher counting."""
        if option is False or option == "":
            return None
        counts = reporting.counts = Counts()
        reporting.times = counts.handler_times
        return cls("/metrics" if option is True else option, core, reporting.acks, counts, flow)

    async def total(self) -> Snapshot:
        snap = self.snapshot()
        for other in await self.gather() if self.gather is not None else []:
            snap = add(snap, other)
        return snap

    async def respond(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The answer to a scrape: 200 and the exposition."""
        return 200, [("Content-Type", CONTENT_TYPE_LATEST)], exposition(await self.total())


async def answer_http(
    metrics: Metrics | None, files: StaticFiles | None, request: Request
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A request outside the Socket.IO path: ``/metrics`` when on, a static file, or 404."""
    if metrics is not None and request.path == metrics.path and request.method == "GET":
        return await metrics.respond()
    if files is not None:
        return await files.respond(request.method, request.path)
    return 404, [("Content-Type", "text/plain")], b"Not Found"


def exposition(snap: Snapshot) -> bytes:
    """A snapshot in the Prometheus text format, written by prometheus-client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap))
    return bytes(generate_latest(registry))


class _Collector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        for key, (name, label, doc) in _GAUGES.items():
            gauge = GaugeMetricFamily(f"anysio_{name}", doc, labels=[label])
            for value, n in sorted(snap.get(key, {}).items()):
                gauge.add_metric([value], n)
            yield gauge
        for key, (name, label, doc) in _LABELLED.items():
            counter = CounterMetricFamily(f"anysio_{name}", doc, labels=[label])
            for value, n in sorted(snap.get(key, {}).items()):
                counter.add_metric([value], n)
            yield counter
        for key, (name, doc) in _DOCS.items():
            yield CounterMetricFamily(f"anysio_{name}", doc, value=snap.get(key, 0))
        yield GaugeMetricFamily("anysio_acks_pending", "Acknowledgements awaited now", value=snap["acks_pending"])
        yield GaugeMetricFamily("anysio_processes", "Processes (workers) summed in this view", value=snap["processes"])
        yield _histogram(snap["handler_seconds"])


def _histogram(h: dict[str, Any]) -> Metric:
    buckets: list[tuple[str, float]] = []
    running = 0
    for i, n in enumerate(h["buckets"][:_BUCKETS]):
        running += n
        buckets.append((repr(2 ** (_LOW + i) / 1e9), running))
    buckets.append(("+Inf", running + h["buckets"][_BUCKETS]))
    return HistogramMetricFamily(
        "anysio_handler_duration_seconds",
        "Time of the event handlers, from the dispatch of the event to the reply",
        buckets=buckets,
        sum_value=h["sum"],
    )
