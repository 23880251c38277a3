"""``GET /metrics``: this worker's counters in Prometheus's text format.

Each worker exposes its own numbers (Prometheus scrapes every worker and sums);
consumer lag is read from faust's consumer at scrape time, per assigned partition, and
RocksDB's memory and disk figures from the open databases.
"""

from __future__ import annotations

from collections.abc import Iterator

from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudapp import fetchbuffer, metrics, storage
from fraudapp.app import app


def _offsets() -> Iterator[tuple[str, int, int, int]]:
    """(topic, partition, end offset, next offset to read) per assigned partition."""
    consumer = app.consumer
    try:
        assigned = sorted(consumer.assignment())
    except ConsumerNotStarted:  # scraped while the worker starts
        return
    read = consumer._read_offset  # faust keeps no public reader for it
    committed = consumer._committed_offset
    for tp in assigned:
        end = consumer.highwater(tp)
        last_read = read.get(tp)
        position = last_read + 1 if last_read is not None else committed.get(tp)
        if end is not None and position is not None:
            yield tp.topic, tp.partition, end, position


metrics.registry.register(metrics.lag_collector(_offsets))
metrics.registry.register(metrics.rocksdb_collector(lambda: storage.memory_of(app.tables.items())))
metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_fetched_unread_partitions",
        "Partitions whose fetched records wait in the consumer's buffer, unread",
        ["topic"],
        lambda: fetchbuffer.unread_by_topic(app.consumer),
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
