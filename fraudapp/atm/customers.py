"""Customer records for enrichment: the compacted ``accounts`` topic as a GlobalTable.

Every worker holds every customer (a GlobalTable reads all partitions), so an
alert is enriched where it is raised, with no remote lookup; an update produced to
the topic (``fraudapp load accounts FILE``, or a CDC connector) reaches every worker
and shows in the next alert. Alerts for unknown accounts still go out (a left join).
"""

from __future__ import annotations

from typing import Any

import orjson

from fraudapp.app import app, internal_topic, settings
from fraudapp.atm.detect import customer_evidence
from fraudapp.engine.globaltable import TopicGlobalTable, reference_table

accounts_topic = internal_topic(settings.topics.accounts, compacting=True)
customers = reference_table(
    app,
    "customers",
    accounts_topic,
    settings.partitions,
    TopicGlobalTable,
    options=settings.rocksdb.table_options(),
)


def customer(account_id: str) -> dict[str, Any] | None:
    """The account's customer record, or None when unknown (or not JSON)."""
    raw = customers.get(account_id.encode("utf-8"))
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def enrichment(account_id: str) -> dict[str, Any]:
    """Customer fields for an alert, flat and prefixed like the seed's enriched stream."""
    return customer_evidence(customer(account_id))
