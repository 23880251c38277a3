"""Both ways records reach the handlers (``FRAUDAPP_DELIVERY``), on real Kafka.

``bulk`` hands fetched records to the handlers below faust's stream and acks them
through faust's consumer itself (:mod:`fraudapp.engine.bulkfeed`); ``faust`` takes each one
through faust's stream. Either way the alerts are the oracle's, bad records are
dead-lettered once, re-keyed records are handled on their session's partition, and,
once the worker is idle, the consumer group's committed offset of every partition it
reads is that partition's end: every record was acked, nothing left behind; and the
changelogs the worker writes are not fetched back into its consumer's buffer, where
they would hold up every fetch (:mod:`fraudapp.engine.changelogpause`).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from tests.integration.helpers import AppSpace, group_offsets, running, wait_for
from tests.integration.test_click_pipeline import check_alerts

MALFORMED = [b"not json", b"[1, 2]", b'{"click_id": 5}', b"\xff\xfe"]


def uncommitted(space: AppSpace) -> dict[str, int]:
    """Records per topic between the group's committed offsets and the ends."""
    committed, ends = group_offsets(space)
    behind: dict[str, int] = {}
    for tp, offset in committed.items():
        behind[tp.topic] = behind.get(tp.topic, 0) + ends[tp] - offset
    return behind


async def produce_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


@pytest.mark.parametrize("delivery", ["bulk", "faust"])
def test_every_record_handled_and_committed(kafka_broker, tmp_path: Path, delivery: str) -> None:
    space = AppSpace(
        kafka_broker.bootstrap,
        f"deliver-{delivery}",
        FRAUDAPP_DELIVERY=delivery,
        CLICK_ALLOWED_LATENESS_MS="3600000",
    )
    space.create_topics()
    clicks = generate_clicks(6_000, seed=31)
    expected = fraudulent_click_ids(clicks)
    arrived = arrival_order(clicks, max_delay_ms=20_000, seed=32)
    rng = random.Random(33)
    # A third unkeyed: they take the detour through the re-key topic.
    records = [(None if rng.random() < 0.33 else c["session_id"], c) for c in arrived]
    worker = space.worker(tmp_path / "w")
    with running(worker):
        space.produce(records)
        asyncio.run(produce_raw(space.bootstrap, space.topics["clicks"], MALFORMED))
        verdicts = space.consume("verdicts", until=len(arrived))["verdicts"]
        out = space.consume("alerts", "dead", idle_s=3.0)
        # faust commits every few seconds; wait for a commit after the last ack.
        behind = wait_for(
            lambda: (
                (b := uncommitted(space))
                and space.topics["clicks"] in b
                and not any(b.values())
                and b
            ),
            timeout=60.0,
        ) or uncommitted(space)
        status, metrics = worker.get("/metrics", timeout=5)
    # What the consumer fetched and nobody read (fraudapp.engine.fetchbuffer): never a
    # changelog of the worker's own tables (fraudapp.engine.changelogpause).
    assert status == 200 and "# TYPE fraudapp_fetched_unread_partitions gauge" in metrics
    unread = dict(
        re.findall(r'^fraudapp_fetched_unread_partitions\{topic="([^"]+)"\} (\S+)$', metrics, re.M)
    )
    assert not {t: n for t, n in unread.items() if t.endswith("-changelog")}, unread
    assert behind and not any(behind.values()), f"records not committed, per topic: {behind}"
    log = worker.log_path.read_text()
    assert ("handed over in bulk" in log) == (delivery == "bulk")
    # Each click judged once (a producer's duplicate gets a verdict marked so).
    assert Counter(v["click_id"] for v in verdicts if not v["duplicate"]) == Counter(
        {c["click_id"]: 1 for c in clicks}
    )
    check_alerts(out["alerts"], expected)
    assert sorted(d["reason"] for d in out["dead"]) == sorted(
        ["not_json", "not_object", "missing_field", "not_json"]
    ), out["dead"]
    # The re-key topic was read and committed too, not only the source, if anything
    # went through it (a lone worker re-keys inline, into partitions it owns, and
    # writes there only its watermark marker when it found records left unread).
    rekey = f"{space.topics['clicks']}-by-session"
    if asyncio.run(records_in(space.bootstrap, rekey)):
        assert rekey in behind, behind


async def records_in(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, this topic's partitions in it
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return sum(ends.values())
