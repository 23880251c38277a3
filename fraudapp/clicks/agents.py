"""Faust wiring of the click-burst rule: topic in, table state, verdicts and alerts out.

The agent is thin: decode, make sure the record is on its session's partition, look
the session up in a RocksDB-backed table, run :func:`fraudapp.clicks.detect.step`,
write the state back, send the results. Why a plain table and not a windowed one:
the rule needs an exact sliding window and event-time expiry, which faust's hopping
windows (approximate, one changelog record per window per event) and its wall-clock
window cleanup do not give (docs/guarantees.md, "Event time and watermarks").
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT

from fraudapp.adnet.agents import begin, location_of, send_duplicate_verdict
from fraudapp.app import app, settings, state_table
from fraudapp.clicks.detect import RULE_NAME, BurstFinding, BurstRule, BurstStep, burst_alert
from fraudapp.clicks.models import Click, decode_click
from fraudapp.core.badinput import BadInput
from fraudapp.core.rulebook import RuleRecord
from fraudapp.engine.origin import origin_of
from fraudapp.live import liverules, livewatermarks
from fraudapp.live.keyedagent import KeyedRunner, keyed_topics
from fraudapp.live.outputs import send_alert
from fraudapp.live.recordagent import record_agent
from fraudapp.live.send import send_dead_letter

log = logging.getLogger(__name__)


def burst_rule(record: RuleRecord) -> BurstRule:
    """The rule as a version of the ``rules`` topic gives it."""
    params = record.params
    return BurstRule(
        threshold=params["threshold"],
        window_ms=params["window_ms"],
        lateness_ms=params["lateness_ms"],
        version=record.version,
    )


rule = burst_rule(liverules.book[RULE_NAME])
topics = settings.topics

#: Session state, keyed by the raw UTF-8 session id, the same bytes the source
#: records are keyed by, so keyed HTTP requests reach the owning worker.
sessions = state_table("click-sessions")

click_source, clicks_topic, clicks_by_session = keyed_topics(
    app, topics.clicks, topics.clicks_by_session, settings.partitions
)


runner: KeyedRunner[Click, BurstStep] = KeyedRunner(
    rule=rule,
    table=sessions,
    partitions=settings.partitions,
    rekey_topic=clicks_by_session,
    what="click",
    watermark=lambda: livewatermarks.level(livewatermarks.CLICKS, "session"),
)
liverules.book.on_change(RULE_NAME, lambda record: runner.set_rule(burst_rule(record)))


async def handle(event: EventT) -> None:
    """One record: dead letter, detour to its session's partition, or verdict + alerts."""
    try:
        click = decode_click(event.message.value, settings.max_record_bytes, origin_of(event))
    except BadInput as error:
        await send_dead_letter(event, error)
        return
    key = click.session_id.encode("utf-8")
    placed = await runner.place(event, key, click.timestamp)
    if placed is None:
        return  # on its way to its session's partition, owned by another worker
    partition, seen, context = placed
    with context:
        await judge(event, partition, key, click, seen)


async def judge(event: EventT, partition: int, key: bytes, click: Click, seen: int | None) -> None:
    """The click on its session's ``partition``: alerts, then the later stages."""
    result = await runner.process(event, partition, click, seen)
    if result is None:
        return
    for finding in result.findings:
        # Located when the alerted click is this one (not an earlier one it condemned).
        here = location_of(click) if finding.click_id == click.click_id else None
        await send_alert(key, finding_alert(finding, here))
    reasons = [RULE_NAME] if result.fraud and liverules.counts(RULE_NAME) else []
    if result.duplicate and not result.replay:
        # The click again from a producer: counted once already, by every stage, so
        # only its verdict is repeated.
        await send_duplicate_verdict(click, reasons)
    else:
        # A replay may never have reached the other stages: it goes through them
        # again, as a repeat, which each stage recognises.
        await begin(click, reasons, partition, repeat=result.replay)


def finding_alert(finding: BurstFinding, location: dict[str, Any] | None = None) -> dict[str, Any]:
    params = liverules.current()[RULE_NAME].params  # its grading thresholds, live
    return burst_alert(finding, runner.rule.version, location, params)


@app.on_partitions_revoked.connect
async def _forget_expiry(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    runner.reset()


#: Every click: a verdict on ``click-verdicts``, an alert per fraudulent click.
detect_click_bursts = record_agent(click_source, "click-bursts", handle)
