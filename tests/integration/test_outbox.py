"""The outbox on a real Kafka broker with faust's own producer service: what the worker
relies on it for (see :mod:`fraudapp.engine.outbox`).

- records land on the partition Kafka's default partitioner gives their key, in the
  order they were queued, sent as batches rather than one request each;
- faust's producer flush (which faust runs before every offset commit) sends what is
  queued, however long the linger: the at-least-once half the outbox is responsible for;
- each delivered batch reports its base offset and size, which tables turn into their
  persisted changelog offset;
- a batch the broker refuses makes that flush raise, so no offset behind it is
  committed; so does a batch aiokafka would not take (``send_batch`` raised) in a
  send no commit awaited, and a refusal that comes after faust's own flush returned;
- the state tables' gathered writes reach RocksDB before any changelog record that
  follows them is handed to Kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError
from rocksdict import Options, Rdict

from fraudapp.cli.brokers import KafkaBroker
from fraudapp.core.partitioning import partition_for
from fraudapp.engine.kafkaio import read_topic
from fraudapp.engine.outbox import Outbox
from fraudapp.engine.statewrites import StateWrites

pytestmark = pytest.mark.integration


async def create_topic(bootstrap: str, partitions: int, **config: str) -> str:
    name = f"outbox-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()
    return name


class Producing:
    """faust's producer service of a faust app on the broker, started, with an outbox."""

    def __init__(self, bootstrap: str, linger_s: float) -> None:
        self.app = faust.App(f"outbox-test-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}")
        self.producer = self.app.producer
        self.outbox = Outbox(lambda: self.producer, linger_s)


@pytest.fixture
async def producing(kafka_broker: KafkaBroker) -> AsyncIterator[Producing]:
    setup = Producing(kafka_broker.bootstrap, linger_s=60.0)
    await setup.producer.start()
    try:
        yield setup
    finally:
        await setup.producer.stop()


async def test_records_keep_their_key_partition_and_order(
    kafka_broker: KafkaBroker, producing: Producing
) -> None:
    topic = await create_topic(kafka_broker.bootstrap, 4)
    sent = [(f"session-{n % 37}".encode(), f"{n:06d}".encode() * 20) for n in range(3_000)]
    for key, value in sent:
        await producing.outbox.send(topic, key, value)
    await producing.producer.flush()

    records = await read_topic(kafka_broker.bootstrap, topic)
    assert len(records) == len(sent)
    for record in records:
        assert record.partition == partition_for(record.key, 4)
    for partition in range(4):
        mine = [(k, v) for k, v in sent if partition_for(k, 4) == partition]
        got = [(r.key, r.value) for r in records if r.partition == partition]
        assert got == mine
    # Sent as batches: far fewer than one request per record.
    assert producing.outbox.counts["batches"] < len(sent) / 20


async def test_fausts_flush_sends_what_waits_for_its_linger(
    kafka_broker: KafkaBroker, producing: Producing
) -> None:
    topic = await create_topic(kafka_broker.bootstrap, 2)
    await producing.outbox.send(topic, b"k", b"waiting", partition=1)
    await asyncio.sleep(0.5)
    assert await read_topic(kafka_broker.bootstrap, topic) == []  # linger is 60 s

    await producing.producer.flush()  # what faust does before committing offsets

    records = await read_topic(kafka_broker.bootstrap, topic)
    assert [(r.partition, r.value) for r in records] == [(1, b"waiting")]
    assert producing.outbox.open == {} and producing.outbox.ready == []


async def test_delivered_batches_report_their_offsets(
    kafka_broker: KafkaBroker, producing: Producing
) -> None:
    topic = await create_topic(kafka_broker.bootstrap, 1)
    reported: list[tuple[int, int]] = []

    def on_sent(base: int, count: int) -> None:
        reported.append((base, count))

    for n in range(500):
        producing.outbox.add(topic, 0, b"key", b"x" * 200 + str(n).encode(), on_sent=on_sent)
    await producing.producer.flush()

    assert sum(count for _, count in reported) == 500
    assert len(reported) > 1  # 500 records of ~200 bytes fill more than one batch
    expected_base = 0
    for base, count in sorted(reported):
        assert base == expected_base
        expected_base += count
    records = await read_topic(kafka_broker.bootstrap, topic)
    assert records[-1].offset == expected_base - 1


async def test_a_refused_batch_makes_the_flush_raise(
    kafka_broker: KafkaBroker, producing: Producing
) -> None:
    topic = await create_topic(kafka_broker.bootstrap, 1, **{"max.message.bytes": "1024"})
    producing.outbox.add(topic, 0, b"key", b"y" * 8_000)
    with pytest.raises(ProducerSendError, match="outbox delivery failed"):
        await producing.producer.flush()
    # Raised once: the next flush, with nothing failed since, goes through.
    await producing.producer.flush()


async def test_a_batch_aiokafka_would_not_take_is_kept_and_fails_the_next_flush(
    kafka_broker: KafkaBroker, producing: Producing
) -> None:
    """A send that no commit awaits (the input caught up, so the outbox sends at once)
    meets ``send_batch`` raising, as on a metadata timeout. The batch must not vanish
    (sent again by the next send) and the next flush, before a commit, must raise:
    else that commit covers events whose records never left."""
    topic = await create_topic(kafka_broker.bootstrap, 1)
    outbox = producing.outbox
    aio = outbox._producer()
    send_batch = aio.send_batch
    calls: list[str] = []

    async def times_out_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("partition"))
        if len(calls) == 1:
            raise KafkaTimeoutError("metadata of the topic not available")
        return await send_batch(*args, **kwargs)

    aio.send_batch = times_out_once
    try:
        outbox.add(topic, 0, b"k", b"kept")
        outbox.send_soon()
        await asyncio.sleep(0.3)
        assert calls[:1] == [0], "the send was not tried"
        with pytest.raises(ProducerSendError, match="outbox delivery failed"):
            await producing.producer.flush()
    finally:
        aio.send_batch = send_batch
    records = await read_topic(kafka_broker.bootstrap, topic)
    assert [r.value for r in records] == [b"kept"]
    await producing.producer.flush()  # raised once: nothing failed since


async def test_a_refusal_answered_after_fausts_flush_still_fails_it(
    kafka_broker: KafkaBroker, producing: Producing
) -> None:
    """The broker's refusal of a batch can reach the outbox after faust's own flush
    has returned (aiokafka answers through a shielded future, a loop turn or more
    later): the flush must wait for every batch's answer, not for the callbacks."""
    topic = await create_topic(kafka_broker.bootstrap, 1, **{"max.message.bytes": "1024"})
    outbox = producing.outbox
    aio = outbox._producer()
    send_batch = aio.send_batch
    loop = asyncio.get_running_loop()

    async def answered_late(*args: Any, **kwargs: Any) -> Any:
        answer = await send_batch(*args, **kwargs)
        late: asyncio.Future[Any] = loop.create_future()

        def relay(done: asyncio.Future[Any]) -> None:
            error = done.exception()
            if error is None:
                loop.call_later(0.3, late.set_result, done.result())
            else:
                loop.call_later(0.3, late.set_exception, error)

        answer.add_done_callback(relay)
        return late

    aio.send_batch = answered_late
    try:
        outbox.add(topic, 0, b"key", b"y" * 8_000)
        with pytest.raises(ProducerSendError, match="outbox delivery failed"):
            await producing.producer.flush()
    finally:
        aio.send_batch = send_batch
    assert outbox.in_flight == {}


async def test_state_reaches_rocksdb_before_its_changelog_leaves(
    kafka_broker: KafkaBroker, producing: Producing, tmp_path: Path
) -> None:
    """As a state table under the bulk feed: each write gathered, then its changelog
    record queued. Whenever a batch is handed to aiokafka, RocksDB must already hold
    the state of every record queued so far (fraudapp.engine.statewrites)."""
    topic = await create_topic(kafka_broker.bootstrap, 1)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(tmp_path / "state"), options)
    writes = StateWrites()
    outbox = producing.outbox
    outbox.before_send = writes.flush
    aio = outbox._producer()
    send_batch = aio.send_batch
    in_rocksdb_at_send: list[tuple[bytes | None, int]] = []

    async def observed(*args: Any, **kwargs: Any) -> Any:
        in_rocksdb_at_send.append((db.get(b"account"), outbox.counts["records"]))
        return await send_batch(*args, **kwargs)

    aio.send_batch = observed
    try:
        writes.begin()
        for n in range(3_000):
            value = f"{n:06d}".encode() * 40  # ~240 B: 3 000 fill several batches
            writes.put(db, b"account", value)
            outbox.add(topic, 0, b"account", value)
            if n % 100 == 99:
                await asyncio.sleep(0)  # full batches go out while records keep coming
        await producing.producer.flush()
        writes.end()
    finally:
        aio.send_batch = send_batch
        db.close()
    assert len(in_rocksdb_at_send) > 1
    for state, queued in in_rocksdb_at_send:
        assert state == f"{queued - 1:06d}".encode() * 40
    assert len(await read_topic(kafka_broker.bootstrap, topic)) == 3_000
