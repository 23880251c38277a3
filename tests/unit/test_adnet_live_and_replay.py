"""The live worker's path and replay's path through the ad-network stages give the same
alerts and verdicts, because both run fraudapp.adnet.pipeline's stage bodies.

``LoneWorker`` does, without faust, what fraudapp.adnet.agents does with a stage's
result: it awaits each send, and hands the click between stages as the stage topic's
record carries it (the envelope encoded and decoded), and an area contribution as the
area topic's record. It owns every partition, as a lone worker does, so contributions
are counted at once, as replay counts them; time is one stream read in order, as in
replay. The exact checks and the statistical ones must then agree click for click.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from fraudapp.adnet.alerting import HEAVY, LOCATION
from fraudapp.adnet.area import AreaGrid
from fraudapp.adnet.envelope import Checked, verdict
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.pipeline import (
    BLOCKLIST,
    Contribution,
    PerPartition,
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
from fraudapp.adnet.source import RATE_LIMIT, STACKED
from fraudapp.clicks.detect import RULE_NAME as BURST
from fraudapp.clicks.detect import BurstRule, burst_alert
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.models import Click, click_from_dict
from fraudapp.core.eventtime import StreamTime
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import RuleBook, RuleRecord, defaults
from fraudapp.core.settings import Settings
from fraudapp.replay import Backtest, run

#: Small enough thresholds that every check fires on a few thousand clicks, and a
#: lateness the generator's disorder (up to 20 s) exceeds, so some clicks are skipped.
BASE = Settings()
SETTINGS = replace(
    BASE,
    adnet=replace(
        BASE.adnet,
        lateness_ms=15_000,
        heavy_min_clicks=20,
        heavy_bucket_ms=60_000,
        heavy_window_ms=600_000,
        location_min_clicks=20,
        location_threshold=0.3,
    ),
)
RULES = defaults(SETTINGS, tables_dir() / "rules.json")


class LoneWorker:
    """fraudapp.adnet.agents' use of the pipeline (and fraudapp.clicks.agents' session
    stage before it), one worker owning every partition, with the sends collected."""

    def __init__(self, settings: Settings, rules: dict[str, RuleRecord]) -> None:
        self.config = config = settings.adnet
        self.partitions = settings.partitions
        self.book = RuleBook(rules)
        params = rules[BURST].params
        self.burst = BurstRule(
            threshold=params["threshold"],
            window_ms=params["window_ms"],
            lateness_ms=params["lateness_ms"],
            version=rules[BURST].version,
        )
        self.sessions: PerPartition[KeyedPartition] = PerPartition(
            lambda partition: KeyedPartition(self.burst, {})
        )
        grid = AreaGrid(radius_km=config.location_radius_km)
        self.geoip = load_geoip(tables_dir() / "geoip.csv")
        self.blocklist = shipped_blocklist(config, tables_dir())
        self.enabled = enabled_stages(config)
        self.keys = stage_keys(area_key(grid))
        self.states = StageStates(
            adnet_rules(config, self.book), grid, config.lateness_ms, lambda s, p: ({}, ())
        )
        self.time = StreamTime()
        self.alerts: list[dict[str, Any]] = []
        self.shadow: list[dict[str, Any]] = []
        self.verdicts: list[dict[str, Any]] = []
        self.hops = 0

    def home(self, key: str) -> int:
        return partition_for(key.encode("utf-8"), self.partitions)

    async def send_alert(self, key: str, alert: dict[str, Any]) -> None:
        mode = self.book.route(alert)
        (self.alerts if mode == "live" else self.shadow if mode == "shadow" else []).append(alert)

    async def click(self, click: Click) -> None:
        """The session stage (clicks.agents.judge), then adnet.agents.begin."""
        seen = self.time.observe(click.timestamp)
        result = self.sessions[self.home(click.session_id)].process(click, self.time.seen, seen)
        step = result.result
        if step is None:
            return  # dead-lettered as late
        for finding in step.findings:
            here = enter(click, (), self.geoip).location()
            here = here if finding.click_id == click.click_id else None
            await self.send_alert(click.session_id, burst_alert(finding, self.burst.version, here))
        reasons = [BURST] if step.fraud and self.book.counts(BURST) else []
        if step.duplicate and not step.replay:
            self.verdicts.append(duplicate_verdict(click, reasons, self.config))
            return
        checked = enter(click, reasons, self.geoip, repeat=step.replay)
        screened = blocklist_check(checked, self.blocklist, self.book)
        await self.deliver(screened, checked)
        await self.advance(checked, None)

    async def advance(self, checked: Checked, after: str | None) -> None:
        step = next_stage(checked, after, self.enabled, self.keys)
        if step is None:
            self.verdicts.append(verdict(checked, self.config.weights))
            return
        stage, key = step
        # Through the stage's topic: the stage gets what the record carries.
        self.hops += 1
        await self.run_stage(stage, self.home(key), key, Checked.decode(checked.encode()))

    async def run_stage(self, stage: str, partition: int, key: str, checked: Checked) -> None:
        result = self.states.run(stage, partition, key, checked, self.book, self.time.seen)
        await self.deliver(result, checked)
        await self.advance(checked, stage)

    async def deliver(self, result: StageResult, checked: Checked) -> None:
        for key, alert in result.alerts:
            await self.send_alert(key, alert)
        result.apply(checked)
        for c in result.contributions:
            record = orjson.loads(orjson.dumps({"contribution": [c.cell, c.t, c.fraud]}))
            cell, t, fraud = record["contribution"]
            contribution = Contribution(c.region, cell, t, fraud)
            self.states.contribute(self.home(c.region), contribution, self.time.seen)


def without_clock(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts as compared: when they were detected is the wall clock's."""
    return [{**alert, "detected_at": None} for alert in alerts]


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return arrival_order(generate_clicks(4_000, seed=5), max_delay_ms=20_000, seed=6)


def test_live_and_replay_give_the_same_alerts_and_verdicts(stream: list[dict[str, Any]]) -> None:
    lines = [orjson.dumps(c) for c in stream]
    replayed = run(Backtest(RULES, SETTINGS, tables_dir(), verdicts=True), lines)
    worker = LoneWorker(SETTINGS, RULES)
    clicks = [click_from_dict(c, f"replay:{n}") for n, c in enumerate(stream, 1)]

    async def feed() -> None:
        for c in clicks:
            await worker.click(c)

    asyncio.run(feed())
    assert worker.hops > len(clicks)
    assert without_clock(worker.alerts) == without_clock(replayed.alerts)
    assert without_clock(worker.shadow) == without_clock(replayed.shadow)
    assert worker.verdicts == replayed.verdicts
    # Not equal on nothing: every check fired, and late clicks were skipped.
    rules = {alert["rule"] for alert in replayed.alerts}
    assert {BURST, STACKED, RATE_LIMIT, BLOCKLIST, HEAVY, LOCATION} <= rules
    skipped = {rule for v in replayed.verdicts for rule in v["skipped"]}
    assert skipped == {STACKED, RATE_LIMIT, HEAVY, LOCATION}
    assert sum(v["duplicate"] for v in replayed.verdicts) > 0


def test_replay_records_a_late_click_under_skipped_as_the_worker_does() -> None:
    """A click within the session stage's lateness (30 s) but beyond the later stages'
    (here 1 s) is judged by the session stage and skipped by the rest, saying why, in
    its verdict; replay used to drop those checks without a word."""
    settings = replace(BASE, adnet=replace(BASE.adnet, lateness_ms=1_000))
    t = 1_767_225_600_000

    def line(cid: str, dt: int) -> bytes:
        return orjson.dumps(
            {
                "click_id": cid,
                "session_id": f"s-{cid}",
                "url": "https://ads.example/x",
                "timestamp": t + dt,
                "ip": "10.1.0.9",
                "device_id": f"d-{cid}",
                "campaign_id": "cmp-1",
            }
        )

    rules = defaults(settings, tables_dir() / "rules.json")
    out = run(
        Backtest(rules, settings, tables_dir(), verdicts=True),
        [line("a", 0), line("b", 10_000), line("late", 2_000)],
    )
    by_id = {v["click_id"]: v for v in out.verdicts}
    assert by_id["a"]["skipped"] == {} == by_id["b"]["skipped"]
    why = "later than 1000 ms behind the {} stage's watermark".format
    assert by_id["late"]["skipped"] == {
        STACKED: why("source"),
        RATE_LIMIT: why("source"),
        HEAVY: why("campaign"),
        LOCATION: why("area"),
    }
    assert by_id["late"]["location"] == {"lat": 6.4541, "lon": 3.3947, "by": "geoip"}
    assert not out.dead_letters


def test_replay_keeps_no_verdicts_unless_asked() -> None:
    lines = [orjson.dumps(c) for c in generate_clicks(50, seed=1)]
    assert run(Backtest(RULES, SETTINGS, tables_dir()), lines).verdicts == []
