"""Analysts' labels on a real broker and worker: two click bursts raise two alerts;
``fraudapp label`` (the real CLI) labels one fraud and ``/metrics`` shows the rule
version's precision at 1.0; ``POST /labels`` labels the other legit and it drops to
0.5; relabels, withdrawals, a case label and a label of an alert no longer indexed
move the tally; bad requests get 400 and 404; a restarted worker loads the same tally
from its store; and a replay of the clicks is scored with the same labels.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.caseids import case_of
from fraudapp.engine import kafkaio
from tests.integration.helpers import AppSpace, running, wait_for

pytestmark = pytest.mark.integration

HEX = "0123456789abcdef01234567"


def cli(space: AppSpace, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **space.env, "BROKER_URL": space.bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "fraudapp.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def precision(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    """``fraudapp_rule_precision`` by (rule, version) from the worker's /metrics."""
    status, text = worker.get("/metrics")
    assert status == 200, text
    found = re.findall(
        r'^fraudapp_rule_precision\{rule="([^"]+)",version="([^"]+)"\} (\S+)$', text, re.M
    )
    return {(rule, version): float(value) for rule, version, value in found}


def counts(worker: WorkerProcess) -> dict[tuple[str, int], tuple[int, int]]:
    status, body = worker.get("/labels/precision")
    assert status == 200, body
    return {(r["rule"], r["rule_version"]): (r["fraud"], r["legit"]) for r in body["precision"]}


def settles(worker: WorkerProcess, expected: dict[tuple[str, int], tuple[int, int]]) -> None:
    assert wait_for(lambda: counts(worker) == expected, 30), (counts(worker), expected)


def label(worker: WorkerProcess, body: dict[str, Any]) -> tuple[int, Any]:
    return worker.request("POST", "/labels", body)


def test_labels_make_precision_live_and_score_a_replay(kafka_broker, tmp_path: Path) -> None:
    space = AppSpace(kafka_broker.bootstrap, "labels")
    space.topics["labels"] = space.env["LABELS_TOPIC"] = f"{space.name}-labels"
    asyncio.run(
        kafkaio.ensure_topics(
            space.bootstrap, [space.topics["labels"]], space.partitions, compacted=True
        )
    )
    space.create_topics()
    t0 = int(time.time() * 1000)
    clicks = [
        {
            "click_id": f"lb-{s}-{k}",
            "session_id": f"lb-{s}",
            "url": "https://ads.example/landing",
            "timestamp": t0 + k * 1000,
        }
        for s in range(2)
        for k in range(3)
    ]
    worker = space.worker(tmp_path / "w")
    with running(worker):
        space.produce([(c["session_id"], c) for c in clicks])

        def bursts() -> dict[str, dict[str, Any]] | None:
            alerts = space.consume("alerts", idle_s=2.0)["alerts"]
            found = {a["session_id"]: a for a in alerts if a["rule"] == "click_burst"}
            return found if len(found) == 2 else None

        alerts = wait_for(bursts, timeout=120, interval=1.0)
        assert alerts, "the click bursts raised no alerts"
        first, second = alerts["lb-0"], alerts["lb-1"]
        for alert in (first, second):  # indexed just after the alert is sent
            assert wait_for(lambda a=alert: worker.get(f"/alerts/{a['alert_id']}")[0] == 200, 30)

        # The real CLI against the worker: the version comes from the alert index.
        said = cli(
            space, "label", first["alert_id"], "fraud", "--by", "tester", "--url", worker.url
        )
        assert f"labelled alert {first['alert_id']} fraud (click_burst v1, by tester)" in (
            said.stdout
        )
        written = json.loads(said.stdout.splitlines()[-1])
        assert written["rule_version"] == 1 and written["kind"] == "alert"
        assert wait_for(lambda: precision(worker).get(("click_burst", "1")) == 1.0, 30), precision(
            worker
        )

        status, answer = label(worker, {"id": second["alert_id"], "label": "legit", "by": "t"})
        assert status == 200, answer
        assert answer["label"]["rule_version"] == 1 and answer["topic"] == space.topics["labels"]
        assert wait_for(lambda: precision(worker).get(("click_burst", "1")) == 0.5, 30), precision(
            worker
        )
        status, text = worker.get("/metrics")
        assert 'fraudapp_labels{label="legit",rule="click_burst",version="1"} 1.0' in text, text
        assert counts(worker) == {("click_burst", 1): (1, 1)}
        status, one = worker.get(f"/labels/{second['alert_id']}")
        assert status == 200 and one["label"]["label"] == "legit", one

        # Bad requests: an unknown label word, an id of nothing, a mismatched version.
        status, refused = label(worker, {"id": second["alert_id"], "label": "maybe"})
        assert status == 400 and refused["reason"] == "bad_field_type", refused
        assert "fraud or legit" in refused["error"]
        status, refused = label(worker, {"id": "not-an-id", "label": "fraud"})
        assert status == 400, refused
        status, refused = worker.request("POST", "/labels", b"{not json")
        assert status == 400 and refused["reason"] == "not_json", refused
        gone = f"stacked_ads-{HEX}"
        status, refused = label(worker, {"id": gone, "label": "fraud"})
        assert status == 404 and "rule_version" in refused["error"], refused
        status, refused = label(
            worker, {"id": second["alert_id"], "label": "fraud", "rule_version": 2}
        )
        assert status == 400 and refused["reason"] == "version_mismatch", refused

        # Relabelled (CLI), then withdrawn (CLI): the latest word per id counts.
        cli(space, "label", second["alert_id"], "fraud", "--url", worker.url)
        settles(worker, {("click_burst", 1): (2, 0)})
        said = cli(space, "label", second["alert_id"], "--withdraw", "--url", worker.url)
        assert "withdrew the label" in said.stdout and "(was fraud)" in said.stdout
        settles(worker, {("click_burst", 1): (1, 0)})
        assert worker.get(f"/labels/{second['alert_id']}")[0] == 404

        # An alert no longer in the index, with its version given; a whole case.
        status, answer = label(worker, {"id": gone, "label": "fraud", "rule_version": 1})
        assert status == 200 and answer["label"]["rule"] == "stacked_ads", answer
        case = case_of(first)
        status, answer = label(worker, {"id": case, "label": "legit", "rule_version": 1})
        assert status == 200 and answer["label"]["kind"] == "case", answer
        expected = {("click_burst", 1): (1, 1), ("stacked_ads", 1): (1, 0)}
        settles(worker, expected)
        # A failed CLI call says why and exits 2.
        said = cli(space, "label", f"rate_limit-{HEX}", "legit", "--url", worker.url, ok=False)
        assert said.returncode == 2 and "404" in said.stderr, said.stderr

    # A restarted worker loads the tally from its store.
    with running(space.worker(tmp_path / "w")) as again:
        settles(again, expected)
        assert precision(again) == {("click_burst", "1"): 0.5, ("stacked_ads", "1"): 1.0}

    # The replay of the clicks scored with a dump of the topic (kcat -J style, so the
    # tombstone of the withdrawn label is in it).
    records = asyncio.run(kafkaio.read_topic(space.bootstrap, space.topics["labels"]))
    dump = tmp_path / "labels.jsonl"
    dump.write_text(
        "".join(
            json.dumps(
                {
                    "key": m.key.decode(),
                    "payload": None if m.value is None else m.value.decode(),
                }
            )
            + "\n"
            for m in records
        )
    )
    said = cli(
        space, "replay", "--topic", space.topics["clicks"], "--labels", str(dump), "--quiet"
    ).stdout
    assert "labels: 3 (2 fraud, 1 legit)" in said, said
    rows = {line.split()[0]: line.split()[1:] for line in said.splitlines()[-2:]}
    # click_burst: the fraud alert alerted again, the case labelled legit alerted again.
    assert rows["click_burst"] == ["1", "1", "1", "0.500", "0"], said
    # stacked_ads: labelled fraud, not raised by the replay: missed.
    assert rows["stacked_ads"] == ["1", "0", "0", "-", "1"], said
