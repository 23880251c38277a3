"""Snoozes (durations, records, audit), the idempotency key of a case notification,
and the demo's tally of case records."""

from __future__ import annotations

import pytest

from fraudapp.cli.democases import CaseTally, describe_case
from fraudapp.core.caseids import case_id
from fraudapp.core.snooze import (
    MAX_MS,
    SnoozeError,
    audit_record,
    in_force,
    parse_duration,
    snooze_record,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90_000),
        ("30m", 1_800_000),
        ("1h", 3_600_000),
        ("2d", 172_800_000),
        ("0", 0),
        (45, 45_000),
        ("1.5h", 5_400_000),
    ],
)
def test_durations(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "1w", "-1h", "31d", "soon", True])
def test_bad_durations_are_refused_with_a_reason(text: object) -> None:
    with pytest.raises(SnoozeError):
        parse_duration(text)  # type: ignore[arg-type]
    assert MAX_MS == 30 * 86_400_000


def test_a_snooze_names_its_case_and_is_audited() -> None:
    record = snooze_record(
        rule="rate_limit", entity="ip:10.1.2.3", for_ms=60_000, now_ms=1_000, by="ana"
    )
    assert record["case_id"] == case_id("rate_limit", "ip:10.1.2.3")
    assert record["until"] == 61_000 and in_force(record, 60_999) and not in_force(record, 61_000)
    assert audit_record(record)["action"] == "snooze"
    lifted = snooze_record(rule="rate_limit", entity="ip:10.1.2.3", for_ms=0, now_ms=5, by="ana")
    assert audit_record(lifted)["action"] == "unsnooze" and not in_force(lifted, 5)
    with pytest.raises(SnoozeError):
        snooze_record(rule="nope", entity="x", for_ms=1, now_ms=0, by="ana")
    with pytest.raises(SnoozeError):
        snooze_record(rule="rate_limit", entity="", for_ms=1, now_ms=0, by="ana")


def test_the_demo_tally_counts_records_against_alerts() -> None:
    tally = CaseTally()
    for _ in range(40):
        tally.alert()
    case = {
        "case_id": "c1",
        "transition": "opened",
        "status": "open",
        "rule": "rate_limit",
        "entity": "ip:1.2.3.4",
        "severity": "low",
        "alert_count": 1,
        "episode": 1,
    }
    tally.record(case, "c1")
    tally.record({**case, "transition": "resolved", "status": "resolved"}, "c1")
    assert (
        tally.summary()
        == "CASES 0 open, 1 resolved: 40 alerts made 2 case records (5.0 % of the alerts)"
    )
    tally.record(None, "c1")
    assert "0 open, 0 resolved" in tally.summary()
    line = describe_case({**case, "action": {"status": "active", "ip": "1.2.3.4"}}, "http://w")
    assert (
        line
        == "CASE opened rate_limit ip:1.2.3.4 [low]: 1 alert, 1.2.3.4 blocked -> http://w/cases/c1"
    )


def test_a_notification_is_keyed_by_case_episode_and_transition() -> None:
    from fraudapp.live.notify import idempotency_key, wants_notice

    case = {"case_id": "case-x", "episode": 2, "transition": "opened", "severity": "low"}
    assert idempotency_key(case) == "case-x:2:opened"
    escalated = {**case, "transition": "escalated", "severity": "high"}
    assert idempotency_key(escalated) == "case-x:2:escalated:high"
    assert wants_notice({"notify": True}) and not wants_notice({"notify": False})
