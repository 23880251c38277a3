"""Customer records for enrichment: the compacted ``accounts`` topic as a GlobalTable.

Every worker holds every customer (a GlobalTable reads all partitions), so an
alert is enriched where it is raised, with no remote lookup; an update produced to
the topic (``fraudapp load accounts FILE``, or a CDC connector) reaches every worker
and shows in the next alert. Alerts for unknown accounts still go out (a left join).
"""

from __future__ import annotations

from typing import Any

import faust
import orjson

from fraudapp.app import app, settings

CUSTOMER_FIELDS = ("first_name", "last_name", "email", "phone", "address", "country")

accounts_topic = app.topic(
    settings.topics.accounts,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    compacting=True,
    internal=True,
)


class TopicGlobalTable(faust.GlobalTable):
    """A GlobalTable over a topic of our choosing. faust accepts ``changelog_topic``,
    but its partition assignor still looks for ``<app>-<table>-changelog`` and the
    rebalance dies on a KeyError; answering with the real topic's name fixes that."""

    def _changelog_topic_name(self) -> str:
        return self.changelog_topic.get_topic_name()


customers = app.tables.add(
    TopicGlobalTable(
        app,
        name="customers",
        beacon=app.tables.beacon,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        changelog_topic=accounts_topic,
        # Records come from outside the app (fraudapp load, a CDC connector): keep
        # reading every partition as a standby after start-up recovery, or updates
        # made while the worker runs would never be seen.
        is_global=True,
        synchronize_all_active_partitions=True,
        # Apply each update at once rather than per 1000 records: the partitions
        # are both active (start-up recovery) and standby, and faust sizes the
        # buffer by the first role it sees (faust GlobalTable docs advise the same).
        recovery_buffer_size=1,
        standby_buffer_size=1,
    )
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
    record = customer(account_id)
    if record is None:
        return {"customer_known": False}
    first, last = record.get("first_name") or "", record.get("last_name") or ""
    return {
        "customer_known": True,
        "customer_name": f"{first} {last}".strip(),
        **{f"customer_{name}": record.get(name) for name in CUSTOMER_FIELDS},
    }
