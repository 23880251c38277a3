"""The faust side of a keyed rule: partition placement, state, lateness refusals.

Agents of every domain do the same around their rule: make sure a record sits on
its key's partition (re-keying it through an internal topic when a producer used
another partitioner or no key), run the partition's :class:`KeyedPartition` over
the worker's RocksDB table, and send refused late events to dead-letter. One class
here, so each domain's agent only decodes and sends its own outputs.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import faust
from faust.types import EventT

from fraudapp.app import outbox
from fraudapp.badinput import late_event
from fraudapp.keyed import KeyedPartition, KeyedRule
from fraudapp.origin import ORIGIN_HEADER, origin_of
from fraudapp.outputs import send_dead_letter
from fraudapp.partitioning import partition_for
from fraudapp.tablescan import scan_partition

E = TypeVar("E")
R = TypeVar("R")


class KeyedRunner(Generic[E, R]):
    """This worker's partitions of one rule, rebuilt from the table after rebalances."""

    def __init__(
        self,
        *,
        rule: KeyedRule[E, R],
        table: faust.Table,
        partitions: int,
        rekey_topic: faust.TopicT,
        what: str,
    ) -> None:
        self.rule = rule
        self.table = table
        self.partition_count = partitions
        self.rekey_topic = rekey_topic
        self.what = what
        self.partitions: dict[int, KeyedPartition[E, R]] = {}
        self.counts = {"processed": 0, "late": 0, "rekeyed": 0}

    def set_rule(self, rule: KeyedRule[E, R]) -> None:
        """A new version of the rule, for every partition from its next event on."""
        self.rule = rule
        for processor in self.partitions.values():
            processor.set_rule(rule)

    def reset(self) -> None:
        """Forget in-memory clocks; called when partitions are revoked."""
        self.partitions.clear()

    def partition(self, number: int) -> KeyedPartition[E, R]:
        processor = self.partitions.get(number)
        if processor is None:
            seed = scan_partition(self.table, number)
            processor = self.partitions[number] = KeyedPartition(self.rule, self.table, seed)
        return processor

    async def misplaced(self, event: EventT, key: bytes) -> bool:
        """Forward a record that is not on its key's partition; True if it was."""
        message = event.message
        home = partition_for(key, self.partition_count)
        if message.partition == home or message.topic == self.rekey_topic.get_topic_name():
            return False
        self.counts["rekeyed"] += 1
        await outbox.send(
            self.rekey_topic.get_topic_name(),
            key,
            message.value,
            partition=home,
            headers=[(ORIGIN_HEADER, origin_of(event).encode("ascii"))],
        )
        return True

    async def process(self, event: EventT, item: E) -> R | None:
        """Apply the rule; a late event goes to dead-letter and gives None."""
        outcome = self.partition(event.message.partition).process(item)
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
