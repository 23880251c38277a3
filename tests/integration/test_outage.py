"""The broker dies (SIGKILL) for 30 s in the middle of a stream and comes back.

What an operator needs from the worker meanwhile: it stays up, says over HTTP that it
is not ready (503 with a reason, on /health and on the keyed views) instead of
serving a frozen snapshot, and once the broker is back it resumes by itself, with no
restart, so that the alerts of the whole stream are still the oracle's. Alert ids
are deterministic: the comparison keeps each id once and reports the raw repeats
the outage caused.

The test runs its own Apache Kafka broker (the session's one is shared by other
tests), killed and started again on the same port and data directory, so topics,
committed offsets and changelogs survive, as in a real outage.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudapp.adnet import oracle
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.brokers import KafkaBroker, free_port
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from tests.integration.helpers import AppSpace, as_oracle_row, metric, running

pytestmark = pytest.mark.integration

CLICKS = 4_000
TXNS = 400
OUTAGE_S = 20.0


def port_outside_ephemeral_range() -> int:
    """A free port the kernel never hands out as a client's local port. While the
    broker is down, the worker keeps connecting to its port; were that port in the
    ephemeral range, one of those connects could bind it as its own local port (a TCP
    self-connect) or another process could take it, and the broker could not come
    back on it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(port=port_outside_ephemeral_range(), data_dir=tmp_path / "kafka")
    broker.start(timeout=180)
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)


def wait_until_idle(worker: WorkerProcess, timeout: float = 120.0) -> None:
    """No lag on any partition and no new verdict for a few seconds."""
    deadline = time.monotonic() + timeout
    last, quiet_since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        assert worker.proc is not None and worker.proc.poll() is None, "the worker died"
        written = metric(worker, "fraudapp_verdicts_total")
        if written != last or metric(worker, "fraudapp_consumer_lag") != 0:
            last, quiet_since = written or -1.0, time.monotonic()
        elif time.monotonic() - quiet_since > 4:
            return
        time.sleep(0.5)
    raise AssertionError(f"the worker never caught up; its log ends:\n{tail(worker)}")


def tail(worker: WorkerProcess, lines: int = 30) -> str:
    text = worker.log_path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def poll(worker: WorkerProcess, path: str) -> tuple[int, Any]:
    try:
        return worker.get(path, timeout=5)
    except OSError as exc:  # no answer at all: as bad as a wrong one, and reported
        return 0, repr(exc)


def test_worker_rides_out_a_broker_outage(own_broker: KafkaBroker, tmp_path: Path) -> None:
    broker = own_broker
    space = AppSpace(broker.bootstrap, "outage")
    space.create_topics()
    clicks = generate_clicks(CLICKS, seed=71)
    arrived = arrival_order(clicks, max_delay_ms=20_000, seed=72)
    txns = generate_txns(TXNS, seed=73)
    half_c, half_t = len(arrived) // 2, len(txns) // 2

    worker = space.worker(tmp_path / "w")
    with running(worker):
        pid = worker.pid
        space.produce([(t["account_id"], t) for t in txns[:half_t]], topic="atm")
        space.produce([(c["session_id"], c) for c in arrived[:half_c]])
        # The first part is judged (its sessions are in the table), not necessarily
        # committed: the outage may catch work in flight.
        space.consume("verdicts", until=half_c, idle_s=30)
        session = arrived[half_c - 1]["session_id"]
        path = f"/sessions/{session}"
        assert poll(worker, path)[0] == 200, poll(worker, path)

        # The outage: SIGKILL, no clean shutdown; nothing is produced meanwhile.
        assert broker.kill(signal.SIGKILL) == -signal.SIGKILL
        down_at = time.monotonic()
        seen: list[tuple[float, int, int, Any, Any]] = []
        while (now := time.monotonic()) - down_at < OUTAGE_S:
            assert worker.proc is not None
            assert worker.proc.poll() is None, f"the worker died in the outage:\n{tail(worker)}"
            health, view = poll(worker, "/health"), poll(worker, path)
            seen.append((now - down_at, health[0], view[0], health[1], view[1]))
            time.sleep(0.5)
        codes = [(round(t, 1), h, v) for t, h, v, *_ in seen]
        first_503 = next((t for t, h, v, *_ in seen if h == v == 503), None)
        assert first_503 is not None, f"never said it was not ready: {codes}, last {seen[-1]}"
        assert first_503 < 15, f"not ready only {first_503:.1f} s into the outage: {codes}"
        assert all(h == v == 503 for t, h, v in codes if t >= first_503), codes
        _, _, _, health_body, view_body = seen[-1]
        assert health_body["status"] == "broker_unreachable", health_body
        assert isinstance(view_body, dict) and "broker" in view_body["error"], view_body

        broker.start(timeout=120)  # same port, same data directory
        up_at = time.monotonic()

        def resumed() -> bool:
            assert worker.proc is not None
            assert worker.proc.poll() is None, f"the worker died after the outage:\n{tail(worker)}"
            return poll(worker, "/health")[0] == 200 and poll(worker, path)[0] == 200

        while not resumed() and time.monotonic() < up_at + 120:
            time.sleep(0.2)
        resumed_s = time.monotonic() - up_at
        assert resumed(), f"never ready again: {poll(worker, '/health')}\n{tail(worker)}"
        assert worker.pid == pid, "the worker was restarted"

        space.produce([(t["account_id"], t) for t in txns[half_t:]], topic="atm")
        space.produce([(c["session_id"], c) for c in arrived[half_c:]])
        deadline = time.monotonic() + 180
        while True:
            wait_until_idle(worker)
            out = space.consume("verdicts", "alerts", "dead", idle_s=4.0, timeout_s=120)
            judged = {v["click_id"] for v in out["verdicts"]}
            missing = {c["click_id"] for c in clicks} - judged
            if not missing or time.monotonic() > deadline:
                break
        assert worker.pid == pid and worker.proc.poll() is None

    assert out["dead"] == []
    assert not missing, f"{len(missing)} clicks got no verdict"

    alerts = out["alerts"]
    duplicates = sum(n - 1 for n in Counter(a["alert_id"] for a in alerts).values())
    unique = list({a["alert_id"]: a for a in alerts}.values())
    by_rule: dict[str, set[str]] = {}
    for alert in unique:
        by_rule.setdefault(alert["rule"], set()).add(alert.get("click_id", ""))
    assert by_rule["click_burst"] == fraudulent_click_ids(clicks)
    assert by_rule["stacked_ads"] == oracle.stacked_click_ids(clicks)
    assert by_rule["rate_limit"] == oracle.over_limit_click_ids(clicks)
    pairs = {
        (a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"])
        for a in unique
        if a["rule"] == "atm_impossible_travel"
    }
    assert pairs == set(expected_pairs([as_oracle_row(t) for t in txns]))
    print(
        f"\nbroker SIGKILLed for {OUTAGE_S:.0f} s: views 503 after {first_503:.1f} s;"
        f" broker back in {broker.ready_after_s:.1f} s, worker ready {resumed_s:.1f} s"
        f" later, same pid; {len(unique)} alerts, {duplicates} raw duplicates;"
        f" {len(out['verdicts'])} verdicts for {len(judged)} click ids;"
        f" per rule {dict(Counter(a['rule'] for a in unique))}"
    )
