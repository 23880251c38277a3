"""What a worker counts for Prometheus: events in, verdicts, alerts, dead letters,
late events, detection latency, consumer lag, RocksDB memory and garbage-collector
pauses.

prometheus_client rather than hand-formatted text: the exposition format has
escaping and histogram rules that are easy to get subtly wrong, and its counters
are cheap enough for the per-event path (a bound child's ``inc`` is a lock and an
add). Children are bound once per label value and cached, because ``labels()``
itself costs a dict build and a lock on every call.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# The ``*_created`` timestamp series double every counter's output for a value
# Prometheus does not need (it detects resets itself).
disable_created_metrics()

#: One registry per process (not the library's global one), so that only what
#: fraudapp defines is exposed and tests can build their own.
registry = CollectorRegistry(auto_describe=True)
# The process's resident memory, CPU and open files, and Python's collector: with the
# RocksDB figures below, what a worker's memory is made of (bench/soak.py).
ProcessCollector(registry=registry)
GCCollector(registry=registry)

_events_in = Counter(
    "fraudapp_events_in", "Records taken from a topic by an agent", ["topic"], registry=registry
)
_verdicts = Counter(
    "fraudapp_verdicts", "Click verdicts written, by outcome", ["fraud"], registry=registry
)
_verdict_children = {True: _verdicts.labels("true"), False: _verdicts.labels("false")}
_alerts = Counter("fraudapp_alerts", "Alerts produced, by rule", ["rule"], registry=registry)
_dead_letters = Counter(
    "fraudapp_dead_letters",
    "Records refused to dead-letter, by reason",
    ["reason"],
    registry=registry,
)
_late = Counter(
    "fraudapp_late_events",
    "Events later than the allowed lateness: refused (a dead letter) or a check skipped",
    ["where"],
    registry=registry,
)
_latency = Histogram(
    "fraudapp_detection_latency_seconds",
    "From the worker receiving the event to the alert being handed to the producer",
    ["rule"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=registry,
)

#: When the worker took the record now being handled (epoch seconds); set by the
#: agents' common guard, read when an alert is sent.
received_at: ContextVar[float | None] = ContextVar("received_at", default=None)


@cache
def _events_child(topic: str) -> Any:
    return _events_in.labels(topic)


@cache
def _alerts_child(rule: str) -> tuple[Any, Any]:
    return _alerts.labels(rule), _latency.labels(rule)


def event_in(topic: str) -> None:
    """Count one record taken and remember when, for the latency of its alerts."""
    _events_child(topic).inc()
    received_at.set(time.time())


def alert_sent(rule: str, received: float | None = None) -> None:
    """Count one alert; its latency runs from ``received`` (epoch s) or, by default,
    from when the record being handled was taken."""
    counter, latency = _alerts_child(rule)
    counter.inc()
    start = received if received is not None else received_at.get()
    if start is not None:
        latency.observe(max(0.0, time.time() - start))


def verdict_sent(fraud: bool) -> None:
    _verdict_children[fraud].inc()


def dead_letter_sent(reason: str, topic: str) -> None:
    _dead_letters.labels(reason).inc()
    if reason == "late_event":
        _late.labels(topic).inc()


def check_skipped_late(stage: str) -> None:
    _late.labels(f"stage:{stage}").inc()


_cases = Counter(
    "fraudapp_case_transitions",
    "Case transitions (opened, reopened, escalated, updated, resolved, expired, lifted), by rule",
    ["rule", "transition"],
    registry=registry,
)
_notifications = Counter(
    "fraudapp_notifications",
    "Case notifications by outcome: sent, snoozed (silenced by a snooze), failed",
    ["rule", "outcome"],
    registry=registry,
)


def case_transition(rule: str, transition: str) -> None:
    _cases.labels(rule, transition).inc()


def alert_not_in_case(reason: str) -> None:
    """An alert the case stage could not fold (``late``: older than it keeps)."""
    _late.labels(f"cases:{reason}").inc()


def notification(rule: str, outcome: str) -> None:
    _notifications.labels(rule, outcome).inc()


class GaugeCollector(Collector):
    """A gauge read at scrape time: ``values`` yields (label values, value). Its
    ``describe`` names the family without reading it: otherwise the registry calls
    ``collect`` at registration, before the consumer or the tables exist."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        values: Callable[[], Iterator[tuple[list[str], float]]],
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.values = values

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labels)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for labels, value in self.values():
            family.add_metric(labels, value)
        yield family


def lag_collector(offsets: Callable[[], Iterator[tuple[str, int, int, int]]]) -> GaugeCollector:
    """Consumer lag per assigned partition, read at scrape time from the consumer:
    the partition's end offset minus the next offset this worker will read."""
    return GaugeCollector(
        "fraudapp_consumer_lag",
        "Records on the partition not yet read by this worker",
        ["topic", "partition"],
        lambda: (
            ([topic, str(partition)], max(0, end - position))
            for topic, partition, end, position in offsets()
        ),
    )


def rocksdb_collector(figures: Callable[[], Iterator[tuple[str, str, int]]]) -> GaugeCollector:
    """RocksDB's own memory figures per table (memtables, block cache, index and
    filter blocks) and its bytes on disk, read at scrape time, so a worker's
    resident memory can be told apart from its state's (bench/soak.py plots both)."""
    return GaugeCollector(
        "fraudapp_rocksdb_bytes",
        "RocksDB memory (memtables, block_cache, table_readers) and sst bytes on "
        "disk, summed over the table's partitions open on this worker",
        ["table", "kind"],
        lambda: (([table, kind], value) for table, kind, value in figures()),
    )


def _python_blocks() -> Iterator[tuple[list[str], float]]:
    """Blocks held by Python's small-object allocator (every object up to 512 bytes):
    it grows with live Python objects and not with native memory (RocksDB, buffers),
    so a memory curve can be told apart into the two. Cheap: a counter read."""
    yield [], sys.getallocatedblocks()


registry.register(
    GaugeCollector(
        "fraudapp_python_allocated_blocks",
        "Memory blocks allocated by Python's object allocator (sys.getallocatedblocks)",
        [],
        _python_blocks,
    )
)

_gc_pause = Histogram(
    "fraudapp_gc_pause_seconds",
    "How long each run of Python's cyclic garbage collector stopped the worker",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=registry,
)
_gc_children = [_gc_pause.labels(str(generation)) for generation in range(3)]
_gc_started = [0.0]


def _time_gc(phase: str, info: dict[str, int]) -> None:
    """Every collection stops the event loop, and every record waiting on it. A
    full collection walks every live object: with a few hundred thousand of them,
    tens of milliseconds, which shows up as detection latency and nowhere else.
    prometheus_client's GCCollector counts collections but does not time them."""
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _gc_children[info["generation"]].observe(time.perf_counter() - _gc_started[0])


gc.callbacks.append(_time_gc)
