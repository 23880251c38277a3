"""Cases in event time, without a broker: open, update, escalate, resolve, reopen,
expire, repeats, actions; and the same cases whatever the alerts' arrival order."""

from __future__ import annotations

import random

import pytest

from fraudapp.core.alerts import make_alert
from fraudapp.core.caseids import case_id, case_of, entity_of, is_case_id, rule_of
from fraudapp.core.cases import Action, CasePartition, CasePolicy, ip_of

POLICY = CasePolicy(quiet_ms=60_000, lateness_ms=10_000, update_every_ms=30_000, keep_ms=600_000)
T0 = 1_700_000_000_000


def alert(t: int, n: int, *, rule: str = "rate_limit", key: str = "ip:10.1.2.3", sev: str = "low"):
    a = make_alert(
        rule=rule,
        rule_version=1,
        key=key,
        event_time=t,
        identity=(key, f"c{n}"),
        evidence={"click_id": f"c{n}", "source": key},
        detected_at=0,
    )
    a["severity"] = sev
    a["notify"] = True
    return a


def transitions(changes):
    return [(c.transition, c.case_id) for c in changes]


def test_ids_are_derived_and_name_their_rule() -> None:
    a = alert(T0, 1)
    assert case_of(a) == case_id("rate_limit", "ip:10.1.2.3")
    assert is_case_id(case_of(a)) and rule_of(case_of(a)) == "rate_limit"
    assert rule_of(a["alert_id"]) == "rate_limit" and not is_case_id(a["alert_id"])
    heavy = {"rule": "heavy_hitter", "key": "cmp-1", "kind": "ip", "source": "10.0.0.1"}
    assert entity_of(heavy) == "cmp-1|ip:10.0.0.1"
    assert rule_of("nonsense") is None


def test_a_case_opens_counts_updates_resolves_and_reopens_in_event_time() -> None:
    store: dict[bytes, bytes] = {}
    part = CasePartition(POLICY, store)
    outcome, changes = part.add(alert(T0, 1), T0)
    assert outcome == "added" and [c.transition for c in changes] == ["opened"]
    cid = changes[0].case_id
    # Alerts within the update interval write no record; the table counts them.
    for n in range(2, 10):
        _, changes = part.add(alert(T0 + n * 1000, n), T0 + n * 1000)
        assert changes == []
    assert part.case(cid)["alert_count"] == 9
    _, changes = part.add(alert(T0 + 31_000, 10), T0 + 31_000)
    assert [c.transition for c in changes] == ["updated"]
    # Quiet: resolved only once the watermark passes last_seen + quiet + lateness.
    last = T0 + 31_000
    assert part.sweep(last + 69_999) == []
    (resolved,) = part.sweep(last + 70_000)
    assert resolved.transition == "resolved" and resolved.case["resolved_at"] == last + 60_000
    assert resolved.case["alert_count"] == 10
    # A later alert reopens the same case as a new episode.
    _, changes = part.add(alert(last + 80_000, 11), last + 80_000)
    (reopened,) = changes
    assert reopened.transition == "reopened" and reopened.case_id == cid
    assert reopened.case["episode"] == 2 and reopened.case["episode_alerts"] == 1
    assert reopened.case["alert_count"] == 11


def test_severity_rises_escalate_once_per_level() -> None:
    part = CasePartition(POLICY, {})
    part.add(alert(T0, 1, sev="low"), T0)
    _, changes = part.add(alert(T0 + 1, 2, sev="high"), T0)
    assert [c.transition for c in changes] == ["escalated"]
    _, changes = part.add(alert(T0 + 2, 3, sev="medium"), T0)
    assert changes == []
    assert part.case(case_of(alert(T0, 1)))["severity"] == "high"


def test_a_repeat_changes_nothing_and_a_too_late_alert_is_told() -> None:
    store: dict[bytes, bytes] = {}
    part = CasePartition(POLICY, store)
    part.add(alert(T0, 1), T0)
    assert part.add(alert(T0, 1), T0 + 5_000) == ("repeat", [])
    assert part.case(case_of(alert(T0, 1)))["alert_count"] == 1
    outcome, _ = part.add(alert(T0 - 80_000, 2), T0 + 5_000)
    assert outcome == "late"


def test_a_restarted_partition_resolves_from_its_recovered_state() -> None:
    store: dict[bytes, bytes] = {}
    CasePartition(POLICY, store).add(alert(T0, 1), T0)
    again = CasePartition(POLICY, store, seed=list(store.items()))
    assert again.add(alert(T0, 1), T0)[0] == "repeat"
    (resolved,) = again.sweep(T0 + 70_000)
    assert resolved.transition == "resolved"


def test_a_resolved_case_expires_after_keep_as_a_tombstone() -> None:
    store: dict[bytes, bytes] = {}
    part = CasePartition(POLICY, store)
    part.add(alert(T0, 1), T0)
    part.sweep(T0 + 70_000)
    (expired,) = part.sweep(T0 + 60_000 + 600_000)
    assert expired.transition == "expired" and expired.as_record() is None
    assert not [k for k in store if k.startswith(b"c/")]
    assert not [k for k in store if k.startswith(b"a/")]  # markers expire too


def test_block_ip_action_blocks_on_open_and_lifts_at_its_end_in_event_time() -> None:
    part = CasePartition(POLICY, {})
    act = Action("block_ip", ttl_ms=20_000, rule_version=2)
    _, (opened,) = part.add(alert(T0, 1), T0, act)
    (block,) = opened.effects
    assert block["ip"] == "10.1.2.3" and block["until"] == T0 + 20_000
    assert opened.case["action"]["status"] == "active"
    _, changes = part.add(alert(T0 + 5_000, 2), T0 + 19_999, act)
    assert changes == []  # no second block while the case is open
    (lifted,) = part.sweep(T0 + 20_000)
    assert lifted.transition == "lifted" and not lifted.record
    assert lifted.effects == [{"type": "lift_ip", "ip": "10.1.2.3", "case_id": opened.case_id}]
    assert part.case(opened.case_id)["action"]["status"] == "lifted"


@pytest.mark.parametrize(
    ("entity", "blocked", "status"),
    [("device:d1", False, "skipped"), ("ip:10.9.9.9", True, "skipped")],
)
def test_block_ip_leaves_devices_and_listed_ips_alone(entity: str, blocked: bool, status: str):
    part = CasePartition(POLICY, {}, is_blocked=lambda ip: blocked)
    _, (opened,) = part.add(alert(T0, 1, key=entity), T0, Action("block_ip", 1000, 1))
    assert opened.effects == [] and opened.case["action"]["status"] == status
    assert ip_of({"rule": "heavy_hitter", "entity": "cmp|ip:1.2.3.4"}) == "1.2.3.4"


@pytest.mark.parametrize("spacing_ms", [200, 5_000, 45_000, 200_000])
def test_the_cases_do_not_depend_on_arrival_order(spacing_ms: int) -> None:
    """Alerts of several entities, dense or sparse in event time, arriving shuffled
    within the lateness: the same episodes and counts as in event-time order."""
    rng = random.Random(spacing_ms)
    alerts = [
        alert(T0 + i * spacing_ms + rng.randrange(spacing_ms), i, key=f"ip:10.0.0.{i % 3}")
        for i in range(60)
    ]

    def outcome(change):
        case = change.case or {}
        if change.transition in ("opened", "reopened"):  # its time: the first to arrive
            return (change.transition, change.case_id)
        fields = ("opened_at", "last_seen", "alert_count", "episode_alerts", "episode")
        return (change.transition, change.case_id, change.at, *map(case.get, fields))

    def run(order):
        part = CasePartition(POLICY, {})
        seen = []
        newest = None
        for a in order:
            newest = a["event_time"] if newest is None else max(newest, a["event_time"])
            _, changes = part.add(a, newest - POLICY.lateness_ms)
            seen += [outcome(c) for c in changes if c.transition not in ("updated", "escalated")]
        seen += [outcome(c) for c in part.sweep(newest + 10**9)]
        return sorted(seen, key=repr)

    ordered = sorted(alerts, key=lambda a: a["event_time"])
    shuffled = sorted(alerts, key=lambda a: a["event_time"] + rng.randrange(POLICY.lateness_ms))
    expected = run(ordered)
    assert any(o[0] == "reopened" for o in expected) == (spacing_ms >= 45_000)
    assert expected == run(shuffled)
