"""Alerts by id, so that ``GET /alerts/{alert_id}`` explains one from any worker.

An alert travels on ``alerts`` keyed by what it is about (a session, a source, an
account), so its id alone does not say where it is. Each alert sent is therefore
also written, keyed by its id, to an internal topic whose partitions follow the id;
an agent keeps them in a changelogged RocksDB table on the same partitions, so the
keyed-view routing finds the owner like any other key. Entries expire with event
time (``ALERT_INDEX_RETENTION_MS``, default an hour; 0 turns the index off), through
the same keyed-partition shell as the rules' state, so the index stays bounded. Click
alerts and ATM alerts keep their own event time (the ATM seed's data is from 2018):
each expires by its own domain's watermark at the index (:mod:`fraudapp.core.watermarks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from faust.streams import current_event
from faust.types import EventT

from fraudapp.app import app, internal_topic, outbox, owned, settings, state_table
from fraudapp.atm.detect import RULE_NAME as ATM_RULE
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.watermarks import Domain
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live import livewatermarks
from fraudapp.live.recordagent import record_agent

IndexEntry = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlertIndexRule:
    """The index as a keyed rule: the state of an id is its alert, kept ``retention_ms``
    of event time behind the partition's newest alert."""

    retention_ms: int

    @property
    def lateness_ms(self) -> int:
        return self.retention_ms

    def key(self, entry: IndexEntry) -> bytes:
        return entry["alert"]["alert_id"].encode("utf-8")

    def event_time(self, entry: IndexEntry) -> int:
        return int(entry["alert"]["event_time"])

    def apply(self, state: IndexEntry | None, entry: IndexEntry) -> tuple[IndexEntry, None]:
        return entry, None

    def prune(self, state: IndexEntry, horizon: int) -> IndexEntry | None:
        return state if self.latest_time(state) >= horizon else None

    def latest_time(self, state: IndexEntry) -> int:
        return int(state["alert"]["event_time"])

    def seen(self, state: IndexEntry, entry: IndexEntry) -> bool:
        return True


index_topic = internal_topic(settings.alert_index_topic)
_topic_name = index_topic.get_topic_name()
alert_index = state_table("alert-index")
rule = AlertIndexRule(settings.alert_index_retention_ms)
_partitions: dict[tuple[Domain, int], KeyedPartition[IndexEntry, None]] = {}


def domain_of(entry: IndexEntry) -> Domain:
    """The event-time domain of an indexed alert."""
    return livewatermarks.ATM if entry["alert"]["rule"] == ATM_RULE else livewatermarks.CLICKS


async def index(alert: dict[str, Any], topic: str, origin: dict[str, str] | None) -> None:
    """Index one sent alert, with where it went and which record raised it
    (``partition:offset`` of the input record).

    Stored at once when this worker owns the id's partition of the index (always, for
    a lone worker), as the stages are (:mod:`fraudapp.engine.owned`): 61 % of the ATM
    benchmark's transactions raise an alert, and each entry encoded, produced,
    fetched back, handed over and decoded cost ATM a fifth of its rate (12 457 ->
    15 198 transactions/s, medians of 6 runs). Otherwise it goes through the topic
    to the worker that owns it."""

    if not settings.alert_index_retention_ms:
        return
    raw_id = alert["alert_id"].encode("utf-8")
    entry = {"alert": alert, "topic": topic, "raised_by": origin}
    home = partition_for(raw_id, settings.partitions)
    event = current_event()
    inline = None if event is None else owned.inline(_topic_name, home, event.message.partition)
    if inline is None:
        await outbox.send(_topic_name, raw_id, orjson.dumps(entry), partition=home)
        return
    with inline:
        _store(home, entry)


def _store(partition: int, entry: IndexEntry) -> None:
    """Into the table, expired by the alert's domain's watermark at the index; an entry
    already older than the retention is not kept (it would expire at once)."""
    domain = domain_of(entry)
    _partition(domain, partition).process(entry, livewatermarks.level(domain, "index"), None)


def _partition(domain: Domain, number: int) -> KeyedPartition[IndexEntry, None]:
    processor = _partitions.get((domain, number))
    if processor is None:
        seed = [
            (key, value)
            for key, value in scan_partition(alert_index, number)
            if domain_of(orjson.loads(value)) == domain
        ]
        processor = _partitions[(domain, number)] = KeyedPartition(rule, alert_index, seed)
    return processor


@app.on_partitions_revoked.connect
async def _forget(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    _partitions.clear()


async def _store_alert(event: EventT) -> None:
    """Each sent alert into the table, on its id's partition."""
    _store(event.message.partition, orjson.loads(event.message.value))


keep_alerts = record_agent(index_topic, "alert-index", _store_alert)
