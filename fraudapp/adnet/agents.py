"""Faust wiring of the ad-network checks: stages, their tables, and the verdict.

A click's checks need its state keyed four ways, so it crosses partitioned stages,
each an agent on an internal topic keyed for its check (docs/rules.md, "Ad-network checks"):

1. **session** (``fraudapp.clicks.agents``): click bursts; then here, statelessly,
   the IP blocklist and the click's location (its lat/lon, else geo-IP);
2. **source** (device, else IP): stacked ads and the rate limit;
3. **campaign**: heavy hitters (top-K sources, bounded-memory sketches);
4. **area** (coarse H3 region): the share of fraud within a radius.

Each stage's body is :mod:`fraudapp.adnet.pipeline`'s, the very code ``fraudapp
replay`` runs; here it gets the worker's tables and the stage's watermark, and its
result is sent: its alerts at once, the click on to the next stage (the last stage
the click visits writes its verdict with every check that fired). All state is in
changelogged RocksDB tables, so it recovers and moves with partitions; the heavy
hitter and area stages also keep a decoded copy in memory per partition, because
their state per key is too big to decode per click.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from faust.types import EventT

from fraudapp.adnet.area import AreaGrid
from fraudapp.adnet.blocklist import Blocklist, BlocklistError
from fraudapp.adnet.envelope import Checked, verdict
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.pipeline import (
    RULES,
    Contribution,
    StageResult,
    StageStates,
    adnet_rules,
    area_key,
    blocklist_check,
    duplicate_verdict,
    enabled_stages,
    enter,
    shipped_blocklist,
)
from fraudapp.adnet.route import next_stage, stage_keys
from fraudapp.adnet.stages import CHECKPOINT_S, CampaignPartition
from fraudapp.app import (
    app,
    internal_topic,
    outbox,
    output_topic,
    owned,
    settings,
    state_table,
)
from fraudapp.clicks.models import Click
from fraudapp.core.badinput import BadInput
from fraudapp.core.partitioning import partition_for
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import RuleRecord
from fraudapp.engine.globaltable import TopicGlobalTable, reference_table
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live import cases, liverules, livewatermarks, metrics
from fraudapp.live.outputs import send_alert
from fraudapp.live.recordagent import record_agent
from fraudapp.live.send import raised_by, send_dead_letter, send_json

log = logging.getLogger(__name__)

config = settings.adnet
topics = settings.topics
verdicts_topic = output_topic(topics.click_verdicts)

grid = AreaGrid(radius_km=config.location_radius_km)
geoip = load_geoip(tables_dir() / "geoip.csv")

ENABLED = enabled_stages(config)
KEYS = stage_keys(area_key(grid))


stage_topics = {stage: internal_topic(topics.stage(stage)) for stage in ENABLED}
stage_names = {stage: topic.get_topic_name() for stage, topic in stage_topics.items()}
area_topic = stage_names["area"]


source_table = state_table("click-sources")
campaign_table = state_table("campaign-hitters")
area_table = state_table("area-counts")
tables = {"source": source_table, "campaign": campaign_table, "area": area_table}


# -- the session stage's part: blocklist, location, then on to the next stage ----------


class BlocklistTable(TopicGlobalTable):
    """The ``ip-blocklist`` topic: every worker applies each change as it arrives."""

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if _blocklist is not None:
            for event in events:
                _apply_blocklist_record(_blocklist, event.message.key, event.message.value, event)


blocklist_topic = internal_topic(topics.ip_blocklist, compacting=True)
blocklist_updates = reference_table(
    app,
    "ip-blocklist",
    blocklist_topic,
    settings.partitions,
    BlocklistTable,
    options=settings.rocksdb.table_options(),
)
_blocklist: Blocklist | None = None


def blocklist_present(value: bytes | None) -> bool:
    """A record lists its key unless it is a tombstone or says ``"blocked": false``."""
    if value is None:
        return False
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(record, dict) and record.get("blocked") is False)


def _apply_blocklist_record(
    blocklist: Blocklist, key: bytes | None, value: bytes | None, event: EventT | None
) -> None:
    try:
        if key is None:
            raise BlocklistError("record has no key (the key is the IP or CIDR)")
        blocklist.apply_update(key.decode("utf-8", "replace"), blocklist_present(value))
    except BlocklistError as error:
        if event is None:  # replayed from the local store: dead-lettered on arrival
            log.warning("refused %s record %r: %s", topics.ip_blocklist, key, error)
        else:
            # Called from faust's synchronous changelog path: send in the background.
            bad = BadInput("bad_blocklist_entry", str(error))
            asyncio.ensure_future(send_dead_letter(event, bad))


def blocklist() -> Blocklist:
    """The files in ``tables/blocklist`` plus the topic's changes, built on first use
    (the topic's records already in the local store are replayed from it)."""
    global _blocklist
    if _blocklist is None:
        built = shipped_blocklist(config, tables_dir())
        for partition in range(settings.partitions):
            for key, value in scan_partition(blocklist_updates, partition):
                _apply_blocklist_record(built, key, value, None)
        _blocklist = built
        log.info("IP blocklist ready: %s", built)
    return _blocklist


def _listed(ip: str) -> bool:
    """Whether ``ip`` is blocked now (the case stage's actions leave those alone)."""
    return config.blocklist_enabled and blocklist().match(ip) is not None


cases.is_blocked = _listed


def location_of(click: Click) -> dict[str, Any] | None:
    """Where a click was ({lat, lon, by}), for alerts raised before its checks."""
    return enter(click, (), geoip).location()


async def begin(click: Click, reasons: list[str], partition: int, repeat: bool = False) -> None:
    """After the session stage (on ``partition``): screen the IP, place the click,
    hand it on. A ``repeat`` (the same record again) goes the same way; the stages
    re-send their alerts for it (same ids) without counting it again."""
    checked = enter(click, reasons, geoip, received=metrics.received_at.get(), repeat=repeat)
    listed = blocklist() if config.blocklist_enabled else None
    await _deliver(blocklist_check(checked, listed, liverules.current()), checked, partition)
    await advance(checked, None, partition)


async def advance(checked: Checked, after: str | None, partition: int) -> None:
    """Hand the click to its next stage, or write its verdict if none is left.

    When this worker owns the partition of the stage's topic that the key lives on
    (always, for a lone worker), the stage runs inline, as its agent would on that
    partition (:mod:`fraudapp.engine.owned` says why); otherwise the click goes through the
    stage's topic to the worker that owns it. ``partition`` is the one the click is
    being handled on.
    """
    step = next_stage(checked, after, ENABLED, KEYS)
    if step is None:
        await send_json(
            verdicts_topic,
            checked.click.session_id,
            verdict(checked, config.weights),
        )
        metrics.verdict_sent(bool(checked.reasons))
        return
    stage, key = step
    raw_key = key.encode("utf-8")
    home = partition_for(raw_key, settings.partitions)
    topic = stage_names[stage]
    inline = owned.inline(topic, home, partition)
    if inline is None:
        await outbox.send(topic, raw_key, checked.encode(), partition=home)
        return
    with inline:
        await run_stage(stage, home, key, checked)


async def send_duplicate_verdict(click: Click, reasons: list[str]) -> None:
    """A redelivered click: its verdict again, marked, without counting it twice."""
    await send_json(verdicts_topic, click.session_id, duplicate_verdict(click, reasons, config))
    metrics.verdict_sent(bool(reasons))


def _raised_by(checked: Checked) -> None:
    """Alerts of a later stage name the click's own record, not the stage topic's."""
    if checked.click.origin:
        raised_by.set({"topic": topics.clicks, "at": checked.click.origin})


def _watermark(stage: str) -> int | None:
    return livewatermarks.level(livewatermarks.CLICKS, stage)


# -- stages 2 to 4: source, campaign, area (their bodies: fraudapp.adnet.pipeline) -------


async def run_stage(stage: str, partition: int, key: str, checked: Checked) -> None:
    """One stage on its ``partition`` of the stage's topic: its body, its sends, then
    on to the next stage."""
    _raised_by(checked)
    result = states.run(stage, partition, key, checked, liverules.current(), _watermark(stage))
    if result.late:
        metrics.check_skipped_late(stage)
    await _deliver(result, checked, partition)
    if stage == "campaign" and not result.late:
        states.campaign[partition].checkpoint()
    await advance(checked, stage, partition)


async def _deliver(result: StageResult, checked: Checked, partition: int) -> None:
    """A stage's result sent: its alerts, its verdict changes into the click, and its
    counts to the neighbouring regions (inline where this worker owns theirs)."""
    for key, alert in result.alerts:
        await send_alert(key, alert, checked.received)
    result.apply(checked)
    for contribution in result.contributions:
        raw = contribution.region.encode("utf-8")
        home = partition_for(raw, settings.partitions)
        inline = owned.inline(area_topic, home, partition)
        if inline is None:
            c = contribution
            value = orjson.dumps({"contribution": [c.cell, c.t, c.fraud]})
            await outbox.send(area_topic, raw, value, partition=home)
            continue
        with inline:
            contribute(home, contribution)


def contribute(partition: int, contribution: Contribution) -> None:
    """A neighbouring region's click, counted here; judged by the area's watermark."""
    if not states.contribute(partition, contribution, _watermark("area")):
        metrics.check_skipped_late("area-count")


async def on_source(event: EventT) -> None:
    message = event.message
    await run_stage(
        "source", message.partition, message.key.decode("utf-8"), Checked.decode(message.value)
    )


#: Key and value of the record that asks a campaign partition to write its sketches.
FLUSH = b"\x00flush"


async def on_campaign(event: EventT) -> None:
    message = event.message
    if message.value == FLUSH:
        states.campaign[message.partition].checkpoint(force=True)
        return
    await run_stage(
        "campaign", message.partition, message.key.decode("utf-8"), Checked.decode(message.value)
    )


async def on_area(event: EventT) -> None:
    message = event.message
    data = orjson.loads(message.value)
    region = message.key.decode("utf-8")
    if "contribution" in data:
        cell, t, fraud = data["contribution"]
        contribute(message.partition, Contribution(region, cell, t, fraud))
        return
    await run_stage("area", message.partition, region, Checked.from_dict(data))


# -- the stages' state per partition, and the rules in force ------------------------------


def _request_flush(state: CampaignPartition) -> None:
    """Write the last changes within a checkpoint interval even if no click comes: a
    flush record to the partition (table writes must happen on one of its events)."""

    def flush() -> None:
        state.flush_due = False
        if state.dirty and campaign_partitions.get(state.partition) is state:
            asyncio.ensure_future(
                stage_topics["campaign"].send(key=FLUSH, value=FLUSH, partition=state.partition)
            )

    asyncio.get_running_loop().call_later(CHECKPOINT_S, flush)


#: Every stage's decoded state of each partition this worker handles, loaded from its
#: table on first use: the heavy hitter and area stages' state per key is too big to
#: decode per click.
states = StageStates(
    adnet_rules(config, liverules.book),
    grid,
    config.lateness_ms,
    lambda stage, partition: (tables[stage], scan_partition(tables[stage], partition)),
    request_flush=_request_flush,
)
#: The campaign stage's, which the HTTP view of a campaign's top sources reads.
campaign_partitions = states.campaign
#: The heavy-hitter rule in force (its window is the HTTP view's).
heavy_rule = states.rules.heavy


def _rules_changed(record: RuleRecord) -> None:
    """A new version from the ``rules`` topic, applied between two events."""
    global heavy_rule
    states.set_rules(adnet_rules(config, liverules.book))
    heavy_rule = states.rules.heavy


for _rule in RULES:
    liverules.book.on_change(_rule, _rules_changed)


# -- agents ------------------------------------------------------------------------------


@app.on_partitions_revoked.connect
async def _forget_partitions(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    """A partition may come back after another worker changed its state: reload then."""
    states.clear()


#: Stacked ads and the rate limit, per click source.
check_sources = record_agent(stage_topics["source"], "source-checks", on_source)
#: Heavy hitters, per campaign.
check_campaigns = record_agent(stage_topics["campaign"], "campaign-checks", on_campaign)
#: Suspicious locations, per area.
check_areas = record_agent(stage_topics["area"], "area-checks", on_area)
