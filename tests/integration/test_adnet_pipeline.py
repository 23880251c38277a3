"""The ad-network checks end to end on a real Apache Kafka broker and a real worker.

One generated stream of 20 000 clicks, produced out of order, exercises every check;
its findings are computed independently (fraudapp.adnet.oracle, brute force). The
exact checks (stacked ads, rate limit, click bursts) must match their oracles click
for click; the blocklist must miss nothing and over-match only within its Bloom
filter's false-positive rate; the statistical checks (heavy hitters, location) are
compared per entity, with the generator designed to leave wide margins, because
what they see of a click depends on which clicks arrived before it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudapp.adnet import oracle
from fraudapp.adnet.envelope import risk_score
from fraudapp.clicks.generate import (
    FARM_CAMPAIGN,
    FARM_DEVICE,
    FARM_IP,
    arrival_order,
    generate_clicks,
)
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.alerts import alert_id
from fraudapp.core.geo import geo_distance_km
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import defaults
from fraudapp.core.settings import DEFAULT_WEIGHTS, Settings
from fraudapp.replay import Backtest
from fraudapp.replay import run as replay_run
from tests.integration.helpers import AppSpace, running

pytestmark = pytest.mark.integration

LAGOS = (6.4541, 3.3947)
COUNT = 20_000
#: With the default 50 clicks, a city's first clicks are a small, clustered sample
#: (bots click in groups) and some cities legitimately pass 20 % for a while; the
#: test asks for a larger sample and share so that only the designed hotspot can.
LOCATION = {"LOCATION_MIN_CLICKS": "300", "LOCATION_THRESHOLD": "0.3"}


@pytest.fixture(scope="module")
def run(kafka_broker, tmp_path_factory) -> dict[str, Any]:
    space = AppSpace(kafka_broker.bootstrap, "adnet", **LOCATION)
    space.create_topics()
    clicks = generate_clicks(COUNT, seed=31)
    arrived = arrival_order(clicks, max_delay_ms=20_000, seed=32)
    datadir = tmp_path_factory.mktemp("adnet")
    with running(space.worker(datadir / "w")) as worker:
        space.produce([(c["session_id"], c) for c in arrived])
        verdicts = space.consume("verdicts", until=len(arrived))["verdicts"]
        out = space.consume("alerts", "dead", idle_s=3.0)
        status, top = worker.get(f"/campaigns/{FARM_CAMPAIGN}/top?k=3")
    alerts: dict[str, list[dict[str, Any]]] = {}
    for alert in out["alerts"]:
        alerts.setdefault(alert["rule"], []).append(alert)
    print("\nalerts per rule:", {rule: len(a) for rule, a in sorted(alerts.items())})
    return {
        "clicks": clicks,
        "arrived": arrived,
        "env": space.env,
        "verdicts": verdicts,
        "alerts": alerts,
        "dead": out["dead"],
        "top": (status, top),
    }


def alerted_clicks(alerts: list[dict[str, Any]]) -> set[str]:
    ids = [a["click_id"] for a in alerts]
    repeated = [cid for cid, n in Counter(ids).items() if n > 1]
    assert not repeated, f"{len(repeated)} clicks alerted twice"
    return set(ids)


def test_every_click_has_one_verdict_with_its_reasons_and_score(run) -> None:
    assert run["dead"] == []
    verdicts = [v for v in run["verdicts"] if not v["duplicate"]]
    assert Counter(v["click_id"] for v in verdicts) == Counter(
        {c["click_id"]: 1 for c in run["clicks"]}
    )
    for verdict in verdicts:
        assert verdict["skipped"] == {}
        assert verdict["fraud"] == bool(verdict["reasons"])
        assert verdict["risk_score"] == risk_score(verdict["reasons"], DEFAULT_WEIGHTS)
        assert 0 <= verdict["risk_score"] <= 1
    kinds = Counter(reason for v in verdicts for reason in v["reasons"])
    print("verdict reasons:", dict(kinds))
    assert set(kinds) == set(DEFAULT_WEIGHTS)


def test_click_bursts_still_match_their_oracle(run) -> None:
    assert alerted_clicks(run["alerts"]["click_burst"]) == fraudulent_click_ids(run["clicks"])


def test_stacked_ads_match_the_oracle_click_for_click(run) -> None:
    alerts = run["alerts"]["stacked_ads"]
    assert alerted_clicks(alerts) == oracle.stacked_click_ids(run["clicks"])
    for alert in alerts:
        assert alert["interval_ms"] <= 200 and len(set(alert["ads"])) >= 2
        assert alert["alert_id"] == alert_id("stacked_ads", alert["source"], alert["click_id"])


def test_rate_limit_matches_the_oracle_click_for_click(run) -> None:
    alerts = run["alerts"]["rate_limit"]
    assert alerted_clicks(alerts) == oracle.over_limit_click_ids(run["clicks"])
    assert {a["limit_per_minute"] for a in alerts} == {20.0}
    assert {a["burst"] for a in alerts} == {5}


def test_blocklist_misses_nothing_and_overmatches_within_its_rate(run) -> None:
    alerts = run["alerts"]["ip_blocklist"]
    expected = oracle.blocklisted_click_ids(run["clicks"], tables_dir() / "blocklist")
    found = alerted_clicks(alerts)
    assert expected and not expected - found
    extra = [a for a in alerts if a["click_id"] not in expected]
    distinct_ips = len({c["ip"] for c in run["clicks"]})
    # 0.1 % of the distinct unlisted IPs, with room for chance (binomial, ~5 sigma)
    assert len(extra) <= 0.001 * distinct_ips + 5 * (0.001 * distinct_ips) ** 0.5 + 1
    assert all(a["probabilistic"] and a["false_positive_rate"] == 0.001 for a in extra)
    print(f"blocklist: {len(expected)} listed clicks found, {len(extra)} Bloom false positives")


def test_heavy_hitters_are_the_click_farms_and_top_answers(run) -> None:
    shares = oracle.campaign_shares(run["clicks"])
    heavy = {key for key, share in shares.items() if share >= 0.3}
    assert heavy == {(FARM_CAMPAIGN, "ip", FARM_IP), (FARM_CAMPAIGN, "device", FARM_DEVICE)}
    assert max(share for key, share in shares.items() if key not in heavy) < 0.1
    fired = {(a["campaign_id"], a["kind"], a["source"]) for a in run["alerts"]["heavy_hitter"]}
    assert fired == heavy
    status, top = run["top"]
    assert status == 200, top
    assert top["ip"][0]["source"] == FARM_IP and top["device"][0]["source"] == FARM_DEVICE
    exact = len({c["click_id"] for c in run["clicks"] if c.get("device_id") == FARM_DEVICE})
    entry = top["device"][0]
    assert entry["lower_bound"] <= exact <= entry["upper_bound"]


def test_suspicious_location_fires_in_the_hotspot_only(run) -> None:
    clicks = run["clicks"]
    fraud_ids = (
        fraudulent_click_ids(clicks)
        | oracle.stacked_click_ids(clicks)
        | oracle.over_limit_click_ids(clicks)
        | oracle.blocklisted_click_ids(clicks, tables_dir() / "blocklist")
        | {
            c["click_id"]
            for c in clicks
            if c["campaign_id"] == FARM_CAMPAIGN
            and (c["ip"] == FARM_IP or c.get("device_id") == FARM_DEVICE)
        }
    )
    rows = oracle.load_geoip_rows(tables_dir() / "geoip.csv")
    centres = {city: (lat, lon) for _, lat, lon, city in rows}
    shares = oracle.area_shares(clicks, fraud_ids, centres, rows)
    hot = {city for city, (n, share) in shares.items() if n >= 300 and share >= 0.45}
    calm = {city for city, (n, share) in shares.items() if share < 0.15}
    print("fraud share per city:", {c: f"{s:.0%} of {n}" for c, (n, s) in shares.items() if n})
    assert hot == {"Lagos"} and len(calm) == len(centres) - 1
    alerts = run["alerts"]["suspicious_location"]
    assert alerts
    for alert in alerts:
        assert geo_distance_km(*LAGOS, alert["lat"], alert["lon"]) <= alert["max_reach_km"]
        assert alert["fraud_share"] >= 0.3 and alert["clicks_nearby"] >= 300
    places = [oracle.click_location(c, rows) for c in clicks]
    near_lagos = [at for at in places if at and geo_distance_km(*LAGOS, *at) < 100]
    share_alerted = len(alerted_clicks(alerts)) / len(near_lagos)
    print(f"location: {len(alerts)} alerts, {share_alerted:.0%} of Lagos clicks")
    assert share_alerted > 0.5


#: Rules whose findings do not depend on how the stage partitions interleave.
EXACT = ("click_burst", "stacked_ads", "rate_limit", "ip_blocklist")


def test_replay_gives_the_live_alert_set(run) -> None:
    """``fraudapp replay``'s engine over the same clicks in the order they were
    produced: the exact checks' alerts are the live ones, id for id. The statistical
    checks see each click after whatever other partitions' clicks reached their stage
    first (live) or in file order (replay), and a click's counts reach neighbouring
    regions through a topic (live) or at once (replay), so near their thresholds the
    two judge differently: they are compared by overlap (measured: heavy hitters 1.0,
    location 0.84, whose threshold the test's hotspot straddles for a long time)."""
    settings = Settings.from_env(run["env"])
    engine = Backtest(defaults(settings, tables_dir() / "rules.json"), settings, tables_dir())
    lines = [orjson.dumps(c) for c in run["arrived"]]
    outcome = replay_run(engine, lines)
    replayed: dict[str, set[str]] = {}
    for alert in outcome.alerts:
        replayed.setdefault(alert["rule"], set()).add(alert["alert_id"])
    live = {rule: {a["alert_id"] for a in alerts} for rule, alerts in run["alerts"].items()}
    for rule in EXACT:
        assert replayed.get(rule, set()) == live.get(rule, set()), rule
    for rule in ("heavy_hitter", "suspicious_location"):
        a, b = replayed.get(rule, set()), live.get(rule, set())
        overlap = len(a & b) / len(a | b) if a | b else 1.0
        print(f"{rule}: replay {len(a)}, live {len(b)}, overlap {overlap:.3f}")
        assert overlap >= 0.75, (rule, len(a), len(b), overlap)
    assert not outcome.dead_letters


def test_blocklist_changes_on_the_topic_apply_at_once(kafka_broker, tmp_path: Path) -> None:
    """``fraudapp block`` as a user runs it: add a range, unlist a listed IP."""
    space = AppSpace(kafka_broker.bootstrap, "block")
    space.create_topics()
    t0 = int(time.time() * 1000)

    def click(n: int, ip: str) -> tuple[str, dict[str, Any]]:
        cid = f"c{n}"
        return cid, {"click_id": cid, "session_id": cid, "url": "u", "timestamp": t0 + n, "ip": ip}

    with running(space.worker(tmp_path / "w")):
        space.produce([click(1, "192.168.7.7"), click(2, "10.250.0.1")])
        first = space.consume("verdicts", until=2)["verdicts"]
        space.produce(
            [("192.168.7.0/24", {"blocked": True}), ("10.250.0.1", {"blocked": False})],
            topic="blocklist",
        )
        time.sleep(2.0)
        space.produce([click(3, "192.168.7.8"), click(4, "10.250.0.1")])
        later = space.consume("verdicts", until=4)["verdicts"]
    reasons = {v["click_id"]: v["reasons"] for v in first + later}
    assert reasons == {"c1": [], "c2": ["ip_blocklist"], "c3": ["ip_blocklist"], "c4": []}
