"""Changelog restore rate: a worker with an empty data directory rebuilding its state
tables from changelogs of N records, beside a bare aiokafka consumer reading the same
records and faust's own per-record restore, in one run.

The changelogs are filled directly (unique keys, 120-byte values, spread evenly over
every state table's changelog partitions), so N can be a million without handling a
million clicks first. Ready = /health 200 (recovery done, partitions assigned); the
time a worker takes to become ready with nothing to restore is measured in the same
run and subtracted, so the rate is the restore's own. One worker holds every
partition (no standby replicas to apply).

    .venv/bin/python bench/restore.py --records 600000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rocksdict import AccessType, Options, Rdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_section  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from tests.integration.helpers import AppSpace, running  # noqa: E402

VALUE_BYTES = 120
#: faust's key for a table partition's persisted changelog offset.
OFFSET_KEY = b"__faust\0offset__"


async def changelog_partitions(bootstrap: str, app_id: str) -> list[TopicPartition]:
    """The state tables' changelog partitions of ``app_id`` (global tables read their
    source topics, which are not named ``-changelog``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
        names = sorted(t for t in topics if t.startswith(app_id) and t.endswith("-changelog"))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in sorted(described, key=lambda t: t["topic"])
        for partition in sorted(topic["partitions"], key=lambda p: p["partition"])
    ]


async def fill(bootstrap: str, tps: list[TopicPartition], records: int) -> float:
    """Write ``records`` changelog records over ``tps``; returns the seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    started = time.monotonic()
    value = os.urandom(VALUE_BYTES)
    try:
        pending = []
        for i in range(records):
            tp = tps[i % len(tps)]
            pending.append(
                await producer.send(tp.topic, value, key=b"k%09d" % i, partition=tp.partition)
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def bare_read(bootstrap: str, tps: list[TopicPartition]) -> tuple[int, float]:
    """A bare aiokafka consumer reading every record of ``tps``: (records, seconds)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.monotonic()
        read = 0
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for tp, messages in batch.items():
                read += len(messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return read, time.monotonic() - started
    finally:
        await consumer.stop()


def restored(datadir: Path, app_id: str, tps: list[TopicPartition]) -> tuple[int, int]:
    """(keys, partitions with a persisted changelog offset) in the
    stopped worker's databases of ``tps``, read back with rocksdict."""
    keys = at_end = 0
    for tp in tps:
        table = tp.topic.removeprefix(app_id + "-").removesuffix("-changelog")
        path = datadir / "state" / "v1" / "tables" / f"{table}-{tp.partition}.db"
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key in db.keys():  # noqa: SIM118 - an Rdict has no __iter__
                if key == OFFSET_KEY:
                    at_end += 1
                else:
                    keys += 1
        finally:
            db.close()
    return keys, at_end


def time_to_ready(space: AppSpace, datadir: Path, **env: str) -> float:
    started = time.monotonic()
    worker = space.worker(datadir, **env)
    worker.log_level = "warn"
    with running(worker, timeout=3600):
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faust-runs", type=int, default=1, help="faust's own restore (slow)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-restore-"))
    with KafkaBroker() as broker:
        empty = AppSpace(broker.bootstrap, "bench-restore-empty")
        empty.create_topics()
        space = AppSpace(broker.bootstrap, "bench-restore")
        space.create_topics()
        # A first start declares the changelog topics (and warms the JVM and caches).
        time_to_ready(space, workdir / "declare")
        tps = asyncio.run(changelog_partitions(broker.bootstrap, space.name))
        fill_s = asyncio.run(fill(broker.bootstrap, tps, args.records))
        print(f"{args.records:,} records over {len(tps)} partitions in {fill_s:.1f} s", flush=True)

        bare, start, bulk, faust = [], [], [], []
        for run in range(args.runs):
            read, seconds = asyncio.run(bare_read(broker.bootstrap, tps))
            assert read == args.records, (read, args.records)
            bare.append(read / seconds)
            start.append(time_to_ready(empty, workdir / f"empty-{run}"))
            ready = time_to_ready(space, workdir / f"bulk-{run}")
            bulk.append(args.records / max(ready - start[-1], 1e-3))
            keys, with_offset = restored(workdir / f"bulk-{run}", space.name, tps)
            assert keys == args.records, f"restored {keys:,} keys of {args.records:,}"
            assert with_offset == len(tps), f"{with_offset} of {len(tps)} offsets persisted"
            print(
                f"run {run + 1}: bare {bare[-1]:,.0f}/s; ready with nothing to restore"
                f" {start[-1]:.1f} s, with {args.records:,} records {ready:.1f} s"
                f" -> {bulk[-1]:,.0f}/s",
                flush=True,
            )
        for run in range(args.faust_runs):
            ready = time_to_ready(space, workdir / f"faust-{run}", FRAUDAPP_DELIVERY="faust")
            faust.append(args.records / max(ready - statistics.median(start), 1e-3))
            keys, _ = restored(workdir / f"faust-{run}", space.name, tps)
            assert keys == args.records, f"faust restored {keys:,} keys of {args.records:,}"
            print(f"faust's restore: ready in {ready:.1f} s -> {faust[-1]:,.0f}/s", flush=True)

    def row(name: str, values: list[float]) -> str:
        base = statistics.median(bare)
        median = statistics.median(values)
        return (
            f"| {name} | {median:,.0f} | {min(values):,.0f}–{max(values):,.0f}"
            f" | {median / base:.2f}x |"
        )

    rows = [
        "| reader | changelog records/s (median) | min–max | vs. bare consumer |",
        "|---|---|---|---|",
        row("bare aiokafka consumer (reads only)", bare),
        row("worker, bulk restore (FRAUDAPP_DELIVERY=bulk, the default)", bulk),
    ]
    if faust:
        rows.append(row("worker, faust's per-record restore (FRAUDAPP_DELIVERY=faust)", faust))
    section = "\n".join(
        [
            "## Changelog restore rate (`bench/restore.py"
            f" --records {args.records} --runs {args.runs} --faust-runs {args.faust_runs}`)",
            "",
            f"{args.records:,} changelog records (unique keys, {VALUE_BYTES}-byte values) over"
            f" the {len(tps)} partitions of the state tables' changelogs, written directly;"
            " one worker with an empty data directory restores them all (no standbys), on"
            " embedded Apache Kafka. A worker's rate = records / (seconds to ready - seconds"
            " to ready with nothing to restore, measured in the same round,"
            f" median {statistics.median(start):.1f} s). Each restore is checked: every key"
            " is in the worker's RocksDB databases afterwards, read back with rocksdict.",
            "",
            *rows,
        ]
    )
    print(section)
    write_section("restore", section, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
