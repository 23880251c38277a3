"""The ad-network stages' bodies, once, for the live stream and for replay.

A click's checks after its session stage run in three partitioned stages (docs/rules.md,
"Ad-network checks"), and the live worker and ``fraudapp replay`` must judge a click
alike, or a backtest says nothing about what the stream would do. So each stage's
body is a function here of the partition's state, the click and what it is judged by
(the rule book in force, the stage's watermark); it returns a :class:`StageResult`:
the alerts to raise, the counts to hand to neighbouring area regions, and what to
change in the click's verdict. Who calls it decides what a result becomes: the faust
agents (:mod:`fraudapp.adnet.agents`) await the sends and hand the click on through
the stage topics; replay (:mod:`fraudapp.replay`) collects the alerts and calls the
next stage at once. Pure: no faust, Kafka or asyncio.

State per partition, in its store (a changelogged RocksDB table live, a dict in
replay and tests), rebuilt from that store after a restart or rebalance::

    source    KeyedPartition over SourceRule   source -> recent clicks + GCRA
                                               (layout: fraudapp.adnet.source)
    campaign  CampaignPartition                campaign, bucket -> sketches;
                                               campaign, bucket, "alerted" -> marks
    area      AreaPartition                    region, cell -> bucketed counts
                                               (layout: fraudapp.adnet.stages)

The rules the three keep are built from the rule book (:func:`adnet_rules`): live
again at each new version from the ``rules`` topic, replay once from its rule set.
Each alert is graded (its ``severity``) against the parameters of the version in
force when it is raised, read from the book as its version is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from fraudapp.adnet.alerting import (
    HEAVY,
    LOCATION,
    blocklist_severity,
    check_alert,
    heavy_alert,
    location_alert,
    source_alert,
)
from fraudapp.adnet.area import AreaGrid, LocationRule
from fraudapp.adnet.blocklist import Blocklist, load_blocklist
from fraudapp.adnet.envelope import Checked, place, verdict
from fraudapp.adnet.geoip import GeoIpTable
from fraudapp.adnet.heavy import HeavyHitterRule
from fraudapp.adnet.route import KeyOf
from fraudapp.adnet.source import RATE_LIMIT, STACKED, SourceRule, SourceStep, source_of
from fraudapp.adnet.stages import AreaPartition, CampaignPartition, Store
from fraudapp.clicks.models import Click
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.rulebook import RuleRecord
from fraudapp.core.settings import AdnetSettings

BLOCKLIST = "ip_blocklist"
#: The rules whose parameters the stages' rules are built from (:func:`adnet_rules`).
RULES = (STACKED, RATE_LIMIT, HEAVY, LOCATION)

SourcePartition = KeyedPartition[Click, SourceStep]


class Records(Protocol):
    """The versions of the rules in force, by name (a :class:`RuleBook`, or a plain
    mapping where nothing changes them)."""

    def __getitem__(self, name: str) -> RuleRecord: ...


class Book(Records, Protocol):
    """What a stage asks of the rule book: a rule's version in force (its alerts carry
    it) and whether its findings count as verdict reasons (live and enabled)."""

    def counts(self, rule: str) -> bool: ...


# -- the rules in force ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdnetRules:
    """The three stateful checks' rules: the settings' fixed parts (windows, sketch size,
    which checks are on) with the parameters of the versions in force."""

    source: SourceRule
    heavy: HeavyHitterRule
    location: LocationRule


def adnet_rules(config: AdnetSettings, book: Records) -> AdnetRules:
    """The rules as the settings and the book's current versions make them."""
    stacked, rate = book[STACKED].params, book[RATE_LIMIT].params
    heavy, location = book[HEAVY].params, book[LOCATION].params
    return AdnetRules(
        source=SourceRule(
            stacked_enabled=config.stacked_enabled,
            stacked_threshold=stacked["threshold"],
            stacked_window_ms=stacked["window_ms"],
            stacked_min_ads=stacked["min_ads"],
            rate_enabled=config.rate_enabled,
            per_minute=rate["per_minute"],
            burst=rate["burst"],
            lateness_ms=config.lateness_ms,
        ),
        heavy=HeavyHitterRule(
            window_ms=config.heavy_window_ms,
            bucket_ms=config.heavy_bucket_ms,
            lg_max_map_size=config.heavy_lg_map_size,
            share_threshold=heavy["share_threshold"],
            min_clicks=heavy["min_clicks"],
        ),
        location=LocationRule(
            radius_km=config.location_radius_km,
            window_ms=config.location_window_ms,
            bucket_ms=config.location_bucket_ms,
            threshold=location["threshold"],
            min_clicks=location["min_clicks"],
        ),
    )


def enabled_stages(config: AdnetSettings) -> dict[str, bool]:
    """Which stages run: a stage whose checks are all off is skipped by every click."""
    return {
        "source": config.stacked_enabled or config.rate_enabled,
        "campaign": config.heavy_enabled,
        "area": config.location_enabled,
    }


def area_key(grid: AreaGrid) -> KeyOf:
    """The area stage's key of a click: the region of its cell (None: not located)."""

    def key(checked: Checked) -> str | None:
        if checked.lat is None or checked.lon is None:
            return None
        return grid.region(grid.cell(checked.lat, checked.lon))

    return key


def shipped_blocklist(config: AdnetSettings, tables: Path) -> Blocklist:
    """The files in ``tables/blocklist`` (live adds the ``ip-blocklist`` topic's changes)."""
    return load_blocklist(
        tables / "blocklist",
        expected_ips=config.blocklist_expected_ips,
        fp_rate=config.blocklist_fp_rate,
    )


# -- what a stage made of a click --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    """A click counted in a neighbouring ``region`` too (its cell's ring reaches there),
    so that region's clicks see it; judged in its own region only."""

    region: str
    cell: str
    t: int
    fraud: bool


@dataclass(slots=True)
class StageResult:
    """One stage's outputs for one click. The alerts and contributions are what the
    caller sends (live) or collects (replay); the rest changes the click's verdict,
    through :meth:`apply`, before the next stage sees the click."""

    #: Alerts to raise, each with the key it is sent under.
    alerts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Counts for neighbouring area regions (the area stage only).
    contributions: list[Contribution] = field(default_factory=list)
    #: Rules that fired and count: reasons in the verdict (paused or shadow rules
    #: raise their alerts, routed by the book, but condemn nothing).
    fired: list[str] = field(default_factory=list)
    #: Checks not applied to the click, with why.
    skipped: dict[str, str] = field(default_factory=dict)
    #: The click was read again from the same record (after a crash): the stages after
    #: this one counted it already, so they must not count it again.
    repeat: bool = False
    #: Too late for the stage's window (live counts these in a metric).
    late: bool = False

    def fire(self, rule: str, book: Book) -> None:
        if book.counts(rule) and rule not in self.fired:
            self.fired.append(rule)

    def apply(self, checked: Checked) -> None:
        """The verdict changes, into the click's envelope."""
        for rule in self.fired:
            checked.fired(rule)
        checked.skipped.update(self.skipped)
        if self.repeat:
            checked.repeat = True


def refused(stage: str, lateness_ms: int, *rules: str) -> StageResult:
    """A click the stage refused: each of its checks skipped, saying why."""
    why = f"later than {lateness_ms} ms behind the {stage} stage's watermark"
    return StageResult(skipped=dict.fromkeys(rules, why), late=True)


# -- the session stage's part: the click enters, the blocklist ---------------------------


def enter(
    click: Click,
    reasons: Iterable[str],
    geoip: GeoIpTable,
    *,
    received: float | None = None,
    repeat: bool = False,
) -> Checked:
    """The click's envelope after its session stage (``reasons``: what fired there),
    placed: its own coordinates, else its IP's."""
    checked = Checked(click, list(reasons), received=received, repeat=repeat)
    place(checked, geoip)
    return checked


def blocklist_check(checked: Checked, blocklist: Blocklist | None, book: Book) -> StageResult:
    """The click's IP against the blocklist (None: the check is off)."""
    result = StageResult()
    click = checked.click
    if blocklist is None or not click.ip:
        return result
    match = blocklist.match(click.ip)
    if match is not None:
        result.fire(BLOCKLIST, book)
        record = book[BLOCKLIST]
        evidence = {"click_id": click.click_id, "ip": click.ip, **match.evidence()}
        alert = check_alert(
            BLOCKLIST,
            record.version,
            click.ip,
            checked,
            (click.click_id,),
            evidence,
            blocklist_severity(match, record.severity),
        )
        result.alerts.append((click.ip, alert))
    return result


# -- the stages after it -------------------------------------------------------------------


def source_stage(
    state: SourcePartition, key: str, checked: Checked, book: Book, watermark: int | None
) -> StageResult:
    """Stacked ads and the rate limit, on the partition of the click's source (``key``).

    A late click condemns nothing; one read again after a crash re-sends what it found
    the first time and is marked a repeat for the stages after."""
    rule = cast(SourceRule, state.rule)
    click = checked.click
    outcome = state.process(click, watermark, None)
    if outcome.result is None:
        checks = {STACKED: rule.stacked_enabled, RATE_LIMIT: rule.rate_enabled}
        return refused("source", rule.lateness_ms, *(name for name, on in checks.items() if on))
    step = outcome.result
    result = StageResult(repeat=step.replay)
    source = source_of(click) or ""
    for finding in step.findings:
        record = book[finding.rule]
        alert = source_alert(finding, source, record.version, checked, record.params)
        result.alerts.append((source, alert))
    if step.stacked:
        result.fire(STACKED, book)
    if step.over_limit:
        result.fire(RATE_LIMIT, book)
    return result


def campaign_stage(
    state: CampaignPartition, key: str, checked: Checked, book: Book, watermark: int | None
) -> StageResult:
    """Heavy hitters, on the campaign's partition: each click of a heavy source is
    marked in its verdict; the source is alerted once per bucket (again for a repeat,
    whose alerts may not have left the first time)."""
    click = checked.click
    if state.too_late(click.timestamp, watermark):
        return refused("campaign", state.lateness_ms, HEAVY)
    campaign = click.campaign_id or ""
    sources = {k: v for k, v in {"ip": click.ip, "device": click.device_id}.items() if v}
    findings, to_alert = state.observe(
        campaign, click.timestamp, sources, checked.repeat, watermark
    )
    result = StageResult()
    if findings:
        result.fire(HEAVY, book)
    record = book[HEAVY]
    for finding, bucket in to_alert:
        alert = heavy_alert(finding, campaign, bucket, checked, record.version, record.params)
        result.alerts.append((campaign, alert))
    return result


def area_stage(
    state: AreaPartition, region: str, checked: Checked, book: Book, watermark: int | None
) -> StageResult:
    """The share of fraud around the click, on its ``region``'s partition. The click
    counts as fraud when an earlier stage condemned it; it is counted in its region
    here and handed to the other regions its cell's ring reaches. A repeat was counted
    when first read: it is judged again (its alert goes again) and counted nowhere."""
    assert checked.lat is not None and checked.lon is not None
    t = checked.click.timestamp
    if state.too_late(t, watermark):
        return refused("area", state.lateness_ms, LOCATION)
    grid, rule = state.grid, state.rule()
    cell = grid.cell(checked.lat, checked.lon)
    fraud = bool(checked.reasons)
    if checked.repeat:
        counts = state.counts(region)
    else:
        counts = state.record(region, cell, t, fraud, watermark)
    clicks, frauds = counts.totals(cell, t)
    result = StageResult()
    if rule.fires(clicks, frauds):
        result.fire(LOCATION, book)
        record = book[LOCATION]
        alert = location_alert(
            checked, cell, clicks, frauds, rule, grid, record.version, record.params
        )
        result.alerts.append((cell, alert))
    if not checked.repeat:
        result.contributions.extend(
            Contribution(other, cell, t, fraud)
            for other in sorted(grid.regions_reached(cell))
            if other != region
        )
    return result


def contribute(state: AreaPartition, contribution: Contribution, watermark: int | None) -> bool:
    """A neighbouring region's click, counted on this region's partition; False if it
    came too late to count (judged by the area stage's watermark)."""
    c = contribution
    return state.contribute(c.region, c.cell, c.t, c.fraud, watermark)


#: Each stage's body, by the name :mod:`fraudapp.adnet.route` gives it.
STAGES: dict[str, Callable[[Any, str, Checked, Book, int | None], StageResult]] = {
    "source": source_stage,
    "campaign": campaign_stage,
    "area": area_stage,
}


# -- the stages' state of each partition ---------------------------------------------------

P = TypeVar("P")


class PerPartition(dict[int, P], Generic[P]):
    """One stage's state of each partition, loaded from its store on first use (live:
    dropped on revocation, as another worker may change it meanwhile)."""

    def __init__(self, load: Callable[[int], P]) -> None:
        super().__init__()
        self.load = load

    def __missing__(self, partition: int) -> P:
        state = self[partition] = self.load(partition)
        return state


#: A stage's store of a partition and what it already holds (key, value pairs).
Stores = Callable[[str, int], tuple[Store, Iterable[tuple[bytes, bytes]]]]


class StageStates:
    """The three stages' state of each partition, and the rules they keep.

    ``stores`` gives a stage's store of a partition with its recovered contents (live:
    the worker's table and a scan of its partition; replay: an empty dict).
    ``request_flush`` is the campaign stage's (:class:`CampaignPartition`)."""

    def __init__(
        self,
        rules: AdnetRules,
        grid: AreaGrid,
        lateness_ms: int,
        stores: Stores,
        request_flush: Callable[[CampaignPartition], None] | None = None,
    ) -> None:
        self.rules = rules
        self.grid = grid
        self.lateness_ms = lateness_ms
        self.stores = stores
        self.request_flush = request_flush
        self.source: PerPartition[SourcePartition] = PerPartition(self._load_source)
        self.campaign: PerPartition[CampaignPartition] = PerPartition(self._load_campaign)
        self.area: PerPartition[AreaPartition] = PerPartition(self._load_area)
        self.by_stage: dict[str, PerPartition[Any]] = {
            "source": self.source,
            "campaign": self.campaign,
            "area": self.area,
        }

    def _load_source(self, partition: int) -> SourcePartition:
        store, seed = self.stores("source", partition)
        return KeyedPartition(self.rules.source, store, seed)

    def _load_campaign(self, partition: int) -> CampaignPartition:
        store, seed = self.stores("campaign", partition)
        return CampaignPartition(
            partition,
            store,
            lambda: self.rules.heavy,
            self.lateness_ms,
            seed,
            request_flush=self.request_flush,
        )

    def _load_area(self, partition: int) -> AreaPartition:
        store, seed = self.stores("area", partition)
        return AreaPartition(store, self.grid, lambda: self.rules.location, self.lateness_ms, seed)

    def set_rules(self, rules: AdnetRules) -> None:
        """New versions in force from the next click on; state is kept as it is (the
        area stage reads its rule at each click)."""
        self.rules = rules
        for source in self.source.values():
            source.set_rule(rules.source)
        for campaign in self.campaign.values():
            campaign.set_rule(rules.heavy)

    def run(
        self,
        stage: str,
        partition: int,
        key: str,
        checked: Checked,
        book: Book,
        watermark: int | None,
    ) -> StageResult:
        """``stage``'s body over its state of ``partition``."""
        return STAGES[stage](self.by_stage[stage][partition], key, checked, book, watermark)

    def contribute(self, partition: int, contribution: Contribution, watermark: int | None) -> bool:
        """See :func:`contribute`."""
        return contribute(self.area[partition], contribution, watermark)

    def clear(self) -> None:
        """Forget every partition (each is loaded again from its store on next use)."""
        for partitions in self.by_stage.values():
            partitions.clear()


# -- the verdict ---------------------------------------------------------------------------


def duplicate_verdict(click: Click, reasons: list[str], config: AdnetSettings) -> dict[str, Any]:
    """A producer's second copy of a click: its verdict again, marked, and counted
    nowhere (the later stages never see it, so it is neither placed nor screened)."""
    return verdict(Checked(click, list(reasons)), config.weights, duplicate=True)
