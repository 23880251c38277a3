"""Backtests: the live detectors run over recorded events, in one process.

A fraud team wants to know what a rule change would have done before it makes it.
:class:`Backtest` runs the very code the workers run (the same decoders, rules,
per-partition state classes, alert builders and ad-network stage bodies,
:mod:`fraudapp.adnet.pipeline`; only the stores are dicts and the hops between stages
are function calls) over clicks and ATM transactions in file order, as fast as one
core goes, and collects the alerts each rule would have raised under a given set of
rule versions (and, when asked, each click's verdict). Keys are placed on the
partitions the live stream would use, so lateness and expiry behave alike; the input
is one stream read in order, so every stage's watermark is its newest event time (per
domain: clicks and transactions keep their own), and each event is judged late
against the newest before it, as a live source partition's records are.
Pure: no faust, no broker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudapp.adnet.area import AreaGrid
from fraudapp.adnet.blocklist import Blocklist
from fraudapp.adnet.envelope import Checked, verdict
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.pipeline import (
    AdnetRules,
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
from fraudapp.atm.detect import RULE_NAME as ATM
from fraudapp.atm.detect import TravelRule, customer_evidence, travel_alert
from fraudapp.atm.models import decode_txn
from fraudapp.clicks.detect import RULE_NAME as BURST
from fraudapp.clicks.detect import BurstRule, burst_alert
from fraudapp.clicks.models import decode_click
from fraudapp.core.badinput import BadInput
from fraudapp.core.cases import CASE_PREFIX, CasePartition, CasePolicy
from fraudapp.core.eventtime import StreamTime
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.rulebook import RuleBook, RuleRecord
from fraudapp.core.settings import Settings
from fraudapp.core.timedomains import alert_lateness_ms


@dataclass
class Outcome:
    """What a backtest produced: alerts per mode, refused records per reason, per input
    line the ids of what it was about (for labels), and, when asked for, each click's
    verdict as the worker would write it."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    shadow: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    clicks: int = 0
    txns: int = 0
    #: ``is_fraud`` of each labelled event, by kind (clicks, atm) and id.
    labels: dict[str, dict[str, bool]] = field(default_factory=lambda: {"clicks": {}, "atm": {}})
    #: The clicks' verdicts (``click-verdicts``), kept only when asked for: a backtest
    #: of millions of clicks is about its alerts.
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    #: The records the case stage would write to ``cases`` (each case's transitions).
    case_records: list[dict[str, Any]] = field(default_factory=list)
    #: The cases at the end, by id.
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)


def kind_of(obj: Mapping[str, Any]) -> str:
    """``atm`` for a transaction (it has an account), else ``clicks``."""
    return "atm" if "account_id" in obj or "transaction_id" in obj else "clicks"


class Backtest:
    """The worker's checks over events handed in one by one (:meth:`event`).

    The ad-network stages are :mod:`fraudapp.adnet.pipeline`'s, as live; only the
    stores are dicts and the hops between stages are function calls. ``verdicts``:
    keep each click's verdict in :attr:`Outcome.verdicts`.
    """

    def __init__(
        self,
        rules: Mapping[str, RuleRecord],
        settings: Settings,
        tables: Path,
        customers: Callable[[str], dict[str, Any] | None] = lambda account: None,
        verdicts: bool = False,
    ) -> None:
        self.book = RuleBook(rules)
        self.settings = settings
        self.tables = tables
        self.customers = customers
        self.keep_verdicts = verdicts
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
        self.grid = AreaGrid(radius_km=adnet.location_radius_km)
        self.geoip = load_geoip(tables / "geoip.csv")
        self._blocklist: Blocklist | None = None
        self.enabled = enabled_stages(adnet)
        self.keys = stage_keys(area_key(self.grid))
        self.sessions: dict[int, KeyedPartition] = {}
        self.accounts: dict[int, KeyedPartition] = {}
        #: The ad-network stages' state of each partition, in dicts.
        self.stages = StageStates(
            adnet_rules(adnet, self.book),
            self.grid,
            adnet.lateness_ms,
            lambda stage, partition: ({}, ()),
        )
        #: The event time of each domain's stream (the watermark of all its stages).
        self.click_time = StreamTime()
        self.txn_time = StreamTime()
        self.out = Outcome()
        #: The case stage, one partition per domain (cases do not interact).
        cases = settings.cases
        self.case_stores: dict[str, dict[bytes, bytes]] = {"clicks": {}, "atm": {}}
        self.case_stage = {
            domain: CasePartition(
                CasePolicy(
                    cases.quiet_ms,
                    alert_lateness_ms(settings, domain),
                    cases.update_every_ms,
                    cases.keep_ms,
                ),
                self.case_stores[domain],
            )
            for domain in ("clicks", "atm")
        }

    @property
    def rules(self) -> AdnetRules:
        """The ad-network stages' rules, as the rule set makes them."""
        return self.stages.rules

    # -- helpers --------------------------------------------------------------------------

    def _home(self, key: str) -> int:
        return partition_for(key.encode("utf-8"), self.partitions)

    def blocklist(self) -> Blocklist:
        if self._blocklist is None:
            self._blocklist = shipped_blocklist(self.adnet, self.tables)
        return self._blocklist

    def _send(self, alert: dict[str, Any]) -> None:
        mode = self.book.route(alert)
        if mode == "live":
            self.out.alerts.append(alert)
            self._fold(alert)
        elif mode == "shadow":
            self.out.shadow.append(alert)

    def _fold(self, alert: dict[str, Any]) -> None:
        """Into its case, as the case stage would (no action is carried out here)."""
        domain = "atm" if alert["rule"] == ATM else "clicks"
        clock = self.txn_time if domain == "atm" else self.click_time
        _, changes = self.case_stage[domain].add(alert, clock.seen)
        for change in changes:
            if change.record:
                record = change.as_record()
                self.out.case_records.append(
                    record or {"case_id": change.case_id, "transition": "expired"}
                )

    def finish(self) -> Outcome:
        """The outcome, with the cases as they stand at the end."""
        self.out.cases = {
            case["case_id"]: case
            for store in self.case_stores.values()
            for key, raw in store.items()
            if key.startswith(CASE_PREFIX) and (case := orjson.loads(raw))
        }
        return self.out

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
            params = self.book[ATM].params
            self._send(travel_alert(pair, self.travel.version, customer, params))

    def click(self, raw: bytes, origin: str) -> None:
        """The session stage (click bursts), as its agent runs it, then the ad-network
        stages the click visits, each at once."""
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
        reasons = [BURST] if result.fraud and self.book.counts(BURST) else []
        checked = enter(click, reasons, self.geoip, repeat=result.replay)
        for finding in result.findings:
            here = checked.location() if finding.click_id == click.click_id else None
            self._send(burst_alert(finding, self.burst.version, here, self.book[BURST].params))
        if result.duplicate and not result.replay:
            # Counted once already, by every stage: only its verdict is repeated.
            if self.keep_verdicts:
                self.out.verdicts.append(duplicate_verdict(click, reasons, self.adnet))
            return
        listed = self.blocklist() if self.adnet.blocklist_enabled else None
        self._collect(blocklist_check(checked, listed, self.book), checked)
        after: str | None = None
        while (step := next_stage(checked, after, self.enabled, self.keys)) is not None:
            after, key = step
            watermark = self.click_time.seen
            stage = self.stages.run(after, self._home(key), key, checked, self.book, watermark)
            self._collect(stage, checked)
        if self.keep_verdicts:
            self.out.verdicts.append(verdict(checked, self.adnet.weights))

    def _collect(self, result: StageResult, checked: Checked) -> None:
        """A stage's result, as the worker would send it: its alerts routed by the
        rule book, its verdict changes into the click, and its counts to neighbouring
        regions, counted at once (live, they travel through the area topic and arrive
        a moment later)."""
        for _, alert in result.alerts:
            self._send(alert)
        result.apply(checked)
        for contribution in result.contributions:
            home = self._home(contribution.region)
            self.stages.contribute(home, contribution, self.click_time.seen)


def run(backtest: Backtest, lines: Iterable[bytes]) -> Outcome:
    """Every line of a JSON-lines input through the backtest, in order."""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line:
            backtest.event(line, f"replay:{number}")
    return backtest.finish()
