"""Faust wiring of the click-burst rule: topic in, table state, verdicts and alerts out.

The agent is thin: decode, make sure the record is on its session's partition, look
the session up in a RocksDB-backed table, run :func:`fraudapp.clicks.detect.step`,
write the state back, send the results. Why a plain table and not a windowed one:
the rule needs an exact sliding window and event-time expiry, which faust's hopping
windows (approximate, one changelog record per window per event) and its wall-clock
window cleanup do not give (DESIGN.md "State").
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT

from fraudapp.alerts import make_alert
from fraudapp.app import alerts_topic, app, output_topic, settings
from fraudapp.badinput import BadInput, late_event
from fraudapp.clicks.detect import RULE_NAME, BurstFinding, BurstRule, BurstStep
from fraudapp.clicks.models import Click, decode_click
from fraudapp.clicks.processor import ClickPartition, click_partition
from fraudapp.outputs import send_dead_letter, send_json
from fraudapp.partitioning import partition_for
from fraudapp.tablescan import scan_partition

log = logging.getLogger(__name__)

rule = BurstRule(
    threshold=settings.click_burst.threshold,
    window_ms=settings.click_burst.window_ms,
    lateness_ms=settings.click_burst.lateness_ms,
)
topics = settings.topics

#: Session state, keyed by the raw UTF-8 session id, the same bytes the source
#: records are keyed by, so keyed HTTP requests reach the owning worker.
sessions = app.Table(
    "click-sessions",
    partitions=settings.partitions,
    key_type=bytes,
    value_type=bytes,
)

click_source = app.topic(
    topics.clicks,
    topics.clicks_by_session,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
)
clicks_topic = app.topic(
    topics.clicks,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
)
clicks_by_session = app.topic(
    topics.clicks_by_session,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
)
verdicts_topic = output_topic(topics.click_verdicts)


class ClickBurstWorker:
    """This worker's partitions of the rule, each a :class:`fraudapp.keyed.KeyedPartition`.

    They are built lazily from the recovered table on the first click after a
    rebalance, so a partition that moves to another worker keeps its watermark and
    keeps expiring its sessions there.
    """

    def __init__(self) -> None:
        self.partitions: dict[int, ClickPartition] = {}
        self.counts = {"clicks": 0, "alerts": 0, "dead_letters": 0, "rekeyed": 0}

    def reset(self) -> None:
        self.partitions.clear()

    def partition(self, number: int) -> ClickPartition:
        processor = self.partitions.get(number)
        if processor is None:
            processor = click_partition(rule, sessions, scan_partition(sessions, number))
            self.partitions[number] = processor
        return processor

    async def handle(self, event: EventT) -> None:
        message = event.message
        try:
            click = decode_click(message.value, settings.max_record_bytes)
        except BadInput as error:
            self.counts["dead_letters"] += 1
            await send_dead_letter(event, error)
            return
        key = click.session_id.encode("utf-8")
        home = partition_for(key, settings.partitions)
        if message.partition != home and message.topic != topics.clicks_by_session:
            self.counts["rekeyed"] += 1
            await clicks_by_session.send(key=key, value=message.value, partition=home)
            return
        outcome = self.partition(message.partition).process(click)
        if outcome.result is None:
            self.counts["dead_letters"] += 1
            await send_dead_letter(
                event, late_event("click", click.timestamp, rule.lateness_ms, outcome.watermark)
            )
            return
        self.counts["clicks"] += 1
        await send_json(verdicts_topic, key, verdict(click, outcome.result))
        for finding in outcome.result.findings:
            self.counts["alerts"] += 1
            await send_json(alerts_topic, key, finding_alert(finding))


def verdict(click: Click, outcome: BurstStep) -> dict[str, Any]:
    """The click's record on ``click-verdicts``: its verdict as known on arrival."""
    return {
        "click_id": click.click_id,
        "session_id": click.session_id,
        "url": click.url,
        "timestamp": click.timestamp,
        "fraud": outcome.fraud,
        "reasons": [RULE_NAME] if outcome.fraud else [],
        "duplicate": outcome.duplicate,
    }


def finding_alert(finding: BurstFinding) -> dict[str, Any]:
    """One alert per fraudulent click; its id depends only on the click."""
    return make_alert(
        rule=RULE_NAME,
        rule_version=rule.version,
        key=finding.session_id,
        event_time=finding.event_time,
        identity=(finding.session_id, finding.url, finding.click_id),
        evidence=finding.evidence(),
    )


worker = ClickBurstWorker()


@app.on_partitions_revoked.connect
async def _forget_clocks(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    worker.reset()


@app.agent(click_source, name="click-bursts")
async def detect_click_bursts(stream: Any) -> None:
    """Every click: a verdict on ``click-verdicts``, an alert per fraudulent click."""
    async for event in stream.events():
        await worker.handle(event)
