"""Faust wiring of the ad-network checks: stages, their tables, and the verdict.

A click's checks need its state keyed four ways, so it crosses partitioned stages,
each an agent on an internal topic keyed for its check (README, "Ad-network checks"):

1. **session** (``fraudapp.clicks.agents``): click bursts; then here, statelessly,
   the IP blocklist and the click's location (its lat/lon, else geo-IP);
2. **source** (device, else IP): stacked ads and the rate limit;
3. **campaign**: heavy hitters (top-K sources, bounded-memory sketches);
4. **area** (coarse H3 region): the share of fraud within a radius.

Each stage sends its alerts at once and hands the click on; the last stage the
click visits writes its verdict with every check that fired. All state is in
changelogged RocksDB tables, so it recovers and moves with partitions; the heavy
hitter and area stages also keep a decoded copy in memory per partition, because
their state per key is too big to decode per click.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Generic, TypeVar

import orjson
from faust.types import EventT

from fraudapp.adnet.alerting import (
    HEAVY,
    LOCATION,
    check_alert,
    heavy_alert,
    location_alert,
    source_alert,
)
from fraudapp.adnet.area import AreaGrid, LocationRule
from fraudapp.adnet.blocklist import Blocklist, BlocklistError, load_blocklist
from fraudapp.adnet.envelope import Checked, place, verdict
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.heavy import HeavyHitterRule
from fraudapp.adnet.route import next_stage, stage_keys
from fraudapp.adnet.source import RATE_LIMIT, STACKED, SourceRule, source_of
from fraudapp.adnet.stages import CHECKPOINT_S, AreaPartition, CampaignPartition
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
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import RuleRecord
from fraudapp.engine.globaltable import TopicGlobalTable, reference_table
from fraudapp.engine.tablescan import scan_partition
from fraudapp.live import liverules, livewatermarks, metrics
from fraudapp.live.outputs import send_alert
from fraudapp.live.recordagent import record_agent
from fraudapp.live.send import raised_by, send_dead_letter, send_json

log = logging.getLogger(__name__)

BLOCKLIST = "ip_blocklist"

config = settings.adnet
topics = settings.topics
verdicts_topic = output_topic(topics.click_verdicts)

source_rule = SourceRule(
    stacked_enabled=config.stacked_enabled,
    stacked_threshold=config.stacked_threshold,
    stacked_window_ms=config.stacked_window_ms,
    stacked_min_ads=config.stacked_min_ads,
    rate_enabled=config.rate_enabled,
    per_minute=config.rate_per_minute,
    burst=config.rate_burst,
    lateness_ms=config.lateness_ms,
)
heavy_rule = HeavyHitterRule(
    window_ms=config.heavy_window_ms,
    bucket_ms=config.heavy_bucket_ms,
    lg_max_map_size=config.heavy_lg_map_size,
    share_threshold=config.heavy_threshold,
    min_clicks=config.heavy_min_clicks,
)
location_rule = LocationRule(
    radius_km=config.location_radius_km,
    window_ms=config.location_window_ms,
    bucket_ms=config.location_bucket_ms,
    threshold=config.location_threshold,
    min_clicks=config.location_min_clicks,
)
grid = AreaGrid(radius_km=config.location_radius_km)
geoip = load_geoip(tables_dir() / "geoip.csv")

ENABLED = {
    "source": config.stacked_enabled or config.rate_enabled,
    "campaign": config.heavy_enabled,
    "area": config.location_enabled,
}


def _area_key(checked: Checked) -> str | None:
    if checked.lat is None or checked.lon is None:
        return None
    return grid.region(grid.cell(checked.lat, checked.lon))


KEYS = stage_keys(_area_key)


stage_topics = {stage: internal_topic(topics.stage(stage)) for stage in ENABLED}
stage_names = {stage: topic.get_topic_name() for stage, topic in stage_topics.items()}
area_topic = stage_names["area"]


source_table = state_table("click-sources")
campaign_table = state_table("campaign-hitters")
area_table = state_table("area-counts")


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
        built = load_blocklist(
            tables_dir() / "blocklist",
            expected_ips=config.blocklist_expected_ips,
            fp_rate=config.blocklist_fp_rate,
        )
        for partition in range(settings.partitions):
            for key, value in scan_partition(blocklist_updates, partition):
                _apply_blocklist_record(built, key, value, None)
        _blocklist = built
        log.info("IP blocklist ready: %s", built)
    return _blocklist


def locate(checked: Checked) -> None:
    """The click's own coordinates, else its IP's from the geo-IP table."""
    place(checked, geoip)


def location_of(click: Click) -> dict[str, Any] | None:
    """Where a click was ({lat, lon, by}), for alerts raised before its checks."""
    where = Checked(click)
    locate(where)
    return where.location()


def fire(checked: Checked, rule: str) -> None:
    """A check fired: a reason in the verdict, unless its rule is paused or in shadow."""
    if liverules.counts(rule):
        checked.fired(rule)


async def begin(click: Click, reasons: list[str], partition: int, repeat: bool = False) -> None:
    """After the session stage (on ``partition``): screen the IP, place the click,
    hand it on. A ``repeat`` (the same record again) goes the same way; the stages
    re-send their alerts for it (same ids) without counting it again."""
    checked = Checked(click, list(reasons), received=metrics.received_at.get(), repeat=repeat)
    locate(checked)
    if config.blocklist_enabled and click.ip:
        match = blocklist().match(click.ip)
        if match is not None:
            fire(checked, BLOCKLIST)
            await _alert(
                BLOCKLIST,
                click.ip,
                checked,
                (click.click_id,),
                {"click_id": click.click_id, "ip": click.ip, **match.evidence()},
            )
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
        await STAGES[stage](home, key, checked)


async def send_duplicate_verdict(click: Click, reasons: list[str]) -> None:
    """A redelivered click: its verdict again, marked, without counting it twice."""
    checked = Checked(click, list(reasons))
    await send_json(
        verdicts_topic, click.session_id, verdict(checked, config.weights, duplicate=True)
    )
    metrics.verdict_sent(bool(reasons))


async def _alert(
    rule: str, key: str, checked: Checked, identity: tuple[str, ...], evidence: dict[str, Any]
) -> None:
    alert = check_alert(rule, liverules.book[rule].version, key, checked, identity, evidence)
    await send_alert(key, alert, checked.received)


def _raised_by(checked: Checked) -> None:
    """Alerts of a later stage name the click's own record, not the stage topic's."""
    if checked.click.origin:
        raised_by.set({"topic": topics.clicks, "at": checked.click.origin})


# -- stage 2: source -------------------------------------------------------------------


async def on_source(event: EventT) -> None:
    message = event.message
    await source_stage(
        message.partition, message.key.decode("utf-8"), Checked.decode(message.value)
    )


async def source_stage(partition: int, key: str, checked: Checked) -> None:
    _raised_by(checked)
    click = checked.click
    watermark = livewatermarks.level(livewatermarks.CLICKS, "source")
    outcome = source_partitions[partition].process(click, watermark, None)
    if outcome.result is None:
        why = f"later than {source_rule.lateness_ms} ms behind the source stage's watermark"
        metrics.check_skipped_late("source")
        for rule, on in ((STACKED, config.stacked_enabled), (RATE_LIMIT, config.rate_enabled)):
            if on:
                checked.skipped[rule] = why
    else:
        result = outcome.result
        source = source_of(click) or ""
        for finding in result.findings:
            await send_alert(
                source,
                source_alert(finding, source, liverules.book[finding.rule].version, checked),
                checked.received,
            )
        if result.replay:
            # Read again after a crash: the stages after this one counted it already
            # (or lose it: under-counting is their one-sided error), never twice.
            checked.repeat = True
        if result.stacked:
            fire(checked, STACKED)
        if result.over_limit:
            fire(checked, RATE_LIMIT)
    await advance(checked, "source", partition)


# -- stages 3 and 4 keep decoded state per partition --------------------------------------

P = TypeVar("P")


class PerPartition(dict[int, P], Generic[P]):
    """This worker's state of each partition, loaded from its table on first use and
    dropped on revocation (another worker may change it meanwhile)."""

    def __init__(self, load: Callable[[int], P]) -> None:
        super().__init__()
        self.load = load

    def __missing__(self, partition: int) -> P:
        state = self[partition] = self.load(partition)
        return state


source_partitions = PerPartition(
    lambda partition: KeyedPartition(
        source_rule, source_table, scan_partition(source_table, partition)
    )
)


# -- stage 3: campaign -----------------------------------------------------------------


def _campaign_partition(partition: int) -> CampaignPartition:
    return CampaignPartition(
        partition,
        campaign_table,
        lambda: heavy_rule,
        config.lateness_ms,
        scan_partition(campaign_table, partition),
        request_flush=_request_flush,
    )


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


campaign_partitions = PerPartition(_campaign_partition)


#: Key and value of the record that asks a campaign partition to write its sketches.
FLUSH = b"\x00flush"


async def on_campaign(event: EventT) -> None:
    message = event.message
    if message.value == FLUSH:
        campaign_partitions[message.partition].checkpoint(force=True)
        return
    await campaign_stage(
        message.partition, message.key.decode("utf-8"), Checked.decode(message.value)
    )


async def campaign_stage(partition: int, key: str, checked: Checked) -> None:
    _raised_by(checked)
    click = checked.click
    campaign = click.campaign_id or ""
    state = campaign_partitions[partition]
    watermark = livewatermarks.level(livewatermarks.CLICKS, "campaign")
    if state.too_late(click.timestamp, watermark):
        metrics.check_skipped_late("campaign")
        checked.skipped[HEAVY] = (
            f"later than {config.lateness_ms} ms behind the campaign stage's watermark"
        )
        await advance(checked, "campaign", partition)
        return
    sources = {k: v for k, v in {"ip": click.ip, "device": click.device_id}.items() if v}
    findings, to_alert = state.observe(
        campaign, click.timestamp, sources, checked.repeat, watermark
    )
    if findings:
        # Each click of a heavy source is marked in its verdict; alerted once a bucket.
        fire(checked, HEAVY)
    for finding, bucket in to_alert:
        await send_alert(
            campaign,
            heavy_alert(finding, campaign, bucket, checked, liverules.book[HEAVY].version),
            checked.received,
        )
    state.checkpoint()
    await advance(checked, "campaign", partition)


# -- stage 4: area ---------------------------------------------------------------------


area_partitions = PerPartition(
    lambda partition: AreaPartition(
        area_table,
        grid,
        lambda: location_rule,
        config.lateness_ms,
        scan_partition(area_table, partition),
    )
)


async def on_area(event: EventT) -> None:
    message = event.message
    data = orjson.loads(message.value)
    region = message.key.decode("utf-8")
    if "contribution" in data:
        cell, t, fraud = data["contribution"]
        contribute(message.partition, region, cell, t, fraud)
        return
    await area_stage(message.partition, region, Checked.from_dict(data))


def contribute(partition: int, region: str, cell: str, t: int, fraud: bool) -> None:
    """A neighbouring region's click, counted here; judged by the area's watermark."""
    watermark = livewatermarks.level(livewatermarks.CLICKS, "area")
    if not area_partitions[partition].contribute(region, cell, t, fraud, watermark):
        metrics.check_skipped_late("area-count")


async def area_stage(partition: int, region: str, checked: Checked) -> None:
    _raised_by(checked)
    state = area_partitions[partition]
    click = checked.click
    assert checked.lat is not None and checked.lon is not None
    cell = grid.cell(checked.lat, checked.lon)
    fraud = bool(checked.reasons)
    t = click.timestamp
    watermark = livewatermarks.level(livewatermarks.CLICKS, "area")
    if state.too_late(t, watermark):
        metrics.check_skipped_late("area")
        checked.skipped[LOCATION] = (
            f"later than {config.lateness_ms} ms behind the area stage's watermark"
        )
    else:
        # A repeat was counted when first read (its alert, if any, goes again).
        counts = (
            state.counts(region)
            if checked.repeat
            else state.record(region, cell, t, fraud, watermark)
        )
        clicks, frauds = counts.totals(cell, t)
        if location_rule.fires(clicks, frauds):
            fire(checked, LOCATION)
            alert = location_alert(
                checked,
                cell,
                clicks,
                frauds,
                location_rule,
                grid,
                liverules.book[LOCATION].version,
            )
            await send_alert(cell, alert, checked.received)
        contribution = orjson.dumps({"contribution": [cell, t, fraud]})
        for other in [] if checked.repeat else grid.regions_reached(cell):
            if other == region:
                continue
            raw = other.encode("utf-8")
            home = partition_for(raw, settings.partitions)
            inline = owned.inline(area_topic, home, partition)
            if inline is None:
                await outbox.send(area_topic, raw, contribution, partition=home)
                continue
            with inline:
                contribute(home, other, cell, t, fraud)
    await advance(checked, "area", partition)


STAGES = {"source": source_stage, "campaign": campaign_stage, "area": area_stage}


# -- new versions of the rules from the ``rules`` topic, applied between two events ------


def _source_changed(record: RuleRecord) -> None:
    global source_rule
    params = record.params
    if record.rule == STACKED:
        source_rule = replace(
            source_rule,
            stacked_threshold=params["threshold"],
            stacked_window_ms=params["window_ms"],
            stacked_min_ads=params["min_ads"],
        )
    else:
        source_rule = replace(source_rule, per_minute=params["per_minute"], burst=params["burst"])
    for partition in source_partitions.values():
        partition.set_rule(source_rule)


def _heavy_changed(record: RuleRecord) -> None:
    global heavy_rule
    params = record.params
    heavy_rule = replace(
        heavy_rule, share_threshold=params["share_threshold"], min_clicks=params["min_clicks"]
    )
    for partition in campaign_partitions.values():
        for hitters in partition.campaigns.values():
            hitters.rule = heavy_rule


def _location_changed(record: RuleRecord) -> None:
    global location_rule
    params = record.params
    location_rule = replace(
        location_rule, threshold=params["threshold"], min_clicks=params["min_clicks"]
    )


def _rules_from_book() -> None:
    """The parameters in force at start (``tables/rules.json`` and the environment)."""
    for name, changed in (
        (STACKED, _source_changed),
        (RATE_LIMIT, _source_changed),
        (HEAVY, _heavy_changed),
        (LOCATION, _location_changed),
    ):
        changed(liverules.book[name])
        liverules.book.on_change(name, changed)


_rules_from_book()


# -- agents ------------------------------------------------------------------------------


@app.on_partitions_revoked.connect
async def _forget_partitions(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    """A partition may come back after another worker changed its state: reload then."""
    source_partitions.clear()
    campaign_partitions.clear()
    area_partitions.clear()


#: Stacked ads and the rate limit, per click source.
check_sources = record_agent(stage_topics["source"], "source-checks", on_source)
#: Heavy hitters, per campaign.
check_campaigns = record_agent(stage_topics["campaign"], "campaign-checks", on_campaign)
#: Suspicious locations, per area.
check_areas = record_agent(stage_topics["area"], "area-checks", on_area)
