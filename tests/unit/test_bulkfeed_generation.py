"""Hazard H3: a bulk batch is handed over only in the consumer generation it was
fetched in.

The bulk feed awaits a commit before a batch and inside a long one. Such a commit can
take a whole rebalance: faust resumes the flow after it, so a check of the flow alone
let the rest of a batch fetched before the rebalance be handled, although its
partition may now be another worker's (its state written here, its changelog and
alerts sent from here, while the new owner restores and handles the same records).
Here the real :class:`BulkConsumer` of a faust app (not started: no broker) hands a
batch over while its commit stands in for one that a rebalance overtook: the
generation moves on during it, as faust's assignment moves it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from fraudapp.engine import bulkfeed
from fraudapp.engine.faustapp import FraudApp

TP0 = TP("h3-clicks", 0)


def records(count: int) -> list[Any]:
    """What aiokafka's fetch gives for each record (the fields the feed reads)."""
    return [
        SimpleNamespace(offset=i, timestamp=1_000 + i, key=b"k", value=b"v", headers=[])
        for i in range(count)
    ]


def consumer_whose_commit_number(n: int) -> tuple[Any, list[int]]:
    """The app's bulk consumer, whose ``n``-th commit is overtaken by a rebalance, and
    the offsets its handler was given."""
    app = FraudApp(f"h3-unit-{n}", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    assert isinstance(consumer, bulkfeed.BulkConsumer)
    handled: list[int] = []
    commits = 0

    async def commit(*args: object, **kwargs: object) -> bool:
        nonlocal commits
        commits += 1
        if commits == n:
            app.consumer_generation_id += 1  # the rebalance came and went meanwhile
        consumer._n_acked = 10**9  # the next one the feed checks for is due too
        return True

    consumer.commit = commit
    consumer._n_acked = 10**9  # every commit the feed checks for is due
    consumer.batch_commit_every = 1
    return consumer, handled


async def test_a_commit_before_the_batch_that_a_rebalance_overtook_hands_nothing_over() -> None:
    consumer, handled = consumer_whose_commit_number(1)

    async def handler(event: Any) -> None:
        handled.append(event.message.offset)

    assert consumer.flow_active  # faust resumed the flow after the rebalance
    last = await consumer._deliver_bulk(TP0, records(5), handler)
    assert handled == []
    assert last is None


async def test_a_commit_inside_the_batch_that_a_rebalance_overtook_stops_the_batch_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulkfeed, "YIELD_EVERY", 3)  # a commit after every 3 records
    consumer, handled = consumer_whose_commit_number(2)  # the first one inside the batch

    async def handler(event: Any) -> None:
        handled.append(event.message.offset)

    last = await consumer._deliver_bulk(TP0, records(10), handler)
    assert handled == [0, 1, 2]  # handed over (and acked) before that commit
    assert last == 2
    assert consumer._read_offset[TP0] == 2  # the rest is read again after the seek
