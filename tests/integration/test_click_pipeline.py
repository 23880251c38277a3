"""Click fraud end to end on a real Apache Kafka broker with a real faust worker.

Clicks are produced by a plain Kafka client (aiokafka), out of order within the
allowed lateness; verdicts and alerts are read back and compared with the
brute-force oracle.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.alerts import ENVELOPE_FIELDS, alert_id
from tests.integration.helpers import AppSpace, running

LATENESS_MS = 30_000


def check_alerts(alerts: list[dict], expected: set[str]) -> None:
    """The click-burst alerts (the ad-network checks alert on the same clicks too)."""
    alerts = [a for a in alerts if a["rule"] == "click_burst"]
    ids = [a["click_id"] for a in alerts]
    duplicates = [cid for cid, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} click ids alerted more than once"
    missing = expected - set(ids)
    extra = set(ids) - expected
    assert not missing and not extra, f"missing {len(missing)}, extra {len(extra)}"
    for alert in alerts:
        assert set(ENVELOPE_FIELDS) <= set(alert)
        assert alert["rule"] == "click_burst" and alert["rule_version"] == 1
        assert alert["alert_id"] == alert_id(
            "click_burst", alert["session_id"], alert["url"], alert["click_id"]
        )
        assert alert["count"] >= 3 and alert["click_id"] in alert["click_ids"]
        assert alert["window_end"] - alert["window_start"] == 10_000
        assert alert["event_time"] == alert["window_end"]


def test_20000_shuffled_clicks_give_exactly_the_oracles_alerts(
    kafka_broker, tmp_path: Path
) -> None:
    space = AppSpace(kafka_broker.bootstrap, "oracle")
    space.create_topics()
    clicks = generate_clicks(20_000, seed=11)
    expected = fraudulent_click_ids(clicks)
    arrived = arrival_order(clicks, max_delay_ms=LATENESS_MS, seed=12)
    assert arrived != clicks
    with running(space.worker(tmp_path / "w")):
        space.produce([(c["session_id"], c) for c in arrived])
        verdicts = space.consume("verdicts", until=len(arrived))["verdicts"]
        out = space.consume("alerts", "dead", idle_s=3.0)
    assert out["dead"] == []
    assert len(verdicts) == len(arrived)
    assert Counter(v["click_id"] for v in verdicts if not v["duplicate"]) == Counter(
        {c["click_id"]: 1 for c in clicks}
    )
    assert {v["click_id"] for v in verdicts if "click_burst" in v["reasons"]} <= expected
    check_alerts(out["alerts"], expected)
    print(
        f"\n20000 clicks: {len(expected)} fraudulent by the oracle, "
        f"{len(out['alerts'])} alerts, all matching"
    )


def test_clicks_on_the_wrong_partition_are_rekeyed_by_session(kafka_broker, tmp_path: Path) -> None:
    """Unkeyed records (or keys hashed the librdkafka way) land anywhere; the worker
    moves each to its session's partition before using it, so the result still
    equals the oracle. Lateness is generous because the detour delays records."""
    space = AppSpace(kafka_broker.bootstrap, "rekey", CLICK_ALLOWED_LATENESS_MS="3600000")
    space.create_topics()
    clicks = generate_clicks(3_000, seed=21)
    arrived = arrival_order(clicks, max_delay_ms=LATENESS_MS, seed=22)
    rng = random.Random(23)
    records = [(None if rng.random() < 0.5 else f"other-{c['session_id']}", c) for c in arrived]
    with running(space.worker(tmp_path / "w")):
        space.produce(records)
        verdicts = space.consume("verdicts", until=len(arrived))["verdicts"]
        alerts = space.consume("alerts", idle_s=3.0)["alerts"]
    assert len(verdicts) == len(arrived)
    check_alerts(alerts, fraudulent_click_ids(clicks))


def test_bad_records_go_to_dead_letter_and_the_worker_carries_on(
    kafka_broker, tmp_path: Path
) -> None:
    space = AppSpace(kafka_broker.bootstrap, "dead")
    space.create_topics()
    t0 = 1_767_225_600_000
    good = [
        {"click_id": f"g{i}", "session_id": "s", "url": "u", "timestamp": t0 + i} for i in range(3)
    ]
    with running(space.worker(tmp_path / "w")) as worker:
        space.produce([("s", {"click_id": "x"}), ("s", good[0])])
        space.produce([("s", {"click_id": "y", "session_id": "s", "url": "u", "timestamp": 12})])
        space.produce([("s", good[1]), ("s", good[2])])
        # far behind the watermark: refused as late, not silently dropped
        space.produce(
            [
                (
                    "s",
                    {
                        "click_id": "late",
                        "session_id": "s",
                        "url": "u",
                        "timestamp": t0 - 3_600_000,
                    },
                )
            ]
        )
        out = space.consume("dead", "alerts", "verdicts", until=3 + 1 + 3)
        status, _ = worker.get("/health")
    assert status == 200
    reasons = sorted(d["reason"] for d in out["dead"])
    assert reasons == ["bad_timestamp", "late_event", "missing_field"]
    for record in out["dead"]:
        assert record["source_topic"] == space.topics["clicks"]
        assert record["offset"] >= 0 and record["message"]
        assert record["value"].startswith("{")
    assert [a["click_id"] for a in out["alerts"]] == ["g2"]
