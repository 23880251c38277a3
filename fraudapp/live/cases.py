"""The case stage: each live alert folded into its case (:mod:`fraudapp.core.cases`).

An alert travels on ``alerts`` keyed by what its rule is keyed by; its case is keyed
by the case id (rule and entity), so each alert sent is also brought to the case id's
partition: at once when this worker owns it (always, for a lone worker: the way the
stages and the alert index run inline, :mod:`fraudapp.engine.owned`), else through
the internal ``<app>-case-feed`` topic to the worker that does. The cases live in a
changelogged RocksDB table partitioned like that topic, so they are restored and
moved like every other state, and the stage judges event time by its own watermark
level (``cases``, the last of each domain: :mod:`fraudapp.core.timedomains`).

What leaves the stage: the case's state at each transition on the compacted
``cases`` topic (notifications read it: :mod:`fraudapp.live.notify`), and for a rule
version with an action, the block and its lifting on ``ip-blocklist`` with an audit
record on ``actions``. Cases resolve, blocks lift and old cases expire as the
watermark moves, also when no alert comes: a timer sweeps the partitions this
worker owns once a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from faust.streams import current_event
from faust.types import EventT

from fraudapp.app import app, internal_topic, outbox, output_topic, owned, settings, state_table
from fraudapp.atm.detect import RULE_NAME as ATM_RULE
from fraudapp.core.alerts import now_ms
from fraudapp.core.caseids import rule_of
from fraudapp.core.cases import Action, CasePartition, CasePolicy, Change
from fraudapp.core.partitioning import partition_for
from fraudapp.core.timedomains import alert_lateness_ms
from fraudapp.core.watermarks import Domain
from fraudapp.engine.owned import handled_on
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live import liverules, livewatermarks, metrics
from fraudapp.live.recordagent import record_agent

log = logging.getLogger(__name__)
config = settings.cases
topics = settings.topics

feed_topic = internal_topic(settings.case_feed_topic)
_feed_name = feed_topic.get_topic_name()
cases_topic = output_topic(topics.cases, compacting=True)
actions_topic = output_topic(topics.actions)
case_table = state_table("cases")

#: Whether an IP is on the blocklist now; the ad-network module, which holds the
#: blocklist, sets it (this layer does not import the domains).
is_blocked: Callable[[str], bool] = lambda ip: False  # noqa: E731

_partitions: dict[tuple[str, int], CasePartition] = {}
_policies = {
    domain.name: CasePolicy(
        quiet_ms=config.quiet_ms,
        lateness_ms=alert_lateness_ms(settings, domain.name),
        update_every_ms=config.update_every_ms,
        keep_ms=config.keep_ms,
    )
    for domain in (livewatermarks.CLICKS, livewatermarks.ATM)
}


def domain_of(alert: dict[str, Any]) -> Domain:
    return livewatermarks.ATM if alert["rule"] == ATM_RULE else livewatermarks.CLICKS


def home_of(case_id: str) -> int:
    """The partition of a case: its id's, as the topics' default partitioner puts it."""
    return partition_for(case_id.encode("utf-8"), settings.partitions)


def _partition(domain: Domain, number: int) -> CasePartition:
    processor = _partitions.get((domain.name, number))
    if processor is None:
        mine = _is_clicks if domain is livewatermarks.CLICKS else _is_atm
        seed = [(k, v) for k, v in scan_partition(case_table, number) if mine(v)]
        processor = CasePartition(
            _policies[domain.name], case_table, seed, is_blocked=lambda ip: is_blocked(ip)
        )
        _partitions[(domain.name, number)] = processor
    return processor


def _is_atm(value: bytes) -> bool:
    record = orjson.loads(value)
    rule = record.get("rule") or str(record.get("c", "")).removeprefix("case-")
    return rule.startswith(ATM_RULE)


def _is_clicks(value: bytes) -> bool:
    return not _is_atm(value)


@app.on_partitions_revoked.connect
async def _forget(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    _partitions.clear()


def action_of(alert: dict[str, Any]) -> Action | None:
    """The action of the alert's rule version in force, if it has one."""
    record = liverules.current()[alert["rule"]]
    kind = getattr(record, "action", "none")
    if kind in (None, "none"):
        return None
    return Action(kind, int(record.action_ttl_ms), record.version)


async def feed(alert: dict[str, Any]) -> None:
    """Bring one live alert (with its ``case_id``) to its case."""
    if not config.enabled:
        return
    case_id = alert["case_id"]
    home = home_of(case_id)
    event = current_event()
    inline = None if event is None else owned.inline(_feed_name, home, event.message.partition)
    if inline is None:
        await outbox.send(_feed_name, case_id.encode("utf-8"), orjson.dumps(alert), partition=home)
        return
    with inline:
        changes = _add(home, alert)
    await _emit(changes)


def _add(partition: int, alert: dict[str, Any]) -> list[Change]:
    domain = domain_of(alert)
    processor = _partition(domain, partition)
    outcome, changes = processor.add(alert, livewatermarks.level(domain, "cases"), action_of(alert))
    if outcome == "late":
        metrics.alert_not_in_case("late")
        log.warning(
            "alert %s is older than the case stage keeps (%s ms behind): not folded",
            alert["alert_id"],
            processor.watermark - int(alert["event_time"]) if processor.watermark else "?",
        )
    return changes


async def _take(event: EventT) -> None:
    """An alert brought through the case feed topic."""
    alert = orjson.loads(event.message.value)
    await _emit(_add(event.message.partition, alert))


take_alerts = record_agent(feed_topic, "case-feed", _take)


async def _emit(changes: list[Change]) -> None:
    for change in changes:
        metrics.case_transition(rule_of(change.case_id) or "?", change.transition)
        key = change.case_id.encode("utf-8")
        if change.record:
            record = change.as_record()
            value = None if record is None else orjson.dumps(record)
            await outbox.send(topics.cases, key, value, partition=home_of(change.case_id))
        for effect in change.effects:
            await _carry_out(effect, change)


async def _carry_out(effect: dict[str, Any], change: Change) -> None:
    """A block or its lifting: the blocklist record every worker applies, and the
    audit record of who did what when."""
    ip = effect["ip"]
    blocked = effect["type"] == "block_ip"
    entry = {
        "blocked": blocked,
        "reason": f"{'blocked' if blocked else 'lifted'} by case {change.case_id}",
        "by": "fraudapp",
        "case_id": change.case_id,
    }
    if blocked:
        entry["until_event_time"] = effect["until"]
    await outbox.send(topics.ip_blocklist, ip.encode("utf-8"), orjson.dumps(entry))
    audit = {
        "action": "block_ip" if blocked else "lift_ip",
        "ip": ip,
        "case_id": change.case_id,
        "rule": None if change.case is None else change.case["rule"],
        "rule_version": effect.get("rule_version"),
        "event_time": change.at,
        "until_event_time": effect.get("until"),
        "extended": bool(effect.get("extended")),
        "by": "fraudapp",
        "at": now_ms(),
    }
    await outbox.send(topics.actions, change.case_id.encode("utf-8"), orjson.dumps(audit))
    log.info("%s %s (case %s)", audit["action"], ip, change.case_id)


def sweep_owned() -> list[Change]:
    """Resolve, lift and expire what the watermarks have passed, in every case
    partition this worker owns (between records: the loop runs one thing at a time)."""
    if app.rebalancing or getattr(app, "in_recovery", False):
        return []
    changes: list[Change] = []
    for number in range(settings.partitions):
        if not owned.owns(_feed_name, number):
            continue
        with handled_on(_feed_name, number):
            for domain in (livewatermarks.CLICKS, livewatermarks.ATM):
                processor = _partition(domain, number)
                due = processor.next_due()
                level = livewatermarks.level(domain, "cases")
                if due is not None and level is not None and level >= due:
                    changes.extend(processor.sweep(level))
    return changes


if config.enabled:

    @app.timer(interval=1.0)
    async def sweep_cases() -> None:
        """Cases resolve when their entity goes quiet even if no alert comes."""
        try:
            changes = sweep_owned()
        except Exception:  # noqa: BLE001 - a sweep must not stop the timer; logged
            log.exception("case sweep failed")
            return
        if changes:
            await _emit(changes)
            outbox.send_soon()


def lookup(case_id: str) -> dict[str, Any] | None:
    """The case as this worker's table holds it (call on the owner)."""
    raw = case_table.get(b"c/" + case_id.encode("utf-8"))
    return None if raw is None else orjson.loads(raw)
