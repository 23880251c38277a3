"""Cases on a real broker with real workers: a case opens, counts, resolves in event
time and reopens; a snooze silences its notifications while its alerts still count;
an automatic block appears on the blocklist and is lifted at its end in event time;
two workers answer for the same case.

Event time is the test's: clicks carry the timestamps, and a click on every input
partition moves the watermark (the case stage's level) past what must fall due.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.caseids import case_id
from fraudapp.core.partitioning import partition_for
from tests.integration.helpers import AppSpace, free_port, metric, running, wait_for
from tests.integration.webhook import FlakyWebhook

pytestmark = pytest.mark.integration

PARTITIONS = 4
URL = "https://ads.example/landing"
QUIET_MS = 5_000
LATENESS_MS = 2_000
T0 = (int(time.time() * 1000) // 1000) * 1000
_ids = itertools.count()

ENV = {
    "CASE_QUIET_MS": str(QUIET_MS),
    "CASE_UPDATE_EVERY_MS": "2500",
    "CLICK_ALLOWED_LATENESS_MS": str(LATENESS_MS),
    "ADNET_ALLOWED_LATENESS_MS": str(LATENESS_MS),
    "NOTIFY_RULES": "click_burst,rate_limit",
    "WATERMARK_IDLE_MS": "2000",
}


def click(session: str, t: int, **extra: Any) -> tuple[str, dict[str, Any]]:
    record = {"click_id": f"k{next(_ids)}", "session_id": session, "url": URL, "timestamp": t}
    return session, {**record, **extra}


def burst(session: str, t: int, n: int = 3, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    return [click(session, t + i * 1000, **extra) for i in range(n)]


def every_partition(t: int) -> list[tuple[str, dict[str, Any]]]:
    """One quiet click on each input partition at ``t``: the watermark moves there."""
    out: list[tuple[str, dict[str, Any]]] = []
    for partition in range(PARTITIONS):
        session = next(
            s
            for s in (f"fill-{t}-{n}" for n in itertools.count())
            if partition_for(s.encode(), PARTITIONS) == partition
        )
        out.append(click(session, t))
    return out


def case_records(space: AppSpace, cid: str) -> list[dict[str, Any]]:
    return [c for c in space.consume("cases", idle_s=1.5)["cases"] if c["case_id"] == cid]


def transitions(space: AppSpace, cid: str) -> list[str]:
    return [c["transition"] for c in case_records(space, cid)]


def cli(space: AppSpace, *args: str) -> str:
    env = {**os.environ, **space.env, "BROKER_URL": space.bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "fraudapp.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def hook():
    server = FlakyWebhook(free_port(), failures=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def space(kafka_broker) -> AppSpace:
    space = AppSpace(kafka_broker.bootstrap, "cases", partitions=PARTITIONS)
    space.create_topics()
    return space


@pytest.fixture(scope="module")
def worker(space: AppSpace, hook: FlakyWebhook, tmp_path_factory) -> WorkerProcess:
    env = {**ENV, "NOTIFY_WEBHOOK_URL": hook.url}
    with running(space.worker(tmp_path_factory.mktemp("cases"), **env)) as worker:
        yield worker


def test_a_case_opens_counts_resolves_in_event_time_and_reopens(
    space: AppSpace, worker: WorkerProcess, hook: FlakyWebhook
) -> None:
    cid = case_id("click_burst", "life-1")
    space.produce(burst("life-1", T0, n=4) + every_partition(T0 + 3_500))
    assert wait_for(lambda: transitions(space, cid) == ["opened"], timeout=60)
    assert case_records(space, cid)[0]["alert_count"] == 1
    # Between transitions the topic is quiet; the case itself counts every alert.
    status, body = wait_for(
        lambda: (
            (r := worker.get(f"/cases/{cid}"))[0] == 200 and r[1]["case"]["alert_count"] == 2 and r
        ),
        timeout=30,
    )
    assert body["case"]["status"] == "open" and len(body["alerts"]) == 2
    alerts = [a for a in space.consume("alerts", idle_s=1.5)["alerts"] if a["case_id"] == cid]
    assert {a["alert_id"] for a in alerts} == {a["alert_id"] for a in body["alerts"]}

    # An alert 3 s of event time after the last record (the update interval is 2.5 s)
    # writes the case's state again.
    space.produce([click("life-1", T0 + 5_000)] + every_partition(T0 + 5_500))
    assert wait_for(lambda: transitions(space, cid) == ["opened", "updated"], timeout=60)
    assert case_records(space, cid)[-1]["alert_count"] == 3

    # Not yet: the watermark is short of last alert + quiet + lateness (T0 + 12 s).
    space.produce(every_partition(T0 + 11_000))
    time.sleep(4)
    assert transitions(space, cid) == ["opened", "updated"]
    space.produce(every_partition(T0 + 20_000))
    assert wait_for(lambda: transitions(space, cid)[-1:] == ["resolved"], timeout=60)
    resolved = case_records(space, cid)[-1]
    assert resolved["status"] == "resolved" and resolved["alert_count"] == 3
    assert resolved["resolved_at"] == T0 + 5_000 + QUIET_MS

    space.produce(burst("life-1", T0 + 30_000) + every_partition(T0 + 33_000))
    assert wait_for(lambda: transitions(space, cid)[-1:] == ["reopened"], timeout=60)
    reopened = case_records(space, cid)[-1]
    assert reopened["episode"] == 2 and reopened["alert_count"] == 4
    assert reopened["episode_alerts"] == 1 and reopened["status"] == "open"
    status, listing = worker.get("/cases?status=all")
    assert cid in {c["case_id"] for c in listing["cases"]}
    # Notified per transition, each once (the rule notifies: NOTIFY_RULES).
    keys = [r["key"] for r in hook.requests if r["alert"]["case_id"] == cid]
    assert wait_for(
        lambda: (
            sorted({r["key"] for r in hook.requests if r["alert"]["case_id"] == cid})
            == sorted([f"{cid}:1:opened", f"{cid}:1:resolved", f"{cid}:2:reopened"])
        ),
        timeout=30,
    ), keys


def test_a_snooze_silences_notifications_while_alerts_count(
    space: AppSpace, worker: WorkerProcess, hook: FlakyWebhook
) -> None:
    quiet, loud = case_id("click_burst", "snoozed-1"), case_id("click_burst", "loud-1")
    out = cli(space, "cases", "snooze", "snoozed-1", "--rule", "click_burst", "--for", "1h")
    assert quiet in out
    assert wait_for(lambda: worker.get(f"/cases/{quiet}")[0] == 404, timeout=10)
    t = T0 + 40_000
    space.produce(burst("snoozed-1", t, n=5) + burst("loud-1", t) + every_partition(t + 5_000))
    assert wait_for(lambda: "opened" in transitions(space, loud), timeout=60)
    assert wait_for(lambda: any(r["alert"]["case_id"] == loud for r in hook.requests), timeout=30)
    assert "opened" in transitions(space, quiet)
    status, body = wait_for(
        lambda: (
            (r := worker.get(f"/cases/{quiet}"))[1].get("case", {}).get("alert_count") == 3 and r
        ),
        timeout=30,
    )
    assert body["case"]["snoozed"] and body["case"]["snooze"]["by"]
    assert not [r for r in hook.requests if r["alert"]["case_id"] == quiet]
    assert metric(worker, "fraudapp_notifications_total") and wait_for(
        lambda: "snoozed" in worker.get("/metrics")[1], timeout=10
    )
    audit = [a for a in space.consume("actions", idle_s=1.5)["actions"] if a["case_id"] == quiet]
    assert [a["action"] for a in audit] == ["snooze"]
    listed = cli(space, "cases", "list")
    assert quiet in listed and loud in listed and "open cases" in listed


def test_an_automatic_block_is_listed_and_lifted_at_its_end(
    space: AppSpace, worker: WorkerProcess
) -> None:
    out = cli(space, "rules", "set", "rate_limit", "action=block_ip", "action_ttl_ms=10000")
    assert "rate_limit" in out
    assert wait_for(
        lambda: any(
            r["rule"] == "rate_limit" and r.get("action") == "block_ip"
            for r in worker.get("/rules")[1]["rules"]
        ),
        timeout=30,
    )
    t = T0 + 60_000
    ip = "10.9.8.7"
    clicks = [click("blocky", t + i * 50, ip=ip) for i in range(8)]
    space.produce(clicks + every_partition(t + 1_000))
    cid = case_id("rate_limit", f"ip:{ip}")

    def listed() -> list[dict[str, Any]]:
        records = space.consume("blocklist", idle_s=1.5)["blocklist"]
        return [r for r in records if r.get("case_id") == cid]

    (block,) = wait_for(listed, timeout=60)
    assert block["blocked"] is True and block["until_event_time"] == t + 5 * 50 + 10_000
    # Every worker applies it: the source's next click is a blocklisted one.
    space.produce([click("blocky-2", t + 2_000, ip=ip)])
    assert wait_for(
        lambda: [
            a
            for a in space.consume("alerts", idle_s=1.5)["alerts"]
            if a["rule"] == "ip_blocklist" and a["session_id"] == "blocky-2"
        ],
        timeout=60,
    )
    _, body = worker.get(f"/cases/{cid}")
    assert body["case"]["action"]["status"] == "active"
    # Lifted when the watermark passes its end, in event time.
    space.produce(every_partition(t + 20_000))
    assert wait_for(lambda: [r["blocked"] for r in listed()] == [True, False], timeout=60)
    actions = [a for a in space.consume("actions", idle_s=1.5)["actions"] if a["case_id"] == cid]
    assert [a["action"] for a in actions] == ["block_ip", "lift_ip"]
    assert worker.get(f"/cases/{cid}")[1]["case"]["action"]["status"] == "lifted"


def test_two_workers_answer_for_the_same_case(
    space: AppSpace, worker: WorkerProcess, tmp_path_factory
) -> None:
    cid = case_id("click_burst", "life-1")
    second = space.worker(tmp_path_factory.mktemp("cases-2"), **ENV)
    with running(second):

        def both() -> list[dict[str, Any]] | None:
            answers = [w.get(f"/cases/{cid}") for w in (worker, second)]
            if all(status == 200 for status, _ in answers):
                return [body for _, body in answers]
            return None

        answers = wait_for(both, timeout=90, interval=1.0)
        assert answers, "both workers should answer for the case"
        assert {a["served_by"] for a in answers} == {answers[0]["served_by"]}  # its owner
        assert answers[0]["case"]["alert_count"] == answers[1]["case"]["alert_count"] == 4
        listed = [
            {c["case_id"] for c in w.get("/cases?status=all")[1]["cases"]} for w in (worker, second)
        ]
        assert cid in listed[0] and listed[0] == listed[1]

        # Alerts raised on one worker for cases the other owns go through the case
        # feed topic: each case still counts each of its alerts once.
        sessions = [f"pair-{n}" for n in range(8)]
        t = T0 + 90_000
        space.produce(
            [rec for s in sessions for rec in burst(s, t, n=4)] + every_partition(t + 4_000)
        )
        cids = {case_id("click_burst", s) for s in sessions}

        def counted() -> dict[str, int] | None:
            named: dict[str, int] = {}
            for alert in space.consume("alerts", idle_s=1.5)["alerts"]:
                if alert["case_id"] in cids:
                    named[alert["case_id"]] = named.get(alert["case_id"], 0) + 1
            answers = {c: second.get(f"/cases/{c}")[1] for c in cids}
            live = {c: a.get("case", {}).get("alert_count") for c, a in answers.items()}
            return named if len(named) == len(cids) and live == named else None

        assert wait_for(counted, timeout=60, interval=1.0), "cases should count each alert once"
        feed = f'fraudapp_events_in_total{{topic="{space.name}-case-feed"}}'
        through = [
            float(line.split()[-1])
            for w in (worker, second)
            for line in w.get("/metrics")[1].splitlines()
            if line.startswith(feed)
        ]
        assert sum(through) > 0, "some alerts should have crossed to the other worker"


def test_open_cases_survive_a_restart_and_resolve_after_it(kafka_broker, tmp_path) -> None:
    """The case table is restored like every other state: a worker restarted on its
    data directory still counts the case, and its sweep, seeded from the restored
    partition, resolves it when event time passes (no new alert for the case comes)."""
    space = AppSpace(kafka_broker.bootstrap, "cases-restart", partitions=PARTITIONS)
    space.create_topics()
    cid = case_id("click_burst", "kept-1")
    first = space.worker(tmp_path / "w", **ENV)
    with running(first):
        space.produce(burst("kept-1", T0, n=4) + every_partition(T0 + 3_500))
        assert wait_for(lambda: first.get(f"/cases/{cid}")[1].get("case"), timeout=60)
        assert wait_for(
            lambda: first.get(f"/cases/{cid}")[1]["case"]["alert_count"] == 2, timeout=30
        )
    again = space.worker(tmp_path / "w", **ENV)
    with running(again):
        _, body = again.get(f"/cases/{cid}")
        assert body["case"]["alert_count"] == 2 and body["case"]["status"] == "open"
        space.produce(every_partition(T0 + 20_000))
        assert wait_for(lambda: transitions(space, cid) == ["opened", "resolved"], timeout=60)
        assert again.get(f"/cases/{cid}")[1]["case"]["status"] == "resolved"
