"""Faust wiring of the ad-network checks: stages, their tables, and the verdict.

A click's checks need its state keyed four ways, so it crosses partitioned stages,
each an agent on an internal topic keyed for its check (DESIGN.md "State"):

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
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Generic, TypeVar

import orjson
from faust.types import EventT

from fraudapp import liverules, metrics
from fraudapp.adnet.area import AreaCounts, AreaGrid, LocationRule
from fraudapp.adnet.blocklist import Blocklist, BlocklistError, load_blocklist
from fraudapp.adnet.envelope import Checked, verdict
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.heavy import CampaignHitters, HeavyHitterRule
from fraudapp.adnet.route import next_stage, stage_keys
from fraudapp.adnet.source import RATE_LIMIT, STACKED, SourceRule, source_of
from fraudapp.alerts import make_alert
from fraudapp.app import app, internal_topic, output_topic, settings
from fraudapp.badinput import BadInput
from fraudapp.clicks.models import Click
from fraudapp.globaltable import TopicGlobalTable, reference_table
from fraudapp.keyed import KeyedPartition
from fraudapp.outputs import guarded, send_alert, send_dead_letter, send_json
from fraudapp.partitioning import partition_for
from fraudapp.reference import tables_dir
from fraudapp.rulebook import RuleRecord
from fraudapp.tablescan import scan_partition

log = logging.getLogger(__name__)

BLOCKLIST = "ip_blocklist"
LOCATION = "suspicious_location"
HEAVY = "heavy_hitter"

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


def _table(name: str) -> Any:
    return app.Table(
        name,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options=settings.rocksdb.table_options(),
    )


source_table = _table("click-sources")
campaign_table = _table("campaign-hitters")
area_table = _table("area-counts")


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
    click = checked.click
    if click.lat is not None and click.lon is not None:
        checked.lat, checked.lon, checked.located_by = click.lat, click.lon, "click"
    elif click.ip:
        point = geoip.lookup(click.ip)
        if point is not None:
            checked.lat, checked.lon, checked.located_by = point.lat, point.lon, "geoip"


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

    faust assigns partition N of every topic with the same partition count (and of
    every table) to one worker. So when the next stage's key lives on the partition
    being processed (one time in ``partitions``), this worker owns it: the stage runs
    inline, saving a produce and a trip through faust's per-event consume path. Its
    table writes go to partition N, which is the key's home either way.
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
    if home == partition:
        await STAGES[stage](home, key, checked)
        return
    await stage_topics[stage].send(key=raw_key, value=checked.encode(), partition=home)


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
    click = checked.click
    alert = make_alert(
        rule=rule,
        rule_version=liverules.book[rule].version,
        key=key,
        event_time=click.timestamp,
        identity=(key, *identity),
        evidence={"session_id": click.session_id, "location": checked.location(), **evidence},
    )
    await send_alert(key, alert, checked.received)


# -- stage 2: source -------------------------------------------------------------------


async def on_source(event: EventT) -> None:
    message = event.message
    await source_stage(
        message.partition, message.key.decode("utf-8"), Checked.decode(message.value)
    )


async def source_stage(partition: int, key: str, checked: Checked) -> None:
    click = checked.click
    outcome = source_partitions[partition].process(click)
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
                make_alert(
                    rule=finding.rule,
                    rule_version=liverules.book[finding.rule].version,
                    key=source,
                    event_time=finding.event_time,
                    identity=(source, finding.click_id),
                    evidence={
                        **finding.evidence(),
                        # Where the click is the one at hand (not one it condemned late).
                        "location": checked.location()
                        if finding.click_id == click.click_id
                        else None,
                    },
                ),
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

SEP = "\x1f"


#: Seconds between writes of a changed sketch to the table (see CampaignPartition).
CHECKPOINT_S = 1.0


class CampaignPartition:
    """One partition's campaigns, decoded in memory, checkpointed bucket by bucket.

    A bucket's sketches serialise to up to ~12 KB each, too much to write to the
    changelog per click; changed buckets are written at most once per
    ``CHECKPOINT_S`` instead. A worker that dies loses at most that last second of
    counts (the check then under-counts, which can delay a finding, never invent one).
    Which sources were already alerted per bucket is written with them, so a
    partition that moves to another worker does not alert them again.
    """

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.campaigns: dict[str, CampaignHitters] = {}
        self.alerted: set[tuple[str, str, str, int]] = set()
        self.dirty: set[tuple[str, int]] = set()
        self.checkpointed = time.monotonic()
        self.flush_due = False
        for key, value in scan_partition(campaign_table, partition):
            campaign, bucket, *marks = key.decode("utf-8").split(SEP)
            if marks:
                self.alerted.update(
                    (campaign, kind, source, int(bucket)) for kind, source in orjson.loads(value)
                )
            else:
                self.hitters(campaign).load_bucket(int(bucket), value)

    def checkpoint(self, force: bool = False) -> None:
        """Write changed buckets; only from an event of this partition (faust writes
        a table's changelog to the current event's partition). When it is not yet
        time, a flush record is sent to the partition for then, so that the last
        changes are written even if no other click comes."""
        now = time.monotonic()
        if not self.dirty:
            return
        if not force and now - self.checkpointed < CHECKPOINT_S:
            if not self.flush_due:
                self.flush_due = True
                asyncio.get_running_loop().call_later(CHECKPOINT_S, self._request_flush)
            return
        self.checkpointed = now
        for campaign, bucket in self.dirty:
            hitters = self.campaigns.get(campaign)
            if hitters is not None and bucket in hitters.bucket_keys():
                campaign_table[f"{campaign}{SEP}{bucket}".encode()] = hitters.dump_bucket(bucket)
                marks = sorted(
                    [kind, source]
                    for c, kind, source, b in self.alerted
                    if c == campaign and b == bucket
                )
                if marks:
                    campaign_table[_marks_key(campaign, bucket)] = orjson.dumps(marks)
        self.dirty.clear()

    def _request_flush(self) -> None:
        self.flush_due = False
        if self.dirty and campaign_partitions.get(self.partition) is self:
            asyncio.ensure_future(
                stage_topics["campaign"].send(key=FLUSH, value=FLUSH, partition=self.partition)
            )

    def hitters(self, campaign: str) -> CampaignHitters:
        hitters = self.campaigns.get(campaign)
        if hitters is None:
            hitters = self.campaigns[campaign] = CampaignHitters(heavy_rule)
        return hitters


campaign_partitions = PerPartition(CampaignPartition)


def _marks_key(campaign: str, bucket: int) -> bytes:
    return f"{campaign}{SEP}{bucket}{SEP}alerted".encode()


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
    click = checked.click
    campaign = click.campaign_id or ""
    state = campaign_partitions[partition]
    hitters = state.hitters(campaign)
    sources = {k: v for k, v in {"ip": click.ip, "device": click.device_id}.items() if v}
    bucket = hitters.bucket_of(click.timestamp)
    if checked.repeat:
        # Counted when first read; its alerts may not have left, so they go again.
        findings = hitters.judge(click.timestamp, sources)
    else:
        findings = hitters.add(click.timestamp, sources)
        state.dirty.add((campaign, bucket))
    for finding in findings:
        fire(checked, HEAVY)
        # One alert per source per bucket: each of its clicks is marked in its verdict.
        mark = (campaign, finding.kind, finding.source, bucket)
        if mark in state.alerted and not checked.repeat:
            continue
        state.alerted.add(mark)
        state.dirty.add((campaign, bucket))
        await send_alert(
            campaign,
            make_alert(
                rule=HEAVY,
                rule_version=liverules.book[HEAVY].version,
                key=campaign,
                event_time=click.timestamp,
                identity=(campaign, finding.kind, finding.source, str(bucket)),
                evidence={
                    "campaign_id": campaign,
                    "click_id": click.click_id,
                    "location": checked.location(),
                    **finding.evidence(),
                },
            ),
            checked.received,
        )
    _expire_campaign(state, campaign, hitters, click.timestamp)
    state.checkpoint()
    await advance(checked, "campaign", partition)


def _expire_campaign(
    state: CampaignPartition, campaign: str, hitters: CampaignHitters, t: int
) -> None:
    latest = hitters.latest_time() or t
    horizon = latest - heavy_rule.window_ms - config.lateness_ms
    before = set(hitters.bucket_keys())
    if before and min(before) >= horizon:
        return
    left = hitters.expire(horizon)
    for bucket in before - set(hitters.bucket_keys()):
        campaign_table.pop(f"{campaign}{SEP}{bucket}".encode(), None)
        campaign_table.pop(_marks_key(campaign, bucket), None)
        state.dirty.discard((campaign, bucket))
    state.alerted = {mark for mark in state.alerted if mark[3] >= horizon}
    if not left:
        state.campaigns.pop(campaign, None)


# -- stage 4: area ---------------------------------------------------------------------


class AreaPartition:
    """One partition's regions: per region, the counts of the cells it can see."""

    def __init__(self, partition: int) -> None:
        self.regions: dict[str, AreaCounts] = {}
        self.watermark = 0
        self.next_sweep = 0
        for key, value in scan_partition(area_table, partition):
            region, cell = key.decode("utf-8").split(SEP, 1)
            self.counts(region).load_cell(cell, orjson.loads(value))

    def counts(self, region: str) -> AreaCounts:
        counts = self.regions.get(region)
        if counts is None:
            counts = self.regions[region] = AreaCounts(
                grid, window_ms=location_rule.window_ms, bucket_ms=location_rule.bucket_ms
            )
        return counts

    def too_late(self, t: int) -> bool:
        """Older buckets of its window may be expired already: it would see too few."""
        return t < self.watermark - config.lateness_ms

    def record(self, region: str, cell: str, t: int, fraud: bool) -> AreaCounts:
        counts = self.counts(region)
        counts.add(cell, t, fraud)
        _persist_cell(counts, region, cell)
        if t > self.watermark:
            self.watermark = t
        if self.watermark >= self.next_sweep:
            self.sweep()
        return counts

    def sweep(self) -> None:
        """Drop buckets that left every window; runs once per bucket of event time."""
        horizon = self.watermark - location_rule.window_ms - config.lateness_ms
        for region, counts in list(self.regions.items()):
            for cell in counts.expire(horizon):
                _persist_cell(counts, region, cell)
        self.next_sweep = self.watermark + location_rule.bucket_ms


def _persist_cell(counts: AreaCounts, region: str, cell: str) -> None:
    key = f"{region}{SEP}{cell}".encode()
    state = counts.cell_state(cell)
    if state is None:
        area_table.pop(key, None)
    else:
        area_table[key] = orjson.dumps(state)


area_partitions = PerPartition(AreaPartition)


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
    """A click of a neighbouring region, counted here (it is judged in its own)."""
    state = area_partitions[partition]
    if not state.too_late(t):
        state.record(region, cell, t, fraud)


async def area_stage(partition: int, region: str, checked: Checked) -> None:
    state = area_partitions[partition]
    click = checked.click
    assert checked.lat is not None and checked.lon is not None
    cell = grid.cell(checked.lat, checked.lon)
    fraud = bool(checked.reasons)
    t = click.timestamp
    if state.too_late(t):
        metrics.check_skipped_late("area")
        checked.skipped[LOCATION] = (
            f"later than {config.lateness_ms} ms behind the area stage's watermark"
        )
    else:
        # A repeat was counted when first read (its alert, if any, goes again).
        counts = state.counts(region) if checked.repeat else state.record(region, cell, t, fraud)
        clicks, frauds = counts.totals(cell, t)
        if location_rule.fires(clicks, frauds):
            fire(checked, LOCATION)
            await _alert(
                LOCATION,
                cell,
                checked,
                (click.click_id,),
                {
                    "click_id": click.click_id,
                    "lat": checked.lat,
                    "lon": checked.lon,
                    "located_by": checked.located_by,
                    "cell": cell,
                    "clicks_nearby": clicks,
                    "fraud_nearby": frauds,
                    "fraud_share": round(frauds / clicks, 4),
                    "threshold": location_rule.threshold,
                    "min_clicks": location_rule.min_clicks,
                    "radius_km": location_rule.radius_km,
                    "max_reach_km": round(grid.max_reach_km, 1),
                    "window_ms": location_rule.window_ms,
                },
            )
        contribution = orjson.dumps({"contribution": [cell, t, fraud]})
        for other in [] if checked.repeat else grid.regions_reached(cell):
            if other == region:
                continue
            raw = other.encode("utf-8")
            home = partition_for(raw, settings.partitions)
            if home == partition:
                contribute(home, other, cell, t, fraud)
            else:
                await stage_topics["area"].send(key=raw, value=contribution, partition=home)
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


@app.agent(stage_topics["source"], name="source-checks")
async def check_sources(stream: Any) -> None:
    """Stacked ads and the rate limit, per click source."""
    async for event in stream.events():
        await guarded(event, on_source)


@app.agent(stage_topics["campaign"], name="campaign-checks")
async def check_campaigns(stream: Any) -> None:
    """Heavy hitters, per campaign."""
    async for event in stream.events():
        await guarded(event, on_campaign)


@app.agent(stage_topics["area"], name="area-checks")
async def check_areas(stream: Any) -> None:
    """Suspicious locations, per area."""
    async for event in stream.events():
        await guarded(event, on_area)
