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

It was taken out once, when two workers ran slower with it than without; that was
measured while faust's fixed 1.5 s fetch wait still stalled busy workers (see
:mod:`fraudapp.engine.bulkfeed`). On the 100 ms wait, three interleaved rounds each of
the scaling, backlog and latency benches showed it costs nothing and still removes
the start-up stalls (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
        self._fetcher_apply([tp for tp in tps if tp.topic in changelogs], pause=pause)

    def _fetcher_apply(
        self, tps: list[TP], *, pause: bool, seek: Mapping[TP, int] | None = None
    ) -> None:
        """Pause or resume ``tps`` in aiokafka's fetcher, and seek some of them (after
        pausing: a seek drops what the fetcher holds of the partition)."""
        chosen = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        positions = {TopicPartition(tp.topic, tp.partition): o for tp, o in (seek or {}).items()}
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
            for tp, offset in positions.items():
                if tp in assigned:
                    consumer.seek(tp, offset)

        thread.thread_loop.call_soon_threadsafe(apply)
