"""faust's App with fraudapp's consumer: the one place the app is built below faust's
public API.

faust builds its consumer in ``App._new_consumer`` and offers no setting for the
consumer's class with the arguments faust passes it; fraudapp needs its own
(:class:`~fraudapp.engine.bulkfeed.BulkConsumer`: records of topics with a bulk
handler go to that handler straight from the consumer's fetches). The override
builds it with exactly the arguments faust's own gives
(``tests/unit/test_engine_contract.py`` fingerprints faust's method, so an upgrade
that changes them fails until someone has read it). Transports other than aiokafka
get faust's own consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faust

from fraudapp.core.watermarks import Watermarks
from fraudapp.engine.bulkfeed import (
    BATCH_COMMIT_EVERY,
    FAUST_FETCH_MAX_WAIT_MS,
    BulkConsumer,
    Handler,
)
from fraudapp.engine.statewrites import StateWrites


@dataclass(slots=True)
class FeedOptions:
    """What the bulk consumer is given (:meth:`BulkConsumer.use` says what each does)."""

    on_caught_up: Callable[[], None] | None = None
    writes: StateWrites | None = None
    fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS
    batch_commit_every: int = BATCH_COMMIT_EVERY
    watermarks: Watermarks | None = None


class FraudApp(faust.App):
    """faust's app whose consumer hands records of topics in :attr:`bulk_handlers` to
    those handlers from its fetches (:mod:`fraudapp.engine.bulkfeed`), configured by
    :attr:`feed` (set before the consumer is first used, as ``fraudapp.app`` does)."""

    bulk_handlers: dict[str, Handler]
    feed: FeedOptions

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.bulk_handlers = {}
        self.feed = FeedOptions()

    def _new_consumer(self) -> faust.types.ConsumerT:
        transport = self.transport
        if not issubclass(BulkConsumer, transport.Consumer):  # not aiokafka: faust's own
            return super()._new_consumer()
        consumer = BulkConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )
        feed = self.feed
        consumer.use(
            self.bulk_handlers,
            on_caught_up=feed.on_caught_up,
            writes=feed.writes,
            fetch_max_wait_ms=feed.fetch_max_wait_ms,
            batch_commit_every=feed.batch_commit_every,
            watermarks=feed.watermarks,
        )
        return consumer
