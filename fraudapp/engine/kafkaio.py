"""Small Kafka chores shared by the CLI, the demo and the tests: topics, JSON in and out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

if TYPE_CHECKING:
    from fraudapp.core.settings import Settings


def bootstrap_of(broker_url: str) -> str:
    """``kafka://host:port;host2:port`` (faust's form) to aiokafka's ``host:port,…``."""
    hosts = broker_url.split("://", 1)[-1]
    return ",".join(h.strip() for h in hosts.replace(";", ",").split(",") if h.strip())


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, *, compacted: bool = False
) -> list[str]:
    """Create the topics that are missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        for name in wanted:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=1,
                            topic_configs={"cleanup.policy": "compact"} if compacted else {},
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    return created


async def create_topics(bootstrap: str, settings: Settings) -> list[str]:
    """All of fraudapp's input and output topics, reference data ones compacted."""
    topics = settings.topics
    created = await ensure_topics(bootstrap, topics.external(), settings.partitions)
    created += await ensure_topics(
        bootstrap, topics.compacted(), settings.partitions, compacted=True
    )
    return created


async def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """How many partitions each existing topic of ``names`` has (missing ones left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(dict.fromkeys(names)))
    finally:
        await admin.close()
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in described
        if topic.get("error_code", 0) == 0 and topic["partitions"]
    }


async def produce_json(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[str | None, dict[str, Any]] | tuple[str | None, dict[str, Any], int]],
    *,
    rate_per_s: float | None = None,
) -> int:
    """Send (key, value[, record timestamp ms]) as JSON, Kafka's default partitioner."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for key, value, *stamp in records:
            await producer.send(
                topic,
                orjson.dumps(value),
                key=None if key is None else key.encode(),
                timestamp_ms=stamp[0] if stamp else None,
            )
            sent += 1
            if rate_per_s:
                ahead = sent / rate_per_s - (loop.time() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def consume_json(
    bootstrap: str,
    topics: Iterable[str],
    *,
    idle_s: float = 3.0,
    until: int | None = None,
    timeout_s: float = 300.0,
    isolation_level: str = "read_uncommitted",
    stall_s: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Read topics from the start until ``until`` records arrived (or ``idle_s`` of silence
    after the first), decoded as JSON, per topic. With ``until``, ``stall_s`` gives up
    after that much silence too (a count that will never come, e.g. a failing test's).
    ``read_committed`` skips records of aborted transactions (what a consumer of an
    exactly-once worker uses)."""
    names = list(topics)
    consumer = AIOKafkaConsumer(
        *names,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level=isolation_level,
    )
    await consumer.start()
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = loop.time()
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, messages in batch.items():
                out[tp.topic].extend(orjson.loads(m.value) for m in messages)
                last = loop.time()
            total = sum(len(v) for v in out.values())
            if until is not None and total >= until:
                break
            if until is not None and stall_s is not None and loop.time() - last > stall_s:
                break
            if until is None and total and loop.time() - last > idle_s:
                break
    finally:
        await consumer.stop()
    return out


async def read_topic(
    bootstrap: str,
    topic: str,
    timeout_s: float = 60.0,
    *,
    start: int | None = None,
    end: int | None = None,
    partitions: Iterable[int] | None = None,
) -> list[Any]:
    """The records of ``topic`` from the start (or offset ``start``) to its end offsets
    as they were when asked (or ``end``, exclusive), in every partition or those
    given: a compacted topic's current state, or an offset range to replay; read
    outside any consumer group."""
    count = (await partition_counts(bootstrap, [topic])).get(topic, 0)
    if not count:
        return []
    chosen = range(count) if partitions is None else [p for p in partitions if 0 <= p < count]
    tps = [TopicPartition(topic, p) for p in chosen]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        firsts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if start is not None:
                consumer.seek(tp, min(max(start, firsts[tp]), ends[tp]))
            if end is not None:
                ends[tp] = max(firsts[tp], min(end, ends[tp]))
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s} s")
            batch = await consumer.getmany(timeout_ms=200)
            for tp, messages in batch.items():
                out.extend(m for m in messages if m.offset < ends[tp])
        return out
    finally:
        await consumer.stop()
