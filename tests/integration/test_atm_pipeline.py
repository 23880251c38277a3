"""ATM fraud end to end on a real Apache Kafka broker with real worker processes:
a generated out-of-order stream against the brute-force oracle, the seed's own
example, enrichment and its update, the account view, and webhook notifications."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.alerts import ENVELOPE_FIELDS, alert_id
from fraudapp.core.partitioning import partition_for
from fraudapp.core.reference import load_accounts
from fraudapp.core.timeparse import parse_event_time
from tests.integration.helpers import AppSpace, as_oracle_row, free_port, running, wait_for
from tests.integration.webhook import FlakyWebhook
from tests.unit.test_atm import BLOG, BLOG_ROWTIMES

T0 = 1_767_225_600_000


def test_5000_out_of_order_transactions_give_the_oracles_pairs(
    kafka_broker, tmp_path: Path
) -> None:
    space = AppSpace(kafka_broker.bootstrap, "atm-oracle")
    space.create_topics()
    space.produce([(r["account_id"], r) for r in load_accounts()], topic="accounts")
    txns = generate_txns(5_000, seed=31)
    # gess already sends each fraud 1-10 min late; shuffle further within 30 min
    rng = random.Random(32)
    arrived = sorted(txns, key=lambda t: parse_event_time(t["timestamp"]) + rng.uniform(0, 1.8e6))
    expected = expected_pairs([as_oracle_row(t) for t in txns])
    with running(space.worker(tmp_path / "w")):
        space.produce([(t["account_id"], t) for t in arrived], topic="atm")
        out = space.consume("alerts", "dead", until=len(expected), timeout_s=180)
        out["alerts"] += space.consume("alerts", idle_s=3.0)["alerts"][len(out["alerts"]) :]
    assert out["dead"] == []
    alerts = out["alerts"]
    keys = [(a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"]) for a in alerts]
    assert not [k for k, n in Counter(keys).items() if n > 1], "duplicate alerts"
    assert set(keys) == set(expected), (
        f"missing {len(set(expected) - set(keys))}, extra {len(set(keys) - set(expected))}"
    )
    for alert, key in zip(alerts, keys, strict=True):
        assert set(ENVELOPE_FIELDS) <= set(alert) and alert["rule"] == "atm_impossible_travel"
        assert alert["alert_id"] == alert_id("atm_impossible_travel", *key)
        assert alert["distance_between_txn_km"] == pytest.approx(
            expected[key]["distance_km"], rel=1e-9
        )
        assert alert["kmh_required"] == pytest.approx(expected[key]["kmh"], rel=1e-9)
        assert alert["milliseconds_difference"] == expected[key]["milliseconds"]
        assert alert["customer_known"] is True and alert["customer_email"]
    frauds = sum(1 for k in keys if k[1].startswith("xxx"))
    print(
        f"\n5000 transactions: {len(expected)} pairs by the oracle ({frauds} with a gess"
        f" fraud), {len(alerts)} alerts, all matching"
    )


@pytest.fixture(scope="module")
def hook():
    server = FlakyWebhook(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def space(kafka_broker) -> AppSpace:
    space = AppSpace(kafka_broker.bootstrap, "atm")
    space.create_topics()
    return space


@pytest.fixture(scope="module")
def worker(space: AppSpace, hook: FlakyWebhook, tmp_path_factory) -> WorkerProcess:
    env = {
        "NOTIFY_WEBHOOK_URL": hook.url,
        "NOTIFY_MAX_ATTEMPTS": "4",
        "NOTIFY_BACKOFF_INITIAL_S": "0.05",
    }
    with running(space.worker(tmp_path_factory.mktemp("atm"), **env)) as worker:
        yield worker


def test_the_seeds_five_transactions_give_exactly_its_alert(
    space: AppSpace, worker: WorkerProcess
) -> None:
    """No timestamp fields: the Kafka record timestamps stand in, as ROWTIME did."""
    space.produce(
        [(r["account_id"], r, ts) for r, ts in zip(BLOG, BLOG_ROWTIMES, strict=True)], topic="atm"
    )
    alerts = space.consume("alerts", idle_s=3.0)["alerts"]
    (alert,) = [a for a in alerts if a["account_id"].startswith("ac_")]
    assert (alert["t1_transaction_id"], alert["t2_transaction_id"]) == ("04", "X05")
    assert alert["distance_between_txn_km"] == 453.87740037465375
    assert alert["kmh_required"] == 4648.888083433872
    assert alert["t1_timestamp"] == BLOG_ROWTIMES[2] and alert["minutes_difference"] > 5.85
    assert alert["customer_known"] is False  # a left join: unknown accounts still alert
    status, view = worker.get("/accounts/ac_03")
    assert status == 200 and [a["t2_transaction_id"] for a in view["alerts"]] == ["X05"]
    assert [t["transaction_id"] for t in view["transactions"]] == ["04", "X05"]


def pair(account: str, first: str, ts: int) -> list[tuple[str, dict]]:
    return [
        (
            account,
            {
                "account_id": account,
                "transaction_id": f"{first}-{i}",
                "atm": atm,
                "amount": 50,
                "location": loc,
                "timestamp": ts + i * 60_000,
            },
        )
        for i, (atm, loc) in enumerate(
            [
                ("Leeds", {"lat": 53.7997, "lon": -1.5492}),
                ("York", {"lat": 53.9600, "lon": -1.0873}),
            ]
        )
    ]


def test_alerts_carry_the_customer_and_follow_its_update(
    space: AppSpace, worker: WorkerProcess
) -> None:
    customer = {
        "account_id": "a42",
        "first_name": "Robin",
        "last_name": "Moffatt",
        "email": "robin@confluent.io",
        "phone": "+44 123 456 789",
        "address": "22 Acacia Avenue",
        "country": "United Kingdom",
    }
    space.produce([("a42", customer)], topic="accounts")
    assert wait_for(lambda: worker.get("/accounts/a42")[1].get("customer") == customer)
    space.produce(pair("a42", "p1", T0), topic="atm")
    first = wait_for(
        lambda: [
            a for a in space.consume("alerts", idle_s=2.0)["alerts"] if a["account_id"] == "a42"
        ]
    )
    assert first[-1]["customer_name"] == "Robin Moffatt"
    assert first[-1]["customer_email"] == "robin@confluent.io"

    moved = {**customer, "email": "robin@example.org", "address": "1 New Street"}
    space.produce([("a42", moved)], topic="accounts")
    assert wait_for(lambda: worker.get("/accounts/a42")[1].get("customer") == moved)
    space.produce(pair("a42", "p2", T0 + 3_600_000), topic="atm")
    later = wait_for(
        lambda: [
            a
            for a in space.consume("alerts", idle_s=2.0)["alerts"]
            if a["t1_transaction_id"] == "p2-0"
        ]
    )
    assert later[0]["customer_email"] == "robin@example.org"
    assert later[0]["customer_address"] == "1 New Street"


def test_a_customer_off_its_murmur2_partition_still_enriches(
    space: AppSpace, worker: WorkerProcess
) -> None:
    """A CDC connector or kcat (CRC32) may put a customer on another partition than
    Kafka's default partitioner would: the lookup must still find it."""
    customer = {"account_id": "a77", "first_name": "Ada", "last_name": "Byron"}
    elsewhere = (partition_for(b"a77", 4) + 1) % 4

    async def produce_there() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=space.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                space.topics["accounts"], orjson.dumps(customer), key=b"a77", partition=elsewhere
            )
        finally:
            await producer.stop()

    asyncio.run(produce_there())
    assert wait_for(lambda: worker.get("/accounts/a77")[1].get("customer") == customer)
    space.produce(pair("a77", "q1", T0 + 7_200_000), topic="atm")
    alerts = wait_for(
        lambda: [
            a for a in space.consume("alerts", idle_s=2.0)["alerts"] if a["account_id"] == "a77"
        ]
    )
    assert alerts[0]["customer_known"] is True
    assert alerts[0]["customer_name"] == "Ada Byron"


def test_webhook_retries_with_one_idempotency_key_and_dead_letters_what_never_lands(
    space: AppSpace, worker: WorkerProcess, hook: FlakyWebhook
) -> None:
    # Both on one partition: "doomed" comes after "a100" in event time too, or it would
    # be more than the hour's lateness behind its partition and refused as late.
    space.produce(
        pair("a100", "w", T0 + 7_200_000) + pair("doomed", "d", T0 + 7_300_000), topic="atm"
    )
    delivered = wait_for(lambda: [c for c in hook.delivered() if c["key"] == "a100"], timeout=60)
    # One notification: the case opened (it resolves an hour of event time later).
    assert len(delivered) == 1
    (case,) = delivered
    assert case["transition"] == "opened" and case["rule"] == "atm_impossible_travel"
    key = f"{case['case_id']}:1:opened"
    attempts = [r for r in hook.requests if r["key"] == key]
    assert [r["attempt"] for r in attempts] == [1, 2, 3]  # 503, 503, 200
    assert {r["alert"]["case_id"] for r in attempts} == {case["case_id"]}

    def notify_failures():
        dead = space.consume("dead", idle_s=2.0)["dead"]
        return [d for d in dead if d["reason"] == "notify_failed"]

    (dead,) = wait_for(notify_failures, timeout=60)
    assert dead["source_topic"] == space.topics["cases"]
    assert '"key":"doomed"' in dead["value"] and "after 4 attempt" in dead["message"]
    assert [r["attempt"] for r in hook.requests if r["alert"]["key"] == "doomed"] == [
        1,
        2,
        3,
        4,
    ]
