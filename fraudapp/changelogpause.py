"""Changelog partitions that faust pauses are paused in aiokafka too.

Why: faust's ``pause_partitions`` only leaves a partition out of the ones it asks
aiokafka's ``getmany`` for; aiokafka's background fetcher goes on fetching it. A
worker's consumer is assigned the changelog partitions of its own active tables,
which faust pauses once they are recovered, and which the worker itself keeps
writing. So the first changelog records it writes after each start or rebalance
are fetched, are never asked for, and sit in aiokafka's buffer; and while a
partition's records sit unconsumed, aiokafka sends no fetch to that broker for
any partition for ``prefetch_backoff`` (100 ms). With one broker that stopped the
worker's input for 100 ms per changelog partition after each start: in
``bench/latency.py``'s trace at 2 000 clicks/s, the first ~350 ms of alerts were
up to 120 ms late and made the whole of the p99.

Only changelog partitions are mirrored: source partitions keep faust's own
pause and resume exactly as they are, and faust seeks a changelog partition
before it reads one for recovery, which drops whatever aiokafka had buffered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka import TopicPartition
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP


class PausesChangelogFetches(AIOKafkaConsumer):
    """faust's aiokafka consumer whose changelog pauses stop aiokafka's fetches."""

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = list(tps)
        super().pause_partitions(tps)
        self._in_fetcher(tps, pause=True)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        tps = list(tps)
        super().resume_partitions(tps)
        self._in_fetcher(tps, pause=False)

    def _in_fetcher(self, tps: list[TP], *, pause: bool) -> None:
        changelogs = self.app.tables.changelog_topics
        chosen = [TopicPartition(tp.topic, tp.partition) for tp in tps if tp.topic in changelogs]
        thread = self._thread
        consumer = getattr(thread, "_consumer", None)
        if not chosen or consumer is None:
            return

        def apply() -> None:
            # In the consumer's own thread and loop: aiokafka's resume completes a
            # future of that loop. Only what is still assigned (a rebalance may have
            # come in between), and a new assignment starts unpaused anyway.
            assigned = consumer.assignment()
            mine = [tp for tp in chosen if tp in assigned]
            if mine:
                (consumer.pause if pause else consumer.resume)(*mine)

        thread.thread_loop.call_soon_threadsafe(apply)


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
