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

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from fraudapp.adnet import oracle
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
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
