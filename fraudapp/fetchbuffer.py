"""What faust's consumer has fetched and nobody has read yet.

Why: faust "pauses" a partition only by not asking aiokafka's ``getmany`` for it;
aiokafka's background fetcher goes on fetching it. A worker's consumer is assigned
the changelog partitions of its own tables, which faust pauses once they are
recovered and which the worker keeps writing, so the first changelog records it
writes after a start or rebalance are fetched back and stay in aiokafka's buffer,
never read. While a partition's records sit unread, aiokafka sends no fetch to that
broker for ``prefetch_backoff`` (100 ms): bench/latency.py's trace showed the first
~350 ms of alerts after a start up to 120 ms late from it. Pausing those partitions
in aiokafka as well removed the stalls but made two workers slower than one
(bench/RESULTS.md), so it was taken out; this gauge shows the held partitions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any


def unread_by_topic(consumer: Any) -> Iterator[tuple[list[str], float]]:
    """Per topic, the partitions whose fetched records wait in aiokafka's buffer
    unread (``fraudapp_fetched_unread_partitions``). Source partitions pass through
    it between fetches; a partition that stays there is one nobody reads, and it
    held up the fetches once. Read from aiokafka's fetcher (no public reader), a
    copy of its keys taken under the GIL."""
    aio = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(aio, "_fetcher", None)
    if fetcher is None:
        return
    for topic, count in sorted(Counter(tp.topic for tp in list(fetcher._records)).items()):
        yield [topic], float(count)
