"""The rule book of a running worker, changed live from the ``rules`` topic.

Every worker reads the whole compacted ``rules`` topic as a GlobalTable (the same
way as the customer records and the IP blocklist), so a change reaches each worker
as it is written, without a restart. Each record is validated on arrival: a bad one
goes to dead-letter and the version in force stays. Detectors subscribe to their
rule's changes (:meth:`RuleBook.on_change`) and swap their parameters between two
events; alerts are routed by the version in force when they are sent (live, shadow,
or not at all when paused).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from faust.types import EventT

from fraudapp.app import app, internal_topic, settings
from fraudapp.core.badinput import BadInput
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import RuleBook, RuleError, decode, defaults
from fraudapp.engine.globaltable import TopicGlobalTable, reference_table
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live.send import send_dead_letter

log = logging.getLogger(__name__)


book = RuleBook(defaults(settings, tables_dir() / "rules.json"))
_loaded = False


def _apply(key: bytes | None, value: bytes | None, event: EventT | None) -> None:
    try:
        record = decode(value, key)
        if book.apply(record):
            log.info("rule %s v%s in force: %s", record.rule, record.version, record.as_dict())
    except RuleError as error:
        if event is None:  # from the local store: dead-lettered when it arrived
            log.warning("refused rule record %r: %s", key, error.message)
        else:
            # faust applies changelog batches synchronously: send in the background.
            asyncio.ensure_future(send_dead_letter(event, BadInput(error.reason, error.message)))


class RulesTable(TopicGlobalTable):
    """The ``rules`` topic: each change is applied to the book as it arrives."""

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if _loaded:
            for event in events:
                _apply(event.message.key, event.message.value, event)


rules_topic = internal_topic(settings.topics.rules, compacting=True)
rules_table = reference_table(
    app,
    "rules",
    rules_topic,
    settings.partitions,
    RulesTable,
    options=settings.rocksdb.table_options(),
)


def current() -> RuleBook:
    """The book, with what the local store already holds applied on first use (faust
    replays only the topic's records newer than the store)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for partition in range(settings.partitions):
            for key, value in scan_partition(rules_table, partition):
                _apply(key, value, None)
    return book


def route(alert: dict[str, Any]) -> str | None:
    """See :meth:`RuleBook.route`."""
    return current().route(alert)


def counts(rule: str) -> bool:
    """See :meth:`RuleBook.counts`."""
    return current().counts(rule)
