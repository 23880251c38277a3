"""The snoozes in force, read by every worker: the compacted ``snoozes`` topic as a
reference table (:mod:`fraudapp.core.snooze` says what a snooze is).

Every worker holds them all, the way it holds the rules, because notifications for
a case may be sent by whichever worker reads its partition of ``cases``, and an HTTP
view on any worker shows them.
"""

from __future__ import annotations

from typing import Any

import orjson

from fraudapp.app import app, internal_topic, outbox, settings
from fraudapp.core.alerts import now_ms
from fraudapp.core.snooze import audit_record, in_force
from fraudapp.engine.globaltable import TopicGlobalTable, reference_table

topics = settings.topics
snoozes_topic = internal_topic(topics.snoozes, compacting=True)
snooze_table = reference_table(
    app,
    "snoozes",
    snoozes_topic,
    settings.partitions,
    TopicGlobalTable,
    options=settings.rocksdb.table_options(),
)


def snooze_of(case_id: str) -> dict[str, Any] | None:
    """The last snooze taken on the case (in force or not), None if never."""
    raw = snooze_table.get(case_id.encode("utf-8"))
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def active(case_id: str, now: int | None = None) -> dict[str, Any] | None:
    """The snooze in force on the case now, if any."""
    record = snooze_of(case_id)
    return record if in_force(record, now_ms() if now is None else now) else None


async def take(snooze: dict[str, Any]) -> None:
    """Write a snooze (from the HTTP API) and its audit record."""
    key = snooze["case_id"].encode("utf-8")
    await outbox.send(topics.snoozes, key, orjson.dumps(snooze))
    await outbox.send(topics.actions, key, orjson.dumps(audit_record(snooze)))
    outbox.send_soon()
