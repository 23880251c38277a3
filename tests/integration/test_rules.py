"""Rules as data on a real broker: a threshold changed with ``fraudapp rules set``
during a stream switches the alerts of two workers at the change, each naming the
version that fired; a broken rule record is dead-lettered and changes nothing; a
rule in shadow mode writes to ``shadow-alerts`` only; a paused rule raises nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.partitioning import partition_for
from tests.integration.helpers import AppSpace, running, wait_for

pytestmark = pytest.mark.integration

SESSIONS = 24


def bursts(prefix: str, clicks_each: int) -> list[dict[str, Any]]:
    """``SESSIONS`` sessions of ``clicks_each`` clicks on one URL, a second apart."""
    t0 = int(time.time() * 1000)
    return [
        {
            "click_id": f"{prefix}-{s}-{k}",
            "session_id": f"{prefix}-{s}",
            "url": "https://ads.example/landing",
            "timestamp": t0 + k * 1000,
        }
        for s in range(SESSIONS)
        for k in range(clicks_each)
    ]


def fraud_under(clicks: list[dict[str, Any]], threshold: int) -> set[str]:
    """The clicks the rule condemns: from the ``threshold``-th of its session on (the
    clicks are a second apart, all within the 10 s window)."""
    return {c["click_id"] for c in clicks if int(c["click_id"].rsplit("-", 1)[1]) >= threshold - 1}


def send_and_judge(space: AppSpace, clicks: list[dict[str, Any]]) -> dict[str, dict]:
    """Produce clicks and wait until each has a verdict; the verdicts by click id."""
    space.produce([(c["session_id"], c) for c in clicks])
    wanted = {c["click_id"] for c in clicks}

    def all_judged() -> dict[str, dict] | None:
        verdicts = {v["click_id"]: v for v in space.consume("verdicts", idle_s=2.0)["verdicts"]}
        return verdicts if wanted <= set(verdicts) else None

    verdicts = wait_for(all_judged, timeout=120, interval=1.0)
    assert verdicts, "some clicks never got a verdict"
    return {k: verdicts[k] for k in wanted}


def burst_alerts(space: AppSpace, topic: str, prefix: str) -> dict[str, dict]:
    alerts = space.consume(topic, idle_s=2.0)[topic]
    return {
        a["click_id"]: a
        for a in alerts
        if a["rule"] == "click_burst" and a["click_id"].startswith(f"{prefix}-")
    }


def replay_cli(space: AppSpace, *args: str) -> str:
    return rules_cli(space, *args, command="replay")


def rules_cli(space: AppSpace, *args: str, command: str = "rules") -> str:
    env = {**os.environ, **space.env, "BROKER_URL": space.bootstrap}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudapp.cli.main",
            command,
            *args,
            *(["--quiet"] if command == "replay" else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def versions(workers: list[WorkerProcess], rule: str) -> list[int]:
    out = []
    for worker in workers:
        status, body = worker.get("/rules")
        assert status == 200, body
        out.append(next(r["version"] for r in body["rules"] if r["rule"] == rule))
    return out


def explain(worker: WorkerProcess, alert_id: str) -> dict[str, Any]:
    """``GET /alerts/{id}`` once the index has it (written just after the alert)."""
    answer = wait_for(lambda: (r := worker.get(f"/alerts/{alert_id}"))[0] == 200 and r[1], 30)
    assert answer, f"{alert_id} never explained"
    answer.pop("served_by")
    return answer


def change(space: AppSpace, workers: list[WorkerProcess], version: int, *args: str) -> float:
    """Apply a change with the CLI; seconds until every worker has it in force."""
    said = rules_cli(space, *args)
    assert f"-> v{version}" in said, said
    started = time.monotonic()
    assert wait_for(lambda: versions(workers, "click_burst") == [version] * len(workers), 30), (
        versions(workers, "click_burst")
    )
    return time.monotonic() - started


def test_a_threshold_changed_live_switches_the_alerts_of_two_workers(
    kafka_broker, tmp_path: Path
) -> None:
    space = AppSpace(kafka_broker.bootstrap, "rules")
    space.create_topics()
    workers = [space.worker(tmp_path / "a"), space.worker(tmp_path / "b")]
    with running(workers[0]), running(workers[1]):
        assert wait_for(
            lambda: all(w.get("/health")[1].get("assigned_partitions", 0) for w in workers), 90
        ), "the two workers never shared partitions"
        assert versions(workers, "click_burst") == [1, 1]
        homes = {partition_for(f"a-{s}".encode(), space.partitions) for s in range(SESSIONS)}
        assert homes == set(range(space.partitions)), "sessions must reach every partition"

        # v1 (threshold 3): the 3rd and 4th click of each session are fraud.
        first = bursts("a", 4)
        send_and_judge(space, first)
        alerts = burst_alerts(space, "alerts", "a")
        assert set(alerts) == fraud_under(first, 3)
        assert {a["rule_version"] for a in alerts.values()} == {1}
        # Graded from the evidence: 3 and 4 clicks at threshold 3 are a low burst.
        assert {a["severity"] for a in alerts.values()} == {"low"}

        # Any worker explains any alert: its evidence, the record that raised it, the
        # rule's parameters while its version is in force.
        some = sorted(alerts)[:6]
        for click_id in some:
            explained = [explain(w, alerts[click_id]["alert_id"]) for w in workers]
            assert explained[0] == explained[1], explained
            entry = explained[0]
            assert (
                entry["alert"]["click_id"] == click_id and entry["topic"] == space.topics["alerts"]
            )
            assert entry["raised_by"]["topic"] == space.topics["clicks"]
            partition, offset = map(int, entry["raised_by"]["at"].split(":"))
            assert partition == partition_for(alerts[click_id]["key"].encode(), space.partitions)
            assert entry["rule"]["params"]["threshold"] == 3 and entry["rule_version_in_force"]
        status, missing = workers[0].get("/alerts/click_burst-000000000000000000000000")
        assert status == 404 and missing["reason"]

        # v2 (threshold 4), written by the CLI while both workers run.
        lag = change(space, workers, 2, "set", "click_burst", "threshold=4", "--by", "test")
        print(f"v2 in force on both workers {lag:.2f} s after the CLI returned")
        three, four = bursts("b", 3), bursts("c", 4)
        verdicts = send_and_judge(space, three + four)
        assert not any(verdicts[c["click_id"]]["fraud"] for c in three)
        assert {k for k, v in verdicts.items() if v["fraud"]} == fraud_under(four, 4)
        assert burst_alerts(space, "alerts", "b") == {}
        alerts = burst_alerts(space, "alerts", "c")
        assert set(alerts) == fraud_under(four, 4)
        assert {a["rule_version"] for a in alerts.values()} == {2}
        old = explain(workers[1], explained[0]["alert"]["alert_id"])
        assert not old["rule_version_in_force"] and old["rule"]["version"] == 2

        # A broken record: dead-lettered with its reason, v2 stays in force.
        space.produce(
            [("click_burst", {"rule": "click_burst", "version": 3, "params": {}})], "rules"
        )
        dead = wait_for(
            lambda: [
                d
                for d in space.consume("dead", idle_s=2.0)["dead"]
                if d["source_topic"] == space.topics["rules"]
            ],
            30,
        )
        assert dead and {d["reason"] for d in dead} == {"bad_rule"}, dead
        assert "missing" in dead[0]["message"]
        assert versions(workers, "click_burst") == [2, 2]

        # v3 in shadow: measured on real traffic, but no alert and no fraud verdict.
        change(space, workers, 3, "set", "click_burst", "mode=shadow")
        shadowed = bursts("d", 4)
        verdicts = send_and_judge(space, shadowed)
        assert not any(v["fraud"] for v in verdicts.values())
        assert burst_alerts(space, "alerts", "d") == {}
        shadow = burst_alerts(space, "shadow", "d")
        assert set(shadow) == fraud_under(shadowed, 4)
        assert {a["rule_version"] for a in shadow.values()} == {3}

        # v4 paused: nothing anywhere; v5 resumed (live again, threshold still 4).
        change(space, workers, 4, "pause", "click_burst")
        send_and_judge(space, bursts("e", 4))
        assert burst_alerts(space, "alerts", "e") == burst_alerts(space, "shadow", "e") == {}
        change(space, workers, 5, "set", "click_burst", "mode=live", "enabled=true")
        resumed = bursts("f", 4)
        send_and_judge(space, resumed)
        alerts = burst_alerts(space, "alerts", "f")
        assert set(alerts) == fraud_under(resumed, 4)
        assert {a["rule_version"] for a in alerts.values()} == {5}

        listed = rules_cli(space, "list")
        assert "click_burst" in listed and "v5" in listed and "threshold=4" in listed

    # The same clicks replayed from the topic under v1 (threshold 3) all along.
    everything = first + three + four + shadowed + bursts("e", 4) + resumed
    out = tmp_path / "replayed.jsonl"
    said = replay_cli(space, "--topic", space.topics["clicks"], "--out", str(out))
    assert f"{len(everything):,} events" in said, said
    replayed = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    burst = {a["click_id"] for a in replayed if a["rule"] == "click_burst"}
    assert len(burst) == SESSIONS * (2 + 1 + 2 * 4)  # 2 of 4 clicks, 1 of 3 (x4 phases)
    assert {a["rule_version"] for a in replayed} == {1}
    said = replay_cli(
        space,
        "--topic",
        space.topics["clicks"],
        "--partition",
        "0",
        "--start-offset",
        "1",
        "--end-offset",
        "4",
    )
    assert said.startswith("3 events"), said
