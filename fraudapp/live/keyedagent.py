"""The faust side of a keyed rule: partition placement, state, lateness refusals.

Agents of every domain do the same around their rule: make sure a record is handled
on its key's partition, run the partition's :class:`KeyedPartition` over the
worker's RocksDB table with the times to judge by, and send refused late events to
dead-letter. One class here, so each domain's agent only decodes and sends its own
outputs.

Placement: a record a producer put on another partition than its key's (kcat's and
librdkafka's CRC32 partitioner, no key at all) is handled as if read from its key's
partition when this worker owns that partition (always, for a lone worker: as the
later stages are, :mod:`fraudapp.engine.owned`), else sent there through the re-key topic.

Time: a record is judged late against the newest event time its own source
partition had read before it, as if that partition were the whole stream, carried
in a header through the re-key topic; and state expires by the stage's watermark
(:mod:`fraudapp.core.watermarks`), so neither depends on how the partitions' fetches
interleave on their way here.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, TypeVar

import faust
from faust.types import EventT

from fraudapp.app import outbox, owned
from fraudapp.core.badinput import late_event
from fraudapp.core.keyed import KeyedPartition, KeyedRule
from fraudapp.core.partitioning import partition_for
from fraudapp.engine.origin import carried_seen, rekey_headers
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live import livewatermarks
from fraudapp.live.send import send_dead_letter

E = TypeVar("E")
R = TypeVar("R")

#: Where and how to handle a record: its key's partition, the newest event time of its
#: source partition before it, and the context to run it in.
Placement = tuple[int, int | None, AbstractContextManager[Any]]


class KeyedRunner(Generic[E, R]):
    """This worker's partitions of one rule, rebuilt from the table after rebalances.

    ``watermark`` gives the stage's watermark now (None: not known yet)."""

    def __init__(
        self,
        *,
        rule: KeyedRule[E, R],
        table: faust.Table,
        partitions: int,
        rekey_topic: faust.TopicT,
        what: str,
        watermark: Callable[[], int | None],
    ) -> None:
        self.rule = rule
        self.table = table
        self.partition_count = partitions
        self.rekey_topic = rekey_topic
        self.rekey_name = rekey_topic.get_topic_name()
        self.what = what
        self.watermark = watermark
        self.partitions: dict[int, KeyedPartition[E, R]] = {}
        self.counts = {"processed": 0, "late": 0, "rekeyed": 0}

    def set_rule(self, rule: KeyedRule[E, R]) -> None:
        """A new version of the rule, for every partition from its next event on."""
        self.rule = rule
        for processor in self.partitions.values():
            processor.set_rule(rule)

    def reset(self) -> None:
        """Forget in-memory expiry indexes; called when partitions are revoked."""
        self.partitions.clear()

    def partition(self, number: int) -> KeyedPartition[E, R]:
        processor = self.partitions.get(number)
        if processor is None:
            seed = scan_partition(self.table, number)
            processor = self.partitions[number] = KeyedPartition(self.rule, self.table, seed)
        return processor

    async def place(self, event: EventT, key: bytes, timestamp: int) -> Placement | None:
        """Where to handle a decoded record; None when it was sent to another worker
        through the re-key topic. A source record's event time is observed here."""
        message = event.message
        if message.topic == self.rekey_name:
            return message.partition, carried_seen(event), nullcontext()
        seen = livewatermarks.observe(message.topic, message.partition, message.offset, timestamp)
        home = partition_for(key, self.partition_count)
        inline = owned.inline(self.rekey_name, home, message.partition)
        if inline is not None:
            if home != message.partition:
                self.counts["rekeyed"] += 1
            return home, seen, inline
        self.counts["rekeyed"] += 1
        await outbox.send(
            self.rekey_name, key, message.value, partition=home, headers=rekey_headers(event, seen)
        )
        return None

    async def process(self, event: EventT, partition: int, item: E, seen: int | None) -> R | None:
        """Apply the rule on ``partition``; a late event goes to dead-letter and gives
        None. ``seen``: its source partition's newest event time before it."""
        outcome = self.partition(partition).process(item, self.watermark(), seen)
        if outcome.result is None:
            self.counts["late"] += 1
            timestamp = self.rule.event_time(item)
            await send_dead_letter(
                event, late_event(self.what, timestamp, self.rule.lateness_ms, outcome.watermark)
            )
            return None
        self.counts["processed"] += 1
        return outcome.result


def keyed_topics(app: faust.App, source: str, rekeyed: str, partitions: int) -> tuple[Any, ...]:
    """The agent's input (source and its re-key topic), the source alone for
    producing to it, and the re-key topic, all raw bytes."""
    common = {"key_serializer": "raw", "value_serializer": "raw", "partitions": partitions}
    return (
        app.topic(source, rekeyed, internal=True, **common),
        app.topic(source, **common),
        app.topic(rekeyed, internal=True, **common),
    )
