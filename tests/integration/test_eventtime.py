"""Detection is exact in event time, however the records come.

The product's promise: what fraudapp finds depends on the events' own times only,
not on the order they arrive in, on the producer's partitioner (Java's murmur2,
librdkafka's CRC32 default as kcat uses it, or no key at all), on how large a
backlog a worker starts on, on how many workers share it, or on a worker being
SIGKILLed and restarted. Each test here puts a real worker (or two) on a real
Apache Kafka broker in one of those situations and compares what comes out with the
brute-force oracles: click bursts (fraudapp.clicks.oracle), stacked ads and the
rate limit (fraudapp.adnet.oracle), ATM pairs (fraudapp.atm.oracle). Alerts are
deduplicated by alert_id (at-least-once: a restart may send some twice). Besides
the alerts: no click may be refused as a ``late_event`` dead letter, every click
gets a verdict, and no verdict may list a check under ``skipped`` (a check skipped
because a stage's watermark ran ahead of the click is a finding silently lost).

Each failure message carries the measured figures (late dead letters, alerts missing
and extra per check, verdicts with a skipped check per check), and each test prints
them, so a run says what broke and by how much.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from fraudapp.adnet import oracle
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.engine import kafkaio
from tests.integration import kcat
from tests.integration.helpers import (
    AppSpace,
    as_oracle_row,
    group_offsets,
    metric,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration

Records = dict[str, list[dict[str, Any]]]

#: The checks whose alerts must equal an oracle, click for click.
EXACT = ("click_burst", "stacked_ads", "rate_limit")


def oracles(clicks: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {
        "click_burst": fraudulent_click_ids(clicks),
        "stacked_ads": oracle.stacked_click_ids(clicks),
        "rate_limit": oracle.over_limit_click_ids(clicks),
    }


def measure(clicks: list[dict[str, Any]], out: Records) -> dict[str, Any]:
    """What came out against what should have: the figures a failure reports."""
    unique = {a["alert_id"]: a for a in out["alerts"]}.values()
    found: dict[str, set[str]] = {rule: set() for rule in EXACT}
    for alert in unique:
        if alert["rule"] in found:
            found[alert["rule"]].add(alert["click_id"])
    want = oracles(clicks)
    skipped: Counter[str] = Counter()
    for verdict in out["verdicts"]:
        skipped.update((verdict.get("skipped") or {}).keys())
    judged = {v["click_id"] for v in out["verdicts"]}
    return {
        "clicks": len(clicks),
        "verdicts": len(out["verdicts"]),
        "unjudged": len({c["click_id"] for c in clicks} - judged),
        "dead": dict(Counter(d["reason"] for d in out["dead"])),
        "expected": {rule: len(want[rule]) for rule in EXACT},
        "missing": {rule: len(want[rule] - found[rule]) for rule in EXACT},
        "extra": {rule: len(found[rule] - want[rule]) for rule in EXACT},
        "skipped": dict(sorted(skipped.items())),
        "verdicts_with_skipped": sum(1 for v in out["verdicts"] if v.get("skipped")),
        "raw_alerts": len(out["alerts"]),
        "unique_alerts": len(unique),
    }


def problems(figures: dict[str, Any]) -> list[str]:
    """Every way the run broke the promise, each with its count."""
    found = []
    if figures["dead"]:
        late = figures["dead"].get("late_event", 0)
        found.append(f"{late} clicks dead-lettered as late_event (all dead: {figures['dead']})")
    if figures["unjudged"]:
        found.append(f"{figures['unjudged']} of {figures['clicks']} clicks got no verdict")
    for rule in EXACT:
        missing, extra = figures["missing"][rule], figures["extra"][rule]
        if missing or extra:
            found.append(
                f"{rule}: {missing} of {figures['expected'][rule]} alerted clicks missing,"
                f" {extra} extra"
            )
    if figures["verdicts_with_skipped"]:
        found.append(
            f"{figures['verdicts_with_skipped']} verdicts with a skipped check"
            f" (per check: {figures['skipped']})"
        )
    return found


def assert_exact(label: str, clicks: list[dict[str, Any]], out: Records) -> None:
    __tracebackhide__ = True  # the message says it all; the records would drown it
    figures = measure(clicks, out)
    print(f"\n{label}: {figures}")
    broken = problems(figures)
    assert not broken, f"{label}: " + "; ".join(broken)


def consume_outputs(space: AppSpace, clicks: int) -> Records:
    """Every output, once there is a verdict or a dead letter per click (repeats after
    a restart count too, so the rest is read until 2 s pass with nothing new: a worker
    still busy keeps writing), or once nothing came for 20 s (a run that lost some).
    Read while the workers run."""
    space.consume("verdicts", "dead", until=clicks, timeout_s=600, stall_s=20.0)
    return space.consume("verdicts", "alerts", "dead", idle_s=2.0, timeout_s=600)


def sigkill_after(worker: WorkerProcess, verdicts: float, timeout: float = 300.0) -> float:
    """SIGKILL the worker once it has sent ``verdicts`` verdicts; returns how many it
    had sent by then (as its metrics last said)."""
    deadline = time.monotonic() + timeout
    sent = 0.0
    while sent < verdicts and time.monotonic() < deadline:
        sent = metric(worker, "fraudapp_verdicts_total") or sent
        time.sleep(0.1)
    kill(worker)
    return sent


def kill(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    os.kill(worker.proc.pid, signal.SIGKILL)  # no goodbye, no flush, no commit
    worker.proc.wait(timeout=10)


def sigkill_uncommitted(
    worker: WorkerProcess,
    space: AppSpace,
    verdicts: float,
    uncommitted: int,
    grace_s: float = 5.0,
    timeout: float = 300.0,
) -> tuple[float, int]:
    """SIGKILL the worker once it has sent ``verdicts`` verdicts and has judged at
    least ``uncommitted`` clicks past the offsets its group last committed (what a
    restart reads again), or ``grace_s`` after the first condition if the second never
    holds. A SIGKILL may land anywhere; this makes it land where a crash re-reads
    something, every run. Returns (verdicts sent, clicks judged past the commit)."""

    async def watch() -> tuple[float, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=space.bootstrap, group_id=space.name, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(space.topics["clicks"], p) for p in range(space.partitions)]
            deadline, reached = time.monotonic() + timeout, None
            while True:
                sent = metric(worker, "fraudapp_verdicts_total") or 0.0
                committed = sum([await consumer.committed(tp) or 0 for tp in tps])
                ahead = int(sent) - committed
                now = time.monotonic()
                if sent >= verdicts:
                    reached = reached or now
                    if ahead >= uncommitted or now - reached > grace_s:
                        return sent, ahead
                if now > deadline:
                    return sent, ahead
                await asyncio.sleep(0.05)
        finally:
            await consumer.stop()

    sent, ahead = asyncio.run(watch())
    kill(worker)
    return sent, ahead


# -- 1. a live stream from librdkafka's default partitioner ------------------------------


def test_kcat_default_partitioner_live_stream_is_exact(kafka_broker, tmp_path: Path) -> None:
    """kcat (CRC32 of the key) puts most sessions on another partition than murmur2:
    the worker forwards each to its session's partition, and must not then refuse
    the forwarded clicks as late nor lose their bursts. (The same stream produced
    with ``-X partitioner=murmur2_random`` is exact on today's code.)"""
    kcat.require_kcat()
    space = AppSpace(kafka_broker.bootstrap, "et-kcat-live")
    space.create_topics()
    clicks = generate_clicks(12_000, seed=401)
    arrived = arrival_order(clicks, max_delay_ms=5_000, seed=402)
    with running(space.worker(tmp_path / "w")):
        kcat.produce(
            space.bootstrap, space.topics["clicks"], [(c["session_id"], c) for c in arrived]
        )
        out = consume_outputs(space, len(clicks))
    assert_exact("kcat (CRC32) keyed, 12 000 clicks shuffled within 5 s, live", clicks, out)


# -- 2. a backlog ----------------------------------------------------------------------


def test_backlog_before_the_worker_starts_is_exact(kafka_broker, tmp_path: Path) -> None:
    """10 000 session-keyed clicks (murmur2, where the worker wants them) at 3 per
    second of event time (56 minutes) wait on the topic before the worker starts: it
    reads them in large per-partition batches, so one partition's clicks can be
    minutes of event time ahead of another's when they meet in a later stage (keyed
    by source, campaign, area), and every stage must still judge every click. (At
    the generator's default 500 per second the same backlog spans 40 s and is exact
    on today's code.)"""
    space = AppSpace(kafka_broker.bootstrap, "et-backlog")
    space.create_topics()
    clicks = generate_clicks(10_000, seed=403, rate_per_s=3)
    arrived = arrival_order(clicks, max_delay_ms=5_000, seed=404)
    space.produce([(c["session_id"], c) for c in arrived])
    with running(space.worker(tmp_path / "w")):
        out = consume_outputs(space, len(clicks))
    assert_exact("backlog of 10 000 clicks at 3/s (murmur2), one worker", clicks, out)


# -- 3. the seed's ingestion path: no key -------------------------------------------------


def test_unkeyed_atm_backlog_from_kcat_gives_every_pair(kafka_broker, tmp_path: Path) -> None:
    """The seed's gess feeds transactions without a key; librdkafka spreads them at
    random. Each must reach its account's partition and pair exactly as the oracle.
    6 000 transactions, a normal one every 10 s of event time (15 hours; the ATM
    rule's lateness is 1 h), wait on the topic before the worker starts."""
    kcat.require_kcat()
    space = AppSpace(kafka_broker.bootstrap, "et-atm-unkeyed")
    space.create_topics()
    txns = generate_txns(6_000, seed=405, rate_per_s=0.1)
    expected = set(expected_pairs([as_oracle_row(t) for t in txns]))
    kcat.produce(space.bootstrap, space.topics["atm"], [(None, t) for t in txns])
    with running(space.worker(tmp_path / "w")):
        space.consume("alerts", until=len(expected), timeout_s=600, stall_s=20.0)
        out = space.consume("alerts", "dead", idle_s=2.0, timeout_s=600)
    alerts = {a["alert_id"]: a for a in out["alerts"]}.values()
    got = {(a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"]) for a in alerts}
    dead = Counter(d["reason"] for d in out["dead"])
    figures = {
        "txns": len(txns),
        "expected_pairs": len(expected),
        "missing": len(expected - got),
        "extra": len(got - expected),
        "dead": dict(dead),
    }
    print(f"\nkcat unkeyed, 6 000 ATM transactions over 15 h, backlog: {figures}")
    assert not dead and got == expected, (
        f"{figures['missing']} of {len(expected)} expected pairs missing,"
        f" {figures['extra']} extra; dead letters {dict(dead)}"
    )


# -- 4. a crash on slow traffic ----------------------------------------------------------


def test_sigkill_on_sparse_traffic_refuses_nothing_late(kafka_broker, tmp_path: Path) -> None:
    """test_crash.py's SIGKILL, on traffic 70 times sparser in event time: 15 000
    clicks at 7 per second span 36 minutes. They are produced at 1 500 a second while
    the worker runs (a live stream it keeps up with, so it commits as a live worker
    does), the worker is killed a few seconds in and restarted on its data directory:
    the records it reads again lie minutes of event time behind where the stream had
    got to, and must neither be refused as late nor lose their alerts. The kill waits
    until at least 100 judged clicks lie past the last committed offsets, so that
    every run re-reads something (a worker that commits every ``COMMIT_SPAN_MS`` of
    event time never leaves much more: 30 s at 7 clicks a second is ~210)."""
    space = AppSpace(kafka_broker.bootstrap, "et-crash-sparse")
    space.create_topics()
    clicks = generate_clicks(15_000, seed=407, rate_per_s=7)
    arrived = arrival_order(clicks, max_delay_ms=5_000, seed=408)
    stream = kafkaio.produce_json(
        space.bootstrap,
        space.topics["clicks"],
        [(c["session_id"], c) for c in arrived],
        rate_per_s=1_500,
    )
    datadir = tmp_path / "w"
    victim = space.worker(datadir)
    with ThreadPoolExecutor(1) as producer:
        with running(victim):
            sent = producer.submit(asyncio.run, stream)
            killed_at, ahead = sigkill_uncommitted(victim, space, len(clicks) / 3, 100)
        with running(space.worker(datadir), timeout=180):
            assert sent.result(timeout=120) == len(clicks)
            out = consume_outputs(space, len(clicks))
    assert killed_at < len(clicks), f"the kill came after all {killed_at:.0f} verdicts"
    assert_exact(
        f"15 000 clicks at 7/s produced live, SIGKILL after {killed_at:.0f} verdicts"
        f" ({ahead} past the last commit), restarted",
        clicks,
        out,
    )


# -- 5. hours of event time, two workers ---------------------------------------------------


def test_hours_long_backlog_on_two_workers_is_exact(kafka_broker, tmp_path: Path) -> None:
    """12 000 clicks at 1 per second: 3 h 20 min of event time waiting on the topic
    when two workers start on it, every check on."""
    space = AppSpace(kafka_broker.bootstrap, "et-hours-two")
    space.create_topics()
    clicks = generate_clicks(12_000, seed=409, rate_per_s=1)
    span_h = (clicks[-1]["timestamp"] - clicks[0]["timestamp"]) / 3_600_000
    assert span_h > 3
    arrived = arrival_order(clicks, max_delay_ms=5_000, seed=410)
    space.produce([(c["session_id"], c) for c in arrived])
    first, second = space.worker(tmp_path / "a"), space.worker(tmp_path / "b")
    with running(first), running(second):
        out = consume_outputs(space, len(clicks))
        peaks = [peak_rss_mb(first), peak_rss_mb(second)]
    print(f"\npeak RSS of the two workers through the backlog: {peaks} MB")
    assert_exact(f"backlog of 12 000 clicks over {span_h:.1f} h, two workers", clicks, out)


def peak_rss_mb(worker: WorkerProcess) -> float:
    """The worker process's peak resident memory so far (Linux's VmHWM), in MB."""
    assert worker.pid is not None
    status = Path(f"/proc/{worker.pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kb / 1024, 1)


# -- 6. a SIGKILL in the middle of a backlog --------------------------------------------


def test_sigkill_mid_backlog_is_exact(kafka_broker, tmp_path: Path) -> None:
    """A backlog waiting before the worker starts, the worker SIGKILLed once about a
    third of the verdicts are out and restarted on its data directory, as sparse as
    one click per second of event time (2.2 hours). Dense traffic through a SIGKILL is
    test_crash.py's (500 clicks/s, produced while its worker runs); a dense backlog
    (10 000 clicks/s) was exact before the event-time work too, so it is not run here."""
    count, rate_per_s = 8_000, 1.0
    space = AppSpace(kafka_broker.bootstrap, "et-crash-backlog")
    space.create_topics()
    clicks = generate_clicks(count, seed=411, rate_per_s=rate_per_s)
    arrived = arrival_order(clicks, max_delay_ms=5_000, seed=412)
    space.produce([(c["session_id"], c) for c in arrived])
    datadir = tmp_path / "w"
    victim = space.worker(datadir)
    with running(victim):
        killed_at = sigkill_after(victim, count / 3)
    assert killed_at < count, f"the kill came after all {killed_at:.0f} verdicts"
    with running(space.worker(datadir), timeout=180):
        out = consume_outputs(space, len(clicks))
    assert_exact(
        f"backlog of {count} clicks at {rate_per_s:g}/s, SIGKILL after {killed_at:.0f}"
        " verdicts, restarted",
        clicks,
        out,
    )


# -- 7. a second worker joins in the middle of a long bulk batch -------------------------


def test_second_worker_joining_mid_backlog_loses_nothing(kafka_broker, tmp_path: Path) -> None:
    """16 000 clicks (every check on) wait on the topic; one worker starts on them
    and, once a fifth of the verdicts are out, while it is deep in long bulk batches,
    a second worker joins: the rebalance revokes half of the first one's partitions
    in the middle of a batch. Every alert and verdict is there as the oracle has them,
    and the group has committed every source record once both are idle."""
    space = AppSpace(kafka_broker.bootstrap, "et-join-backlog")
    space.create_topics()
    clicks = generate_clicks(16_000, seed=415, rate_per_s=200)
    arrived = arrival_order(clicks, max_delay_ms=5_000, seed=416)
    space.produce([(c["session_id"], c) for c in arrived])
    first = space.worker(tmp_path / "a")
    with running(first):
        deadline = time.monotonic() + 300
        while (metric(first, "fraudapp_verdicts_total") or 0) < len(clicks) / 5:
            assert time.monotonic() < deadline, "the first worker never got a fifth through"
            time.sleep(0.05)
        joined_at = metric(first, "fraudapp_verdicts_total") or 0
        with running(space.worker(tmp_path / "b")):
            out = consume_outputs(space, len(clicks))
            behind = wait_for(lambda: all_committed(space), timeout=120)
    assert joined_at < len(clicks), "the second worker joined after the backlog was done"
    assert behind, "the group never committed every source record"
    assert_exact(
        f"backlog of 16 000 clicks, a second worker joining after {joined_at:.0f} verdicts",
        clicks,
        out,
    )


def all_committed(space: AppSpace) -> dict[str, int] | None:
    """The source's uncommitted records per partition once they are all 0, else None."""
    behind = uncommitted_sources(space)
    return behind if behind and not any(behind.values()) else None


def uncommitted_sources(space: AppSpace) -> dict[str, int]:
    """Records of the source topic between the group's committed offsets and its ends
    (an empty dict until the group has committed anything)."""
    committed, ends = group_offsets(space)
    source = space.topics["clicks"]
    return {
        f"{tp.topic}[{tp.partition}]": ends[tp] - offset
        for tp, offset in committed.items()
        if tp.topic == source
    }
