"""``GET /metrics``: this worker's counters in Prometheus's text format.

Each worker exposes its own numbers (Prometheus scrapes every worker and sums);
consumer lag is read from faust's consumer at scrape time, per assigned partition,
RocksDB's memory and disk figures from the open databases, and event time from the
worker's watermarks: each stage's level and each source partition's read and
committed times (a level that stays unknown or far behind is what to look at when
alerts seem late or state grows).
"""

from __future__ import annotations

from collections.abc import Iterator

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudapp.app import app, watermarks
from fraudapp.engine import consumerstate, fetchbuffer, storage
from fraudapp.live import metrics

metrics.registry.register(metrics.lag_collector(lambda: consumerstate.positions(app.consumer)))
metrics.registry.register(metrics.rocksdb_collector(lambda: storage.memory_of(app.tables.items())))
metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_fetched_unread_partitions",
        "Partitions whose fetched records wait in the consumer's buffer, unread",
        ["topic"],
        lambda: fetchbuffer.unread_by_topic(app.consumer),
    )
)


def _levels() -> Iterator[tuple[list[str], float]]:
    """Each domain's level (ms of event time) that is known, idle ones left out."""
    for domain, levels in watermarks.describe().items():
        for level, value in levels.items():
            if isinstance(value, int):
                yield [domain, level], float(value)


def _sources() -> Iterator[tuple[list[str], float]]:
    for (topic, partition), clock in sorted(watermarks.sources.items()):
        for kind, value in (("read", clock.seen), ("committed", clock.safe)):
            if value is not None:
                yield [topic, str(partition), kind], float(value)


def _paused() -> Iterator[tuple[list[str], float]]:
    yield [], float(len(getattr(app.consumer, "held", {}) or {}))


metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_watermark_ms",
        "Event time (epoch ms) each stage judges lateness and expiry by, per domain",
        ["domain", "level"],
        _levels,
    )
)
metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_source_event_time_ms",
        "Newest event time read on, and committed of, each source partition (epoch ms)",
        ["topic", "partition", "kind"],
        _sources,
    )
)
metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_alignment_paused_partitions",
        "Source partitions paused because they ran too far ahead in event time",
        [],
        _paused,
    )
)


@app.page("/metrics")
class Metrics(View):
    """Prometheus exposition; needs the API token like every view but /health."""

    async def get(self, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return self.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
