"""Backtests: the replay engine against the brute-force oracles, rule sets compared,
shadow and paused rules, labels scored, and the command line end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from fraudapp.adnet import oracle
from fraudapp.atm.detect import severity_of as atm_severity
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.oracle import expected_pairs
from fraudapp.cli.main import main
from fraudapp.cli.replaycli import scores
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import SEVERITIES, defaults
from fraudapp.core.settings import Settings
from fraudapp.replay import Backtest, Outcome, run
from tests.integration.helpers import as_oracle_row

SETTINGS = Settings()
RULES = defaults(SETTINGS, tables_dir() / "rules.json")


@pytest.fixture(scope="module")
def clicks() -> list[dict]:
    return arrival_order(generate_clicks(6_000, seed=71), max_delay_ms=20_000, seed=72)


def replayed(events: list[dict], rules=RULES) -> Outcome:
    return run(Backtest(rules, SETTINGS, tables_dir()), [orjson.dumps(e) for e in events])


def alerted(outcome: Outcome, rule: str, alerts: str = "alerts") -> set[str]:
    return {a["click_id"] for a in getattr(outcome, alerts) if a["rule"] == rule}


def test_the_exact_click_checks_equal_their_oracles(clicks: list[dict]) -> None:
    outcome = replayed(clicks)
    assert alerted(outcome, "click_burst") == fraudulent_click_ids(clicks)
    assert alerted(outcome, "stacked_ads") == oracle.stacked_click_ids(clicks)
    assert alerted(outcome, "rate_limit") == oracle.over_limit_click_ids(clicks)
    assert alerted(outcome, "ip_blocklist") >= oracle.blocklisted_click_ids(
        clicks, tables_dir() / "blocklist"
    )
    assert outcome.clicks == len(clicks) and not outcome.dead_letters


def test_atm_pairs_equal_the_oracle() -> None:
    txns = generate_txns(1_500, seed=73)
    outcome = replayed(txns)
    rows = [as_oracle_row(t) for t in txns]
    got = {
        (a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"]) for a in outcome.alerts
    }
    assert got == set(expected_pairs(rows)) and got
    assert outcome.txns == len(txns)


def test_every_alert_is_graded_and_every_atm_pair_still_alerts() -> None:
    """Grading changes no alert set (the oracle test above holds): it only says how
    bad each one is, by the evidence, with the live code's thresholds."""
    outcome = replayed(generate_txns(1_500, seed=73))
    assert outcome.alerts and {a["severity"] for a in outcome.alerts} <= set(SEVERITIES)
    for alert in outcome.alerts:
        assert alert["severity"] == atm_severity(
            alert["kmh_required"], RULES["atm_impossible_travel"].params
        )


def test_a_version_with_other_thresholds_grades_the_same_alerts_otherwise(
    clicks: list[dict],
) -> None:
    def graded(outcome: Outcome) -> dict[str, str]:
        return {a["alert_id"]: a["severity"] for a in outcome.alerts if a["rule"] == "rate_limit"}

    before = graded(replayed(clicks))
    everything_critical = RULES["rate_limit"].changed(
        medium_ratio=0.0, high_ratio=0.0, critical_ratio=0.0
    )
    after = graded(replayed(clicks, {**RULES, "rate_limit": everything_critical}))
    assert set(after) == set(before) and before
    assert set(after.values()) == {"critical"} != set(before.values())


def test_bad_records_are_counted_by_reason_as_a_worker_would_dead_letter_them() -> None:
    lines = [b"{not json", b"[1]", orjson.dumps({"session_id": "s", "url": "u"})]
    outcome = run(Backtest(RULES, SETTINGS, tables_dir()), lines)
    assert sum(outcome.dead_letters.values()) == 3 and "not_json" in outcome.dead_letters


def test_shadow_and_paused_rules(clicks: list[dict]) -> None:
    shadow = {**RULES, "click_burst": replace(RULES["click_burst"], mode="shadow")}
    outcome = replayed(clicks, shadow)
    assert alerted(outcome, "click_burst") == set()
    assert alerted(outcome, "click_burst", "shadow") == fraudulent_click_ids(clicks)
    paused = {**RULES, "stacked_ads": replace(RULES["stacked_ads"], enabled=False)}
    outcome = replayed(clicks, paused)
    assert alerted(outcome, "stacked_ads") == set() == alerted(outcome, "stacked_ads", "shadow")


def test_a_higher_threshold_only_removes_alerts(clicks: list[dict]) -> None:
    before = alerted(replayed(clicks), "click_burst")
    stricter = {**RULES, "click_burst": RULES["click_burst"].changed(threshold=4)}
    after = replayed(clicks, stricter)
    assert alerted(after, "click_burst") < before
    assert {a["rule_version"] for a in after.alerts if a["rule"] == "click_burst"} == {2}


def test_labels_give_precision_and_recall(clicks: list[dict]) -> None:
    fraud = fraudulent_click_ids(clicks)
    labelled = [{**c, "is_fraud": c["click_id"] in fraud} for c in clicks]
    rows = {row[0]: row for row in scores(replayed(labelled))}
    _, alerts, flagged, precision, recall = rows["click_burst"]
    assert (flagged, precision, recall) == (len(fraud), 1.0, 1.0) and alerts == len(fraud)
    assert rows["stacked_ads"][3] < 1.0  # its clicks are not all bursts


def test_the_command_writes_alerts_and_compares_rule_sets(
    clicks: list[dict], tmp_path: Path, capsys
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(c) + b"\n" for c in clicks))
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(events), "--out", str(out), "--quiet"]) == 0
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {a["click_id"] for a in written if a["rule"] == "click_burst"} == fraudulent_click_ids(
        clicks
    )
    assert "click_burst" in capsys.readouterr().out
    stricter = tmp_path / "b.json"
    stricter.write_bytes(orjson.dumps([RULES["click_burst"].changed(threshold=4).as_dict()]))
    same = tmp_path / "a.json"
    same.write_bytes(b"[]")
    assert main(["replay", str(events), "--compare", str(same), str(stricter), "--quiet"]) == 0
    table = capsys.readouterr().out
    burst = next(line for line in table.splitlines() if line.startswith("click_burst"))
    a, b, added, removed = (int(x.replace(",", "")) for x in burst.split()[1:])
    assert added == 0 and removed == a - b > 0
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"rule": "click_burst", "version": 2, "params": {}}]')
    assert main(["replay", str(events), "--rules", str(bad), "--quiet"]) == 2
