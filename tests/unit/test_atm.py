"""The ATM rule, driven directly: the seed's figures, boundaries, order, the oracle."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fraudapp.atm.detect import TravelRule, pairs_in, travel_alert
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.models import Txn, txn_from_dict
from fraudapp.atm.oracle import expected_pairs
from fraudapp.core.badinput import BadInput
from fraudapp.core.geo import geo_distance_km, java_double_str
from fraudapp.core.keyed import KeyedPartition

RULE = TravelRule()
T0 = 1_538_758_568_000  # 2018-10-05 16:56:08 UTC, the blog's first ROWTIME
DATA = Path(__file__).resolve().parents[1] / "data"
BLOG = [
    {
        "account_id": "ac_01",
        "atm": "ID_2276369282",
        "amount": 20,
        "location": {"lat": "38.6956033", "lon": "-121.5922283"},
        "transaction_id": "01",
    },
    {
        "account_id": "ac_02",
        "atm": "Flying Pig Bistro",
        "amount": 400,
        "location": {"lat": "37.766319", "lon": "-122.417422"},
        "transaction_id": "02",
    },
    {
        "account_id": "ac_03",
        "atm": "Wells Fargo",
        "amount": 50,
        "location": {"lat": "37.5522855", "lon": "-121.9797997"},
        "transaction_id": "04",
    },
    {
        "account_id": "ac_02",
        "atm": "Flying Pig Bistro",
        "amount": 40,
        "location": {"lat": "37.766319", "lon": "-122.417422"},
        "transaction_id": "03",
    },
    {
        "account_id": "ac_03",
        "atm": "Barclays",
        "amount": 500,
        "location": {"lat": "33.5522855", "lon": "-120.9797997"},
        "transaction_id": "X05",
    },
]
BLOG_ROWTIMES = [T0, T0, T0, T0 + 351_473, T0 + 351_473]


def txn(tid: str, ts: int, lat: float = 53.8, lon: float = -1.5, account: str = "a1") -> Txn:
    return Txn(account, tid, "ATM", 20, lat, lon, T0 + ts)


def run(txns: list[Txn], rule: TravelRule = RULE) -> list[tuple[str, str]]:
    processor = KeyedPartition(rule, {})
    found = []
    for t in txns:
        result = processor.process(t).result
        assert result is not None, "refused as late"
        found.extend((p.t1[1], p.t2[1]) for p in result.pairs)
    assert len(found) == len(set(found)), "a pair was reported twice"
    return sorted(found)


def test_the_seeds_example_gives_one_alert_with_its_figures() -> None:
    processor = KeyedPartition(RULE, {})
    pairs = []
    for record, rowtime in zip(BLOG, BLOG_ROWTIMES, strict=True):
        pairs.extend(processor.process(txn_from_dict(record, rowtime)).result.pairs)
    (pair,) = pairs
    evidence = pair.evidence()
    assert (evidence["t1_transaction_id"], evidence["t2_transaction_id"]) == ("04", "X05")
    assert evidence["distance_between_txn_km"] == 453.87740037465375
    assert evidence["kmh_required"] == 4648.888083433872
    assert evidence["milliseconds_difference"] == 351_473
    assert evidence["minutes_difference"] == 5.8578833333333336
    assert evidence["t1_location"] == "37.5522855,-121.9797997"
    assert evidence["t2_location"] == "33.5522855,-120.9797997"
    assert (evidence["t1_atm"], evidence["t2_amount"]) == ("Wells Fargo", 500)
    # Faster than any airliner: the alert says so.
    assert travel_alert(pair, 1, {})["severity"] == "critical"


def test_distance_reproduces_the_demo_scenes_elasticsearch_documents() -> None:
    docs = [json.loads(line)["doc"] for line in (DATA / "es_sample_docs.jsonl").open()]
    checked = 0
    for doc in docs:
        if "DISTANCE_BETWEEN_TXN_KM" not in doc:
            continue
        lat1, lon1 = map(float, doc["TX1_LOCATION"].split(","))
        lat2, lon2 = map(float, doc["TX2_LOCATION"].split(","))
        distance = geo_distance_km(lat1, lon1, lat2, lon2)
        assert distance == doc["DISTANCE_BETWEEN_TXN_KM"]
        elapsed = float(doc["TX2_TIMESTAMP"]) - float(doc["TX1_TIMESTAMP"])
        assert distance / (elapsed / 1000 / 60 / 60) == doc["KMH_REQUIRED"]
        checked += 1
    assert checked == 2


@pytest.mark.parametrize(("gap_ms", "pairs"), [(600_000, 1), (600_001, 0), (1, 1), (0, 0)])
def test_window_boundaries(gap_ms: int, pairs: int) -> None:
    assert len(run([txn("a", 0), txn("b", gap_ms, lat=51.5)])) == pairs


def test_same_location_is_not_travel() -> None:
    assert run([txn("a", 0), txn("b", 60_000)]) == []


def test_three_places_give_three_alerts_in_any_order() -> None:
    base = [txn("a", 0, lat=51.0), txn("b", 60_000, lat=52.0), txn("c", 120_000, lat=53.0)]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]):
        assert run([base[i] for i in order]) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_late_t1_pairs_with_t2_already_seen() -> None:
    assert run([txn("t2", 300_000, lat=51.0), txn("t1", 0)]) == [("t1", "t2")]


def test_repeated_transaction_id_is_one_transaction() -> None:
    assert run([txn("a", 0), txn("b", 1_000, lat=50.0), txn("b", 1_000, lat=50.0)]) == [("a", "b")]


def test_other_accounts_do_not_pair() -> None:
    assert run([txn("a", 0), txn("b", 1_000, lat=50.0, account="a2")]) == []


def test_too_late_is_refused_and_quiet_accounts_expire() -> None:
    store: dict[bytes, bytes] = {}
    processor = KeyedPartition(RULE, store)
    processor.process(txn("old", 0, account="quiet"))
    processor.process(txn("now", 10 * 3_600_000))
    assert processor.process(txn("late", 10 * 3_600_000 - RULE.lateness_ms - 1)).late
    processor.process(txn("later", 11 * 3_600_000))
    assert set(store) == {b"a1"}


def test_pairs_in_state_match_the_alerts() -> None:
    processor = KeyedPartition(RULE, {})
    alerts = []
    for t in (txn("a", 0, lat=51.0), txn("b", 60_000, lat=52.0), txn("c", 61_000, lat=52.0)):
        alerts.extend(processor.process(t).result.pairs)
    state = json.loads(processor.store[b"a1"])
    assert pairs_in("a1", state, RULE) == alerts


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (
            {
                "transaction_id": "t",
                "atm": "x",
                "amount": 1,
                "location": {"lat": 1, "lon": 1},
                "timestamp": T0,
            },
            "missing_field",
        ),
        (
            {
                "account_id": "a",
                "transaction_id": "t",
                "atm": "x",
                "amount": 1,
                "location": {"lat": "north", "lon": 1},
                "timestamp": T0,
            },
            "bad_location",
        ),
        (
            {
                "account_id": "a",
                "transaction_id": "t",
                "atm": "x",
                "amount": 1,
                "location": {"lat": 91, "lon": 1},
                "timestamp": T0,
            },
            "bad_location",
        ),
        (
            {
                "account_id": "a",
                "transaction_id": "t",
                "atm": "x",
                "amount": "lots",
                "location": {"lat": 1, "lon": 1},
                "timestamp": T0,
            },
            "bad_field_type",
        ),
        (
            {
                "account_id": "a",
                "transaction_id": "t",
                "atm": "x",
                "amount": 1,
                "location": {"lat": 1, "lon": 1},
                "timestamp": "whenever",
            },
            "bad_timestamp",
        ),
        (
            {
                "account_id": "a",
                "transaction_id": "t",
                "atm": "x",
                "amount": 1,
                "location": [1, 2],
                "timestamp": T0,
            },
            "bad_location",
        ),
    ],
)
def test_bad_transactions_name_their_reason(record: dict, reason: str) -> None:
    with pytest.raises(BadInput) as info:
        txn_from_dict(record)
    assert info.value.reason == reason


def test_timestamp_field_wins_over_the_record_timestamp() -> None:
    record = {**BLOG[0], "timestamp": "2018-10-07 20:40:48 +0000"}
    assert txn_from_dict(record, T0).timestamp == 1_538_944_848_000
    assert txn_from_dict(BLOG[0], T0).timestamp == T0


def test_java_double_text() -> None:
    assert [java_double_str(v) for v in (53.7988921, -1.547186, 37.0, 0.0001, 1e7)] == [
        "53.7988921",
        "-1.547186",
        "37.0",
        "1.0E-4",
        "1.0E7",
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_stream_matches_the_oracle_in_any_order(seed: int) -> None:
    raw = generate_txns(3_000, seed=seed)
    txns = [txn_from_dict(r) for r in raw]
    expected = expected_pairs(
        [
            {
                "account_id": t.account_id,
                "transaction_id": t.transaction_id,
                "lat": t.lat,
                "lon": t.lon,
                "timestamp": t.timestamp,
            }
            for t in txns
        ]
    )
    assert sum(1 for key in expected if key[1].startswith("xxx")) > 50
    rng = random.Random(seed)
    shuffled = txns[:]
    rng.shuffle(shuffled)  # far beyond the generator's own disorder, within lateness
    processor = KeyedPartition(TravelRule(lateness_ms=10**9), {})
    found = {}
    for t in shuffled:
        for pair in processor.process(t).result.pairs:
            found[(t.account_id, pair.t1[1], pair.t2[1])] = pair.evidence()
    assert set(found) == set(expected)
    for key, evidence in found.items():
        assert evidence["distance_between_txn_km"] == pytest.approx(
            expected[key]["distance_km"], rel=1e-9
        )
        assert evidence["kmh_required"] == pytest.approx(expected[key]["kmh"], rel=1e-9)
