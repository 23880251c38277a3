"""Two worker processes share a stream on a real broker, then one dies by SIGKILL.

What a user scaling out needs to hold: every alert comes out once between the
workers; every keyed view answers the same from either worker (requests for keys
the other worker owns are forwarded to it); and when a worker dies without a
goodbye, the survivor takes its partitions, recovers their tables from the
changelog, answers for them, and carries on with the stream, so that the alerts
of the whole stream are still the oracle's, with none twice.
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
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.clicks.generate import FARM_CAMPAIGN, arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.reference import tables_dir
from tests.integration.helpers import (
    AppSpace,
    as_oracle_row,
    metric,
    running,
    unsettled,
    wait_for,
)

pytestmark = pytest.mark.integration

CLICKS = 6_000
TXNS = 1_500


def settled(workers: list[WorkerProcess]) -> bool:
    """Nothing left to read on any worker's partitions."""
    return all(metric(w, "fraudapp_consumer_lag") == 0 for w in workers)


def judged(space: AppSpace, click_ids: set[str], timeout: float = 300.0) -> list[dict]:
    """The verdicts once every click has one. A count would not do: a partition that
    moves while the workers join is re-read from its last commit (duplicates)."""
    deadline = time.monotonic() + timeout
    while True:
        verdicts = space.consume("verdicts", idle_s=3.0)["verdicts"]
        missing = click_ids - {v["click_id"] for v in verdicts}
        if not missing:
            return verdicts
        assert time.monotonic() < deadline, f"{len(missing)} clicks never got a verdict"
        time.sleep(1.0)


def views(worker: WorkerProcess, paths: list[str]) -> dict[str, tuple[int, Any]]:
    out = {}
    for path in paths:
        status, body = worker.get(path, timeout=20)
        if isinstance(body, dict):
            body.pop("served_by", None)
        out[path] = (status, body)
    return out


def check_views(answers: dict[str, tuple[int, Any]], clicks, txns, alerts) -> None:
    """Each view is right about the keys it shows: a session's alerted clicks are the
    oracle's among the clicks it lists; an account's pairs are the oracle's among its
    listed transactions; a campaign's top sources bound the exact counts."""
    burst = fraudulent_click_ids(clicks)
    pairs = expected_pairs([as_oracle_row(t) for t in txns])
    alert_ids = {a["alert_id"] for a in alerts}
    for path, (status, view) in answers.items():
        assert status == 200, (path, view)
        if path.startswith("/sessions/"):
            listed = {c["click_id"] for entries in view["urls"].values() for c in entries}
            flagged = {a["click_id"] for a in view["alerts"]}
            assert flagged == listed & burst, path
            assert {a["alert_id"] for a in view["alerts"]} <= alert_ids, path
        elif path.startswith("/accounts/"):
            listed = {t["transaction_id"] for t in view["transactions"]}
            want = {k for k in pairs if k[0] == view["account_id"] and {k[1], k[2]} <= listed}
            got = {
                (a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"])
                for a in view["alerts"]
            }
            assert got == want, path
        else:
            campaign = view["campaign_id"]
            end, window = view["window_end"], view["window_ms"]
            bucket = 5 * 60_000  # the sketches' time bucket: the window's edge is exact to it
            for entry in view["ip"][:3]:
                times = [
                    c["timestamp"]
                    for c in clicks
                    if c["campaign_id"] == campaign and c["ip"] == entry["source"]
                ]
                narrow = sum(1 for t in times if end - window + bucket < t <= end)
                wide = sum(1 for t in times if end - window - bucket < t <= end)
                assert narrow <= entry["upper_bound"] and entry["lower_bound"] <= wide, path


def test_two_workers_share_the_stream_and_survive_a_sigkill(kafka_broker, tmp_path: Path) -> None:
    space = AppSpace(kafka_broker.bootstrap, "scale")
    space.create_topics()
    clicks = generate_clicks(CLICKS, seed=51)
    arrived = arrival_order(clicks, max_delay_ms=20_000, seed=52)
    txns = generate_txns(TXNS, seed=53)
    half_c, half_t = len(arrived) // 2, len(txns) // 2

    first, second = space.worker(tmp_path / "a"), space.worker(tmp_path / "b")
    with running(first), running(second):

        def both_assigned() -> bool:
            counts = [w.get("/health")[1].get("assigned_partitions", 0) for w in (first, second)]
            return all(counts)

        assert wait_for(both_assigned, timeout=90), "the two workers never shared partitions"
        space.produce([(c["session_id"], c) for c in arrived[:half_c]])
        space.produce([(t["account_id"], t) for t in txns[:half_t]], topic="atm")
        judged(space, {c["click_id"] for c in arrived[:half_c]})
        assert wait_for(lambda: settled([first, second]), timeout=120), [
            unsettled(w) for w in (first, second)
        ]
        time.sleep(4.0)  # past faust's 2.8 s commit interval: offsets are committed

        seen_clicks, seen_txns = arrived[:half_c], txns[:half_t]
        early = space.consume("alerts", idle_s=3.0)["alerts"]
        sessions = sorted({c["session_id"] for c in seen_clicks})[:150]
        accounts = sorted({t["account_id"] for t in seen_txns})[:150]
        campaigns = sorted({c["campaign_id"] for c in seen_clicks})
        paths = (
            [f"/sessions/{s}" for s in sessions]
            + [f"/accounts/{a}" for a in accounts]
            + [f"/campaigns/{c}/top?k=5" for c in campaigns]
        )
        before = views(first, paths)
        assert views(second, paths) == before, "the two workers answer differently"
        check_views(before, seen_clicks, seen_txns, early)
        served = {first.get(p)[1]["served_by"] for p in paths[:40]}
        assert served == {first.url, second.url}, "one worker served every key"

        # SIGKILL: no goodbye to the group, no flush; the broker notices by timeout.
        os.kill(second.pid, signal.SIGKILL)
        second.proc.wait(timeout=10)

        def owns_everything() -> bool:
            return all(first.get(p)[0] == 200 for p in paths[::7])

        assert wait_for(owns_everything, timeout=120), "the survivor never answered for all keys"
        after = views(first, paths)
        assert after == before, "state changed when its partitions moved"

        space.produce([(c["session_id"], c) for c in arrived[half_c:]])
        space.produce([(t["account_id"], t) for t in txns[half_t:]], topic="atm")
        verdicts = judged(space, {c["click_id"] for c in arrived})
        assert wait_for(lambda: settled([first]), timeout=120), unsettled(first)
        out = space.consume("alerts", "dead", idle_s=4.0)
        # Sessions and accounts of the first half have left their windows by now.
        newest = max(c["timestamp"] for c in clicks)
        recent = sorted({c["session_id"] for c in clicks if c["timestamp"] > newest - 15_000})
        final_paths = (
            [f"/sessions/{s}" for s in recent[:150]]
            + [f"/accounts/{t['account_id']}" for t in txns[-100:]]
            + [f"/campaigns/{c}/top?k=5" for c in campaigns]
        )
        final_views = views(first, final_paths)

    assert out["dead"] == []
    alerts = out["alerts"]
    repeated = {k: n for k, n in Counter(a["alert_id"] for a in alerts).items() if n > 1}
    assert not repeated, f"{len(repeated)} alerts came out more than once"
    by_rule: dict[str, set[str]] = {}
    for alert in alerts:
        by_rule.setdefault(alert["rule"], set()).add(alert.get("click_id", ""))
    assert Counter(v["click_id"] for v in verdicts if not v["duplicate"]) == Counter(
        {c["click_id"]: 1 for c in clicks}
    )
    assert by_rule["click_burst"] == fraudulent_click_ids(clicks)
    assert by_rule["stacked_ads"] == oracle.stacked_click_ids(clicks)
    assert by_rule["rate_limit"] == oracle.over_limit_click_ids(clicks)
    listed = oracle.blocklisted_click_ids(clicks, tables_dir() / "blocklist")
    assert listed <= by_rule["ip_blocklist"]
    pairs = {
        (a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"])
        for a in alerts
        if a["rule"] == "atm_impossible_travel"
    }
    assert pairs == set(expected_pairs([as_oracle_row(t) for t in txns]))
    check_views(final_views, clicks, txns, alerts)
    assert FARM_CAMPAIGN in campaigns
    print(
        f"\n2 workers, SIGKILL of one half-way: {len(alerts)} alerts, none twice;"
        f" per rule {dict(Counter(a['rule'] for a in alerts))}"
    )
