"""A worker SIGKILLed in the middle of a stream loses nothing.

At-least-once: offsets are committed only after a record's outputs (and its state's
changelog) are produced, so a worker killed without warning re-reads what it had
not committed, and a record it had half-handled is handled again. Alert ids are
deterministic, so a consumer that keeps the ids it has seen sees each alert once;
the test does exactly that and compares with the oracles, and reports how many raw
duplicates the restart produced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudapp.adnet import oracle
from fraudapp.atm.detect import TravelRule
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.models import txn_from_dict
from fraudapp.atm.oracle import expected_pairs
from fraudapp.clicks.detect import BurstRule
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.models import click_from_dict
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.alerts import alert_id
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.timeparse import parse_event_time
from tests.integration.helpers import AppSpace, as_oracle_row, metric, running, wait_until_idle

pytestmark = pytest.mark.integration

CLICKS = 30_000
TXNS = 6_000


def run_with_a_kill(
    space: AppSpace, datadir: Path, kill_after: int, committed: bool = False
) -> dict[str, Any]:
    clicks = generate_clicks(CLICKS, seed=61)
    arrived = arrival_order(clicks, max_delay_ms=20_000, seed=62)
    txns = generate_txns(TXNS, seed=63)
    victim = space.worker(datadir)
    with running(victim):
        space.produce([(t["account_id"], t) for t in txns], topic="atm")
        space.produce([(c["session_id"], c) for c in arrived])
        deadline = time.monotonic() + 300
        while (
            metric(victim, "fraudapp_verdicts_total") or 0.0
        ) < kill_after and time.monotonic() < deadline:
            time.sleep(0.2)
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)  # mid-stream, no goodbye
        victim.proc.wait(timeout=10)
    started = time.monotonic()
    with running(space.worker(datadir), timeout=180) as survivor:
        ready_s = time.monotonic() - started
        wait_until_idle(survivor)
        out = space.consume(
            "verdicts",
            "alerts",
            "dead",
            idle_s=5.0,
            timeout_s=600,
            isolation_level="read_committed" if committed else "read_uncommitted",
        )
    return {"clicks": clicks, "txns": txns, "ready_s": ready_s, **out}


def check_against_oracles(run: dict[str, Any]) -> int:
    """Deduplicated alerts equal the oracles; returns the raw duplicates."""
    clicks, alerts = run["clicks"], run["alerts"]
    assert run["dead"] == []
    ids = Counter(a["alert_id"] for a in alerts)
    duplicates = sum(n - 1 for n in ids.values())
    unique = list({a["alert_id"]: a for a in alerts}.values())
    by_rule: dict[str, set[Any]] = {}
    for alert in unique:
        if alert["rule"] == "atm_impossible_travel":
            key: Any = (alert["account_id"], alert["t1_transaction_id"], alert["t2_transaction_id"])
        else:
            key = alert.get("click_id")
        by_rule.setdefault(alert["rule"], set()).add(key)
    judged = {v["click_id"] for v in run["verdicts"]}
    assert judged == {c["click_id"] for c in clicks}, "clicks without a verdict"
    assert by_rule["click_burst"] == fraudulent_click_ids(clicks)
    assert by_rule["stacked_ads"] == oracle.stacked_click_ids(clicks)
    assert by_rule["rate_limit"] == oracle.over_limit_click_ids(clicks)
    pairs = expected_pairs([as_oracle_row(t) for t in run["txns"]])
    assert by_rule["atm_impossible_travel"] == set(pairs)
    return duplicates


def test_sigkill_mid_stream_loses_no_alert(kafka_broker, tmp_path: Path) -> None:
    space = AppSpace(kafka_broker.bootstrap, "crash")
    space.create_topics()
    run = run_with_a_kill(space, tmp_path / "w", kill_after=CLICKS // 3)
    duplicates = check_against_oracles(run)
    raw_verdicts = len(run["verdicts"])
    print(
        f"\nSIGKILL after ~{CLICKS // 3} of {CLICKS} verdicts (+{TXNS} ATM): restarted worker"
        f" ready in {run['ready_s']:.1f} s; {len(run['alerts'])} alerts, {duplicates} raw"
        f" duplicates; {raw_verdicts} verdicts for {CLICKS} clicks"
    )


# -- a replay, made on purpose ----------------------------------------------------------

#: Records read again are taken from the end of each partition, as far back as their
#: event times stay this close to the partition's latest (the click rule keeps state
#: 40 s behind its watermark; a record older than its state cannot be judged again).
TAIL_MS = 20_000


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(tps)
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def _tail_starts(events: list[dict[str, Any]], key: str, time_of: Any) -> dict[int, int]:
    """Per partition, the first offset of the tail to read again (see TAIL_MS)."""
    times: dict[int, list[int]] = {}
    for event in events:
        times.setdefault(partition_for(event[key].encode("utf-8"), 4), []).append(time_of(event))
    starts = {}
    for p, ts in times.items():
        start = len(ts)
        while start > 0 and ts[start - 1] >= max(ts) - TAIL_MS:
            start -= 1
        starts[p] = start
    return starts


async def _rewind(bootstrap: str, group: str, topic: str, starts: dict[int, int]) -> None:
    """Commit ``starts`` for ``topic`` in the (idle) group: where a worker killed
    before committing those records would restart from."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in starts])
        await consumer.commit({TopicPartition(topic, p): o for p, o in starts.items()})
    finally:
        await consumer.stop()


async def _read_from(
    bootstrap: str, topic: str, starts: dict[int, int], idle_s: float = 5.0
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in starts])
        for p, offset in starts.items():
            consumer.seek(TopicPartition(topic, p), offset)
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                out.extend(orjson.loads(m.value) for m in messages)
                last = time.monotonic() if messages else last
    finally:
        await consumer.stop()
    return out


def _made_by_tail(rule: Any, events: list[Any], key: Any, starts: dict[int, int], ids: Any) -> set:
    """Run the pure rule over each partition in produce order (what the worker saw) and
    collect the findings of the records at or after ``starts``: what the replay must
    send again."""
    partitions: dict[int, Any] = {}
    seen: dict[int, int] = {}
    expected: set = set()
    for event in events:
        p = partition_for(key(event).encode("utf-8"), 4)
        offset = seen[p] = seen.get(p, -1) + 1
        result = partitions.setdefault(p, KeyedPartition(rule, {})).process(event).result
        assert result is not None
        if offset >= starts[p]:
            expected |= ids(result)
    return expected


def test_records_read_again_resend_their_alerts(kafka_broker, tmp_path: Path) -> None:
    """The state of the records is in the tables, their offsets not committed: exactly
    where a SIGKILL can leave a worker, made on purpose so it is checked every run.
    Every record read again must send again the alerts it made (same ids), be judged
    again (marked duplicate), and invent nothing."""
    space = AppSpace(kafka_broker.bootstrap, "replay")
    space.create_topics()
    generated = generate_clicks(8_000, seed=71)
    # Sessions thin out towards the generator's end: stop where traffic is still dense,
    # so the tail read again is a few hundred clicks.
    dense = [c for c in generated if c["timestamp"] < generated[0]["timestamp"] + 50_000]
    end = max(c["timestamp"] for c in dense)
    # A click farm at the very end (one device, many sessions, three ads, 50 ms apart):
    # stacked ads and over the rate limit, all of it in the tail read again.
    farm = [
        {
            "click_id": f"farm-{i}",
            "session_id": f"farm-session-{i}",
            "url": f"https://ads.example/{'abc'[i % 3]}",
            "timestamp": end + 50 * i,
            "ip": "10.66.0.1",
            "ad_id": "abc"[i % 3],
            "campaign_id": "cmp-farm",
            "device_id": "dev-farm",
        }
        for i in range(40)
    ]
    clicks = arrival_order(dense, max_delay_ms=5_000, seed=72) + farm
    txns = generate_txns(2_000, seed=73)
    datadir = tmp_path / "w"
    with running(space.worker(datadir)) as worker:
        space.produce([(t["account_id"], t) for t in txns], topic="atm")
        space.produce([(c["session_id"], c) for c in clicks])
        wait_until_idle(worker)
    first = space.consume("alerts", idle_s=3.0)["alerts"]
    out_starts = {
        name: asyncio.run(_end_offsets(space.bootstrap, space.topics[name]))
        for name in ("alerts", "verdicts")
    }
    click_starts = _tail_starts(clicks, "session_id", lambda c: c["timestamp"])
    txn_starts = _tail_starts(txns, "account_id", lambda t: parse_event_time(t["timestamp"]))
    asyncio.run(_rewind(space.bootstrap, space.name, space.topics["clicks"], click_starts))
    asyncio.run(_rewind(space.bootstrap, space.name, space.topics["atm"], txn_starts))
    click_ends = asyncio.run(_end_offsets(space.bootstrap, space.topics["clicks"]))
    read_again = sum(click_ends[p] - start for p, start in click_starts.items())
    with running(space.worker(datadir)) as worker:
        wait_until_idle(worker)
    again = asyncio.run(_read_from(space.bootstrap, space.topics["alerts"], out_starts["alerts"]))
    verdicts = asyncio.run(
        _read_from(space.bootstrap, space.topics["verdicts"], out_starts["verdicts"])
    )

    # Judged again: every click of the tail, marked as a repeat.
    assert all(start > 0 for start in click_starts.values())
    assert len(verdicts) == read_again > 100
    assert all(v["duplicate"] for v in verdicts)
    # Nothing invented by the exact rules: every such alert sent again was sent the
    # first time. (The statistics, location and heavy hitters, judge a repeat on the
    # counts as they are now, so they may find more than the first pass did.)
    first_ids = {a["alert_id"] for a in first}
    exact = {
        a["alert_id"] for a in again if a["rule"] not in ("suspicious_location", "heavy_hitter")
    }
    assert exact <= first_ids
    by_rule: dict[str, set] = {}
    for alert in again:
        by_rule.setdefault(alert["rule"], set()).add(alert["alert_id"])
    # Exactly what each record read again had made (click bursts), or at least that
    # (ATM pairs: every pair a replayed transaction is part of).
    parsed = [click_from_dict(c, "") for c in clicks]
    bursts = _made_by_tail(
        BurstRule(),
        parsed,
        lambda c: c.session_id,
        click_starts,
        lambda r: {alert_id("click_burst", f.session_id, f.url, f.click_id) for f in r.findings},
    )
    assert bursts and by_rule["click_burst"] == bursts
    pairs = _made_by_tail(
        TravelRule(),
        [txn_from_dict(t) for t in txns],
        lambda t: t.account_id,
        txn_starts,
        lambda r: {
            alert_id("atm_impossible_travel", p.account_id, p.t1[1], p.t2[1]) for p in r.pairs
        },
    )
    assert pairs and pairs <= by_rule["atm_impossible_travel"]
    # The click stages after the session stage were reached again and re-sent theirs.
    # Every finding on a farm click was made by a farm click (the farm is its own
    # source), and they were all read again: all of them must come again.
    for rule in ("stacked_ads", "rate_limit"):
        on_farm = {
            a["alert_id"]
            for a in first
            if a["rule"] == rule and str(a.get("click_id")).startswith("farm-")
        }
        assert on_farm and by_rule[rule] >= on_farm, rule
    counts = {rule: len(ids) for rule, ids in sorted(by_rule.items())}
    print(
        f"\nread again: {read_again} clicks and the last {TAIL_MS // 1000} s of transactions;"
        f" alerts sent again: {counts}"
    )
