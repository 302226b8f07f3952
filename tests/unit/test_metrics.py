"""The metrics' Python side without sockets: snapshots summed over workers, the handler-time buckets, and the
exposition prometheus-client parses back."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from anysio._native import HandlerTimes
from anysio.server.metrics import add, exposition


def test_snapshots_sum_name_by_name() -> None:
    a = {"packets_in": 2, "sessions": {"polling": 1}, "h": {"buckets": [1, 0], "sum": 0.5}}
    b = {"packets_in": 3, "sessions": {"polling": 2, "websocket": 1}, "h": {"buckets": [0, 4], "sum": 1.0}}
    assert add(a, b) == {
        "packets_in": 5,
        "sessions": {"polling": 3, "websocket": 1},
        "h": {"buckets": [1, 4], "sum": 1.5},
    }


def test_handler_times_fall_in_powers_of_two() -> None:
    times = HandlerTimes()
    for ns in (1, 1023, 1024, 5_000, 10**12):
        times.observe(ns)
    # Under 2**10 ns: the first bucket (le 1.024 us); 1024 ns is 11 bits: the second (le 2.048 us); 5 us is 13
    # bits: le 8.192 us; 1000 s is over the last bucket.
    assert times.buckets[0] == 2 and times.buckets[1] == 1 and times.buckets[3] == 1 and times.buckets[-1] == 1
    assert sum(times.buckets) == 5


def test_the_exposition_parses_back() -> None:
    times = HandlerTimes()
    times.observe(3_000)
    snap = {
        "sockets": {"websocket": 2},
        "connects": {"accepted": 3},
        "packets_in": 7,
        "acks_pending": 1,
        "processes": 2,
        "handler_seconds": times.snapshot(),
    }
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition(snap).decode())
        for s in family.samples
    }
    assert samples[("anysio_sockets", (("transport", "websocket"),))] == 2
    assert samples[("anysio_connects_total", (("result", "accepted"),))] == 3
    assert samples[("anysio_packets_received_total", ())] == 7
    assert samples[("anysio_processes", ())] == 2
    assert samples[("anysio_handler_duration_seconds_count", ())] == 1
    assert samples[("anysio_handler_duration_seconds_bucket", (("le", "2.048e-06"),))] == 0
    assert samples[("anysio_handler_duration_seconds_bucket", (("le", "4.096e-06"),))] == 1
