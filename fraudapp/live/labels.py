"""Analysts' labels in a running worker: the ``labels`` topic as a GlobalTable, the
live tally of each rule version's labels, and its precision on ``/metrics``.

Every worker reads the whole compacted ``labels`` topic (keyed by the alert or case
id labelled; :mod:`fraudapp.core.labels` has the record), the way it reads the rules:
each change is applied to the tally as it arrives, and what the local store already
holds is loaded on first use (faust replays only the records newer than the store).
So any worker answers ``GET /labels/precision`` and exposes the same
``fraudapp_rule_precision`` gauges. A record that is not a label goes to
dead-letter and changes nothing. The tally holds one small entry per labelled id:
labels are written by people, thousands, not millions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from faust.types import EventT

from fraudapp.app import app, internal_topic, settings
from fraudapp.core.badinput import BadInput
from fraudapp.core.labels import Tally, decode
from fraudapp.engine.globaltable import TopicGlobalTable, reference_table
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live import metrics
from fraudapp.live.send import send_dead_letter

log = logging.getLogger(__name__)

tally = Tally()
_loaded = False


def _apply(key: bytes | None, value: bytes | None, event: EventT | None) -> None:
    try:
        some_id, record = decode(key, value)
    except BadInput as error:
        if event is None:  # from the local store: dead-lettered when it arrived
            log.warning("refused label record %r: %s", key, error.message)
        else:
            # faust applies changelog batches synchronously: send in the background.
            asyncio.ensure_future(send_dead_letter(event, error))
        return
    tally.apply(some_id, record)


class LabelsTable(TopicGlobalTable):
    """The ``labels`` topic: each label (or withdrawal) is tallied as it arrives."""

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if _loaded:
            for event in events:
                _apply(event.message.key, event.message.value, event)


labels_topic = internal_topic(settings.topics.labels, compacting=True)
labels_table = reference_table(
    app,
    "labels",
    labels_topic,
    settings.partitions,
    LabelsTable,
    options=settings.rocksdb.table_options(),
)


def current() -> Tally:
    """The tally, with what the local store already holds applied on first use."""
    global _loaded
    if not _loaded:
        _loaded = True
        for partition in range(settings.partitions):
            for key, value in scan_partition(labels_table, partition):
                _apply(key, value, None)
    return tally


def label(some_id: str) -> dict[str, Any] | None:
    """The label in force for an alert or case id, None when it has none (or the
    record there is not a label)."""
    raw = labels_table.get(some_id.encode("utf-8"))
    if raw is None:
        return None
    try:
        return decode(some_id.encode("utf-8"), raw)[1]
    except BadInput:
        return None


def _precision() -> Iterator[tuple[list[str], float]]:
    for row in current().rows():
        if row["precision"] is not None:
            yield [row["rule"], str(row["rule_version"])], row["precision"]


def _labels() -> Iterator[tuple[list[str], float]]:
    for row in current().rows():
        for word in ("fraud", "legit"):
            yield [row["rule"], str(row["rule_version"]), word], float(row[word])


metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_rule_precision",
        "Analysts' labels per rule version: fraud / (fraud + legit), the latest label"
        " per alert or case id counting once",
        ["rule", "version"],
        _precision,
    )
)
metrics.registry.register(
    metrics.GaugeCollector(
        "fraudapp_labels",
        "Analysts' labels in force per rule version and label (fraud, legit)",
        ["rule", "version", "label"],
        _labels,
    )
)
