"""Producing with kcat, the librdkafka command-line client, as many shops feed Kafka.

Why not aiokafka (``AppSpace.produce``): aiokafka partitions like Kafka's Java client,
murmur2 of the key, so the records land where fraudapp itself would put them.
librdkafka's default partitioner is ``consistent_random``: CRC32 of the key, and a
random partition for a record without a key. A stream produced by kcat (or any
librdkafka-based producer: confluent-kafka-python, rdkafka, Vector, Fluent Bit ...)
therefore arrives mostly on other partitions than murmur2 would choose, and records
without a key are spread at random: what a fraud detector must take as it comes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudapp.engine import kafkaio

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def require_kcat() -> str:
    """kcat's path; skips the calling test when it is not installed."""
    if KCAT is None:
        pytest.skip("kcat is not installed (Debian: apt-get install kcat; .ci/run installs it)")
    return KCAT


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[str | None, dict[str, Any]]],
    *,
    partitioner: str | None = None,
    timeout_s: float = 300.0,
) -> int:
    """Produce (key, JSON value) records with kcat, in order; returns how many.

    Either every record has a key (sent as ``key<TAB>json`` lines with ``-K '\\t'``)
    or none has (plain JSON lines). ``partitioner`` None keeps librdkafka's default
    (``consistent_random``); ``murmur2_random`` would match Java's. Fails the test
    when kcat does not exit cleanly.
    """
    kcat = require_kcat()
    before = asyncio.run(_records_in(bootstrap, topic))
    rows = list(records)
    keyed = {key is not None for key, _ in rows}
    assert len(keyed) <= 1, "kcat takes all records keyed or all unkeyed, not a mix"
    lines = []
    for key, value in rows:
        body = orjson.dumps(value)  # compact: no tab, no newline
        assert b"\t" not in body and b"\n" not in body
        if key is not None:
            assert "\t" not in key and "\n" not in key, key
            lines.append(key.encode("utf-8") + b"\t" + body)
        else:
            lines.append(body)
    with tempfile.TemporaryDirectory(prefix="kcat-") as tmp:
        path = Path(tmp) / "records.txt"
        path.write_bytes(b"\n".join(lines) + b"\n")
        command = [kcat, "-P", "-b", bootstrap, "-t", topic, "-l", str(path)]
        if keyed == {True}:
            command[2:2] = ["-K", "\t"]
        if partitioner is not None:
            command += ["-X", f"partitioner={partitioner}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"kcat exited with {done.returncode}: {done.stderr.strip()}"
    landed = asyncio.run(_records_in(bootstrap, topic)) - before
    assert landed == len(rows), f"kcat sent {len(rows)} records, {landed} landed: {done.stderr}"
    return len(rows)


async def _records_in(bootstrap: str, topic: str) -> int:
    """The sum of the topic's end offsets: how many records were ever written to it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        count = (await kafkaio.partition_counts(bootstrap, [topic])).get(topic)
        assert count, f"no topic {topic} on {bootstrap}"
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(count)])
        return sum(ends.values())
    finally:
        await consumer.stop()
