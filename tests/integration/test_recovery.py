"""State comes back from the changelog when the disk is gone.

A worker's tables live in RocksDB on its data directory and in changelog topics on
the broker. A restart on the same directory reads RocksDB (``test_crash.py``); a
worker on a new machine has only the changelog. Here the first worker handles half a
stream, stops, and its data directory is deleted; a fresh worker with an empty one
must rebuild every table from the changelog: its keyed views answer as the first
worker's did, and the second half of the stream, whose bursts, stacked ads, rate
limits and ATM pairs reach back into the first half, gives the oracle's alerts.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from rocksdict import AccessType, Options, Rdict

from fraudapp.adnet import oracle
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.engine import kafkaio
from tests.integration.helpers import AppSpace, as_oracle_row, running, wait_until_idle

pytestmark = pytest.mark.integration


def keyed_views(worker: WorkerProcess, paths: list[str]) -> dict[str, Any]:
    """The views, without what names the worker that answered."""
    out = {}
    for path in paths:
        status, body = worker.get(path, timeout=20)
        assert status == 200, (path, body)
        body.pop("served_by", None)
        out[path] = body
    return out


def test_fresh_worker_rebuilds_state_from_the_changelog(kafka_broker, tmp_path: Path) -> None:
    space = AppSpace(kafka_broker.bootstrap, "recover")
    space.create_topics()
    clicks = arrival_order(generate_clicks(6_000, seed=81), max_delay_ms=5_000, seed=82)
    txns = generate_txns(1_500, seed=83)
    half_c, half_t = len(clicks) // 2, len(txns) // 2
    sessions = sorted({c["session_id"] for c in clicks[half_c - 300 : half_c]})[:40]
    accounts = sorted({t["account_id"] for t in txns[half_t - 200 : half_t]})[:40]
    paths = [f"/sessions/{s}" for s in sessions] + [f"/accounts/{a}" for a in accounts]

    first_dir, fresh_dir = tmp_path / "first", tmp_path / "fresh"
    with running(space.worker(first_dir)) as first:
        space.produce([(t["account_id"], t) for t in txns[:half_t]], topic="atm")
        space.produce([(c["session_id"], c) for c in clicks[:half_c]])
        wait_until_idle(first)
        before = keyed_views(first, paths)
    shutil.rmtree(first_dir)  # the disk is gone: only the changelog is left

    started = time.monotonic()
    with running(space.worker(fresh_dir), timeout=180) as fresh:
        ready_s = time.monotonic() - started
        assert keyed_views(fresh, paths) == before
        space.produce([(t["account_id"], t) for t in txns[half_t:]], topic="atm")
        space.produce([(c["session_id"], c) for c in clicks[half_c:]])
        wait_until_idle(fresh)
    out = space.consume("alerts", "verdicts", "dead", idle_s=4.0)

    assert out["dead"] == []
    assert {v["click_id"] for v in out["verdicts"]} == {c["click_id"] for c in clicks}
    found: dict[str, set[Any]] = {}
    for alert in {a["alert_id"]: a for a in out["alerts"]}.values():
        if alert["rule"] == "atm_impossible_travel":
            key: Any = (alert["account_id"], alert["t1_transaction_id"], alert["t2_transaction_id"])
        else:
            key = alert.get("click_id")
        found.setdefault(alert["rule"], set()).add(key)
    assert found["click_burst"] == fraudulent_click_ids(clicks)
    assert found["stacked_ads"] == oracle.stacked_click_ids(clicks)
    assert found["rate_limit"] == oracle.over_limit_click_ids(clicks)
    assert found["atm_impossible_travel"] == set(expected_pairs([as_oracle_row(t) for t in txns]))
    print(f"\nfresh worker ready (tables rebuilt from the changelog) in {ready_s:.1f} s")


# -- the changelog restored in bulk ------------------------------------------------------

OFFSET_KEY = b"__faust\0offset__"  # faust's key for a table partition's persisted offset


def _changelog(app_id: str, table: str, partitions: int) -> list[Any]:
    return [TopicPartition(f"{app_id}-{table}-changelog", p) for p in range(partitions)]


async def _write(bootstrap: str, tps: list[Any], keys: range, value: bytes | None) -> None:
    """``value`` (None: a tombstone) under each of ``keys``, spread over ``tps``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(tp.topic, value, key=b"k%08d" % i, partition=tp.partition)
            for i in keys
            for tp in [tps[i % len(tps)]]
        ]
        for future in sent:
            await future
    finally:
        await producer.stop()


async def _truncate(bootstrap: str, tp: Any, before: int) -> None:
    """Delete the partition's records below ``before`` (its log start moves there), as
    retention does on a changelog that is also ``delete``-policied (Kafka refuses to
    delete records of a topic that is only compacted)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topic = ConfigResource(
            ConfigResourceType.TOPIC, tp.topic, configs={"cleanup.policy": "compact,delete"}
        )
        await admin.alter_configs([topic])
        await admin.delete_records({tp: RecordsToDelete(before)}, timeout_ms=30_000)
    finally:
        await admin.close()


def _database(datadir: Path, table: str, partition: int) -> dict[bytes, bytes]:
    path = datadir / "state" / "v1" / "tables" / f"{table}-{partition}.db"
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return dict(db.items())
    finally:
        db.close()


def _as_the_log_says(records: list[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    """A partition's state by its changelog: the last value of each key, a tombstone
    deleting it."""
    state: dict[bytes, bytes] = {}
    for key, value in records:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def test_bulk_restore_resumes_deletes_and_starts_where_the_log_starts(
    kafka_broker, tmp_path: Path
) -> None:
    """A state table's changelog, written here directly (40 000 records), restored by
    a fresh worker, which stops and is started again on its data directory after
    20 000 more records and 8 000 tombstones: it goes on from its persisted offsets.
    One partition's log is truncated in between (a compacted or retention-trimmed
    changelog starts past offset 0); a second fresh worker starts there. Every
    database ends as its changelog says, with the last offset persisted."""
    space = AppSpace(kafka_broker.bootstrap, "bulk-restore")
    space.create_topics()
    table = "click-sessions"
    tps = _changelog(space.name, table, space.partitions)
    # Compacted, as faust declares its changelogs (it finds this one there).
    asyncio.run(
        kafkaio.ensure_topics(space.bootstrap, [tps[0].topic], space.partitions, compacted=True)
    )
    log: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(len(tps))}

    def write(keys: range, value: bytes | None) -> None:
        asyncio.run(_write(space.bootstrap, tps, keys, value))
        for i in keys:
            log[i % len(tps)].append((b"k%08d" % i, value))

    write(range(40_000), b"first")
    resumed = tmp_path / "resumed"
    with running(space.worker(resumed)):
        pass
    for partition in range(len(tps)):
        got = _database(resumed, table, partition)
        assert got.pop(OFFSET_KEY) == b"9999", partition
        assert got == _as_the_log_says(log[partition]), partition

    write(range(20_000, 40_000), b"second")
    write(range(0, 40_000, 5), None)
    asyncio.run(_truncate(space.bootstrap, tps[0], 5_000))
    with running(space.worker(resumed)):
        pass
    fresh = tmp_path / "fresh"
    with running(space.worker(fresh)):
        pass

    for partition in range(len(tps)):
        last = str(len(log[partition]) - 1).encode()
        got = _database(resumed, table, partition)
        assert got.pop(OFFSET_KEY) == last, partition
        assert got == _as_the_log_says(log[partition]), f"resumed, partition {partition}"
        got = _database(fresh, table, partition)
        assert got.pop(OFFSET_KEY) == last, partition
        kept = log[partition][5_000:] if partition == 0 else log[partition]
        assert got == _as_the_log_says(kept), f"fresh, partition {partition}"
