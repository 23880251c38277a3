"""A worker SIGKILLed in the middle of a stream loses nothing.

At-least-once: offsets are committed only after a record's outputs (and its state's
changelog) are produced, so a worker killed without warning re-reads what it had
not committed, and a record it had half-handled is handled again. Alert ids are
deterministic, so a consumer that keeps the ids it has seen sees each alert once;
the test does exactly that and compares with the oracles, and reports how many raw
duplicates the restart produced.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fraudapp.adnet import oracle
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.workerproc import WorkerProcess
from tests.integration.helpers import AppSpace, as_oracle_row, metric, running

pytestmark = pytest.mark.integration

CLICKS = 50_000
TXNS = 10_000


def wait_until_idle(worker: WorkerProcess, timeout: float = 600.0) -> None:
    """No new verdict and no change in lag for a few seconds. (Under exactly-once the
    lag of a transactional topic stays at 1: its end offset is the commit marker.)"""
    deadline = time.monotonic() + timeout
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = (
            metric(worker, "fraudapp_verdicts_total") or 0.0,
            metric(worker, "fraudapp_consumer_lag"),
        )
        if now != last or now[1] is None:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > 8:
            return
        time.sleep(0.5)
    raise AssertionError("the worker never caught up")


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


@pytest.mark.xfail(
    strict=False,
    reason="known gap (README Guarantees): a record whose state changelog left the producer"
    " before its alerts, when the worker is SIGKILLed, is replayed as a duplicate and its"
    " alerts are not re-sent; seen once in CI as 3 missing rate_limit alerts",
)
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
