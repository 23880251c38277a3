"""Backtests: the live detectors run over recorded events, in one process.

A fraud team wants to know what a rule change would have done before it makes it.
:class:`Backtest` runs the very code the workers run (the same decoders, rules,
per-partition state classes and alert builders; only the stores are dicts and the
hops between stages are function calls) over clicks and ATM transactions in file
order, as fast as one core goes, and collects the alerts each rule would have
raised under a given set of rule versions. Keys are placed on the partitions the
live stream would use, so lateness and expiry behave alike; the input is one stream
read in order, so every stage's watermark is its newest event time (per domain: clicks
and transactions keep their own), and each event is judged late against the newest
before it, as a live source partition's records are. Pure: no faust, no broker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudapp.adnet.alerting import (
    HEAVY,
    LOCATION,
    check_alert,
    heavy_alert,
    location_alert,
    source_alert,
)
from fraudapp.adnet.area import AreaGrid, LocationRule
from fraudapp.adnet.blocklist import Blocklist, load_blocklist
from fraudapp.adnet.envelope import Checked, place
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.heavy import HeavyHitterRule
from fraudapp.adnet.route import next_stage, stage_keys
from fraudapp.adnet.source import RATE_LIMIT, STACKED, SourceRule, source_of
from fraudapp.adnet.stages import AreaPartition, CampaignPartition
from fraudapp.atm.detect import RULE_NAME as ATM
from fraudapp.atm.detect import TravelRule, customer_evidence, travel_alert
from fraudapp.atm.models import decode_txn
from fraudapp.clicks.detect import RULE_NAME as BURST
from fraudapp.clicks.detect import BurstRule, burst_alert
from fraudapp.clicks.models import decode_click
from fraudapp.core.badinput import BadInput
from fraudapp.core.eventtime import StreamTime
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.rulebook import RuleBook, RuleRecord
from fraudapp.core.settings import Settings

BLOCKLIST = "ip_blocklist"


@dataclass
class Outcome:
    """What a backtest produced: alerts per mode, refused records per reason, and per
    input line the ids of what it was about (for labels)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    shadow: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    clicks: int = 0
    txns: int = 0
    #: ``is_fraud`` of each labelled event, by kind (clicks, atm) and id.
    labels: dict[str, dict[str, bool]] = field(default_factory=lambda: {"clicks": {}, "atm": {}})


def kind_of(obj: Mapping[str, Any]) -> str:
    """``atm`` for a transaction (it has an account), else ``clicks``."""
    return "atm" if "account_id" in obj or "transaction_id" in obj else "clicks"


class Backtest:
    """The worker's checks over events handed in one by one (:meth:`event`)."""

    def __init__(
        self,
        rules: Mapping[str, RuleRecord],
        settings: Settings,
        tables: Path,
        customers: Callable[[str], dict[str, Any] | None] = lambda account: None,
    ) -> None:
        self.book = RuleBook(rules)
        self.settings = settings
        self.tables = tables
        self.customers = customers
        self.partitions = settings.partitions
        adnet = settings.adnet
        self.adnet = adnet
        p = {name: record.params for name, record in rules.items()}
        self.burst = BurstRule(
            threshold=p[BURST]["threshold"],
            window_ms=p[BURST]["window_ms"],
            lateness_ms=p[BURST]["lateness_ms"],
            version=rules[BURST].version,
        )
        self.travel = TravelRule(
            window_ms=p[ATM]["window_ms"],
            lateness_ms=p[ATM]["lateness_ms"],
            version=rules[ATM].version,
        )
        self.source_rule = SourceRule(
            stacked_enabled=adnet.stacked_enabled,
            stacked_threshold=p[STACKED]["threshold"],
            stacked_window_ms=p[STACKED]["window_ms"],
            stacked_min_ads=p[STACKED]["min_ads"],
            rate_enabled=adnet.rate_enabled,
            per_minute=p[RATE_LIMIT]["per_minute"],
            burst=p[RATE_LIMIT]["burst"],
            lateness_ms=adnet.lateness_ms,
        )
        self.heavy_rule = HeavyHitterRule(
            window_ms=adnet.heavy_window_ms,
            bucket_ms=adnet.heavy_bucket_ms,
            lg_max_map_size=adnet.heavy_lg_map_size,
            share_threshold=p[HEAVY]["share_threshold"],
            min_clicks=p[HEAVY]["min_clicks"],
        )
        self.location_rule = LocationRule(
            radius_km=adnet.location_radius_km,
            window_ms=adnet.location_window_ms,
            bucket_ms=adnet.location_bucket_ms,
            threshold=p[LOCATION]["threshold"],
            min_clicks=p[LOCATION]["min_clicks"],
        )
        self.grid = AreaGrid(radius_km=adnet.location_radius_km)
        self.geoip = load_geoip(tables / "geoip.csv")
        self._blocklist: Blocklist | None = None
        self.enabled = {
            "source": adnet.stacked_enabled or adnet.rate_enabled,
            "campaign": adnet.heavy_enabled,
            "area": adnet.location_enabled,
        }
        self.keys = stage_keys(self._area_key)
        self.sessions: dict[int, KeyedPartition] = {}
        self.accounts: dict[int, KeyedPartition] = {}
        self.sources: dict[int, KeyedPartition] = {}
        self.campaigns: dict[int, CampaignPartition] = {}
        self.areas: dict[int, AreaPartition] = {}
        #: The event time of each domain's stream (the watermark of all its stages).
        self.click_time = StreamTime()
        self.txn_time = StreamTime()
        self.out = Outcome()

    # -- helpers --------------------------------------------------------------------------

    def _home(self, key: str) -> int:
        return partition_for(key.encode("utf-8"), self.partitions)

    def _area_key(self, checked: Checked) -> str | None:
        if checked.lat is None or checked.lon is None:
            return None
        return self.grid.region(self.grid.cell(checked.lat, checked.lon))

    def blocklist(self) -> Blocklist:
        if self._blocklist is None:
            self._blocklist = load_blocklist(
                self.tables / "blocklist",
                expected_ips=self.adnet.blocklist_expected_ips,
                fp_rate=self.adnet.blocklist_fp_rate,
            )
        return self._blocklist

    def _send(self, alert: dict[str, Any]) -> None:
        mode = self.book.route(alert)
        if mode == "live":
            self.out.alerts.append(alert)
        elif mode == "shadow":
            self.out.shadow.append(alert)

    def _fire(self, checked: Checked, rule: str) -> None:
        if self.book.counts(rule):
            checked.fired(rule)

    # -- events ---------------------------------------------------------------------------

    def event(self, raw: bytes, origin: str, record_ms: int | None = None) -> None:
        """One input record (a click or a transaction, told apart by its fields);
        ``record_ms`` is its Kafka timestamp, a transaction's time when it has none."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        kind = kind_of(obj) if isinstance(obj, dict) else "clicks"
        if isinstance(obj, dict) and isinstance(obj.get("is_fraud"), bool):
            ident = obj.get("transaction_id" if kind == "atm" else "click_id")
            if isinstance(ident, str):
                self.out.labels[kind][ident] = obj["is_fraud"]
        if kind == "atm":
            self.txn(raw, origin, record_ms)
        else:
            self.click(raw, origin)

    def txn(self, raw: bytes, origin: str, record_ms: int | None = None) -> None:
        self.out.txns += 1
        try:
            txn = decode_txn(raw, self.settings.max_record_bytes, record_ms, origin)
        except BadInput as error:
            self.out.dead_letters[error.reason] += 1
            return
        home = self._home(txn.account_id)
        processor = self.accounts.get(home)
        if processor is None:
            processor = self.accounts[home] = KeyedPartition(self.travel, {})
        seen = self.txn_time.observe(txn.timestamp)
        outcome = processor.process(txn, self.txn_time.seen, seen)
        if outcome.result is None:
            self.out.dead_letters["late_event"] += 1
            return
        for pair in outcome.result.pairs:
            customer = customer_evidence(self.customers(pair.account_id))
            self._send(travel_alert(pair, self.travel.version, customer))

    def click(self, raw: bytes, origin: str) -> None:
        self.out.clicks += 1
        try:
            click = decode_click(raw, self.settings.max_record_bytes, origin)
        except BadInput as error:
            self.out.dead_letters[error.reason] += 1
            return
        home = self._home(click.session_id)
        processor = self.sessions.get(home)
        if processor is None:
            processor = self.sessions[home] = KeyedPartition(self.burst, {})
        seen = self.click_time.observe(click.timestamp)
        outcome = processor.process(click, self.click_time.seen, seen)
        result = outcome.result
        if result is None:
            self.out.dead_letters["late_event"] += 1
            return
        checked = Checked(click, [])
        place(checked, self.geoip)
        for finding in result.findings:
            here = checked.location() if finding.click_id == click.click_id else None
            self._send(burst_alert(finding, self.burst.version, here))
        if result.fraud:
            self._fire(checked, BURST)
        if result.duplicate and not result.replay:
            return  # counted once already, by every stage
        if self.adnet.blocklist_enabled and click.ip:
            match = self.blocklist().match(click.ip)
            if match is not None:
                self._fire(checked, BLOCKLIST)
                self._send(
                    check_alert(
                        BLOCKLIST,
                        self.book[BLOCKLIST].version,
                        click.ip,
                        checked,
                        (click.click_id,),
                        {"click_id": click.click_id, "ip": click.ip, **match.evidence()},
                    )
                )
        after: str | None = None
        while (step := next_stage(checked, after, self.enabled, self.keys)) is not None:
            after, key = step
            getattr(self, f"_{after}_stage")(self._home(key), key, checked)

    # -- the stages after the session's, as the agents run them ----------------------------

    def _source_stage(self, partition: int, key: str, checked: Checked) -> None:
        processor = self.sources.get(partition)
        if processor is None:
            processor = self.sources[partition] = KeyedPartition(self.source_rule, {})
        click = checked.click
        outcome = processor.process(click, self.click_time.seen, None)
        if outcome.result is None:
            return
        result = outcome.result
        source = source_of(click) or ""
        for finding in result.findings:
            self._send(source_alert(finding, source, self.book[finding.rule].version, checked))
        if result.replay:
            checked.repeat = True
        if result.stacked:
            self._fire(checked, STACKED)
        if result.over_limit:
            self._fire(checked, RATE_LIMIT)

    def _campaign_stage(self, partition: int, key: str, checked: Checked) -> None:
        state = self.campaigns.get(partition)
        if state is None:
            state = self.campaigns[partition] = CampaignPartition(
                partition, {}, lambda: self.heavy_rule, self.adnet.lateness_ms
            )
        click = checked.click
        campaign = click.campaign_id or ""
        watermark = self.click_time.seen
        if state.too_late(click.timestamp, watermark):
            return
        sources = {k: v for k, v in {"ip": click.ip, "device": click.device_id}.items() if v}
        findings, to_alert = state.observe(
            campaign, click.timestamp, sources, checked.repeat, watermark
        )
        if findings:
            self._fire(checked, HEAVY)
        for finding, bucket in to_alert:
            self._send(heavy_alert(finding, campaign, bucket, checked, self.book[HEAVY].version))

    def _area(self, partition: int) -> AreaPartition:
        state = self.areas.get(partition)
        if state is None:
            state = self.areas[partition] = AreaPartition(
                {}, self.grid, lambda: self.location_rule, self.adnet.lateness_ms
            )
        return state

    def _area_stage(self, partition: int, region: str, checked: Checked) -> None:
        state = self._area(partition)
        assert checked.lat is not None and checked.lon is not None
        cell = self.grid.cell(checked.lat, checked.lon)
        fraud = bool(checked.reasons)
        t = checked.click.timestamp
        watermark = self.click_time.seen
        if state.too_late(t, watermark):
            return
        counts = (
            state.counts(region)
            if checked.repeat
            else state.record(region, cell, t, fraud, watermark)
        )
        clicks, frauds = counts.totals(cell, t)
        if self.location_rule.fires(clicks, frauds):
            self._fire(checked, LOCATION)
            self._send(
                location_alert(
                    checked,
                    cell,
                    clicks,
                    frauds,
                    self.location_rule,
                    self.grid,
                    self.book[LOCATION].version,
                )
            )
        for other in [] if checked.repeat else self.grid.regions_reached(cell):
            if other != region:
                # Live, this contribution travels through the area topic and arrives a
                # moment later; here it is counted at once.
                self._area(self._home(other)).contribute(other, cell, t, fraud, watermark)


def run(backtest: Backtest, lines: Iterable[bytes]) -> Outcome:
    """Every line of a JSON-lines input through the backtest, in order."""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line:
            backtest.event(line, f"replay:{number}")
    return backtest.out
