"""Rules as data: the shipped file, validation, versions, and a rule changed mid-stream."""

from __future__ import annotations

import orjson
import pytest

from fraudapp.cli.rulescli import changes_of
from fraudapp.clicks.detect import BurstRule
from fraudapp.clicks.models import Click
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import SCHEMAS, RuleBook, RuleError, decode, defaults, load_rules
from fraudapp.core.settings import Settings

RULES = tables_dir() / "rules.json"
T0 = 1_767_225_600_000


def record(**overrides: object) -> dict:
    base = {
        "rule": "click_burst",
        "version": 2,
        "params": {"threshold": 5, "window_ms": 10_000, "lateness_ms": 30_000},
    }
    return {**base, **overrides}


def test_the_shipped_file_holds_every_rule_at_version_1() -> None:
    shipped = load_rules(RULES)
    assert set(shipped) == set(SCHEMAS)
    assert {r.version for r in shipped.values()} == {1}


def test_the_settings_defaults_are_the_shipped_file() -> None:
    """The environment variables' defaults and tables/rules.json must say the same."""
    assert defaults(Settings(), RULES) == load_rules(RULES)


def test_the_environment_overrides_the_file_at_version_1() -> None:
    env = {
        "CLICK_BURST_THRESHOLD": "7",
        "STACKED_ADS_ENABLED": "false",
        "NOTIFY_RULES": "click_burst",
    }
    rules = defaults(Settings.from_env(env), RULES)
    assert rules["click_burst"].params["threshold"] == 7 and rules["click_burst"].version == 1
    assert not rules["stacked_ads"].enabled
    assert not rules["atm_impossible_travel"].notify and rules["click_burst"].notify


def test_a_valid_record_decodes_with_its_defaults() -> None:
    rule = decode(orjson.dumps(record()), b"click_burst")
    assert (rule.version, rule.enabled, rule.mode, rule.severity) == (2, True, "live", "medium")
    assert (rule.action, rule.action_ttl_ms) == ("none", 3_600_000)
    # Written before the grading thresholds existed: they take their defaults.
    assert rule.params == {
        "lateness_ms": 30_000,
        "threshold": 5,
        "window_ms": 10_000,
        "medium_ratio": 2.0,
        "high_ratio": 4.0,
        "critical_ratio": 10.0,
    }
    assert rule.counts


def test_a_record_from_before_the_grading_and_actions_writes_them_all_back() -> None:
    """An old record on a user's topic stays valid; the next version written from it
    (``rules set``) holds every field, so it reads the same without the defaults."""
    old = {
        "rule": "atm_impossible_travel",
        "version": 4,
        "enabled": True,
        "mode": "live",
        "severity": "high",
        "notify": True,
        "params": {"window_ms": 600_000, "lateness_ms": 3_600_000},
    }
    rule = decode(orjson.dumps(old), b"atm_impossible_travel")
    written = rule.as_dict()
    assert written["params"] == {
        "window_ms": 600_000,
        "lateness_ms": 3_600_000,
        "medium_kmh": 50.0,
        "high_kmh": 150.0,
        "critical_kmh": 1000.0,
    }
    assert (written["action"], written["action_ttl_ms"]) == ("none", 3_600_000)
    assert decode(rule.encode()) == rule
    assert rule.changed(critical_kmh=900).params["critical_kmh"] == 900.0


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b"{nope", b"click_burst", "bad_rule"),
        (None, b"click_burst", "bad_rule"),
        (b"[1]", b"click_burst", "bad_rule"),
        (orjson.dumps(record(rule="click_storm")), b"click_storm", "unknown_rule"),
        (orjson.dumps(record()), b"rate_limit", "bad_rule"),
        (orjson.dumps(record(version=0)), b"click_burst", "bad_rule"),
        (orjson.dumps(record(version="2")), b"click_burst", "bad_rule"),
        (orjson.dumps(record(version=True)), b"click_burst", "bad_rule"),
        (orjson.dumps(record(mode="loud")), b"click_burst", "bad_rule"),
        (orjson.dumps(record(severity="extreme")), b"click_burst", "bad_rule"),
        (orjson.dumps(record(enabled="yes")), b"click_burst", "bad_rule"),
        (orjson.dumps(record(extra=1)), b"click_burst", "bad_rule"),
        (orjson.dumps(record(params={"threshold": 5})), b"click_burst", "bad_rule"),
        # A grading threshold given must be in range, and the three must not cross.
        (
            orjson.dumps(
                record(params={"threshold": 3, "window_ms": 1, "lateness_ms": 1, "high_ratio": 0.5})
            ),
            b"click_burst",
            "bad_rule",
        ),
        (
            orjson.dumps(
                record(params={"threshold": 3, "window_ms": 1, "lateness_ms": 1, "high_ratio": 11})
            ),
            b"click_burst",
            "bad_rule",
        ),
        (orjson.dumps(record(action="block_ip")), b"click_burst", "bad_rule"),
        (orjson.dumps(record(action="shout")), b"click_burst", "bad_rule"),
        (
            orjson.dumps(record(params={"threshold": 0, "window_ms": 1, "lateness_ms": 1})),
            b"click_burst",
            "bad_rule",
        ),
        (
            orjson.dumps(record(params={"threshold": 2.5, "window_ms": 1, "lateness_ms": 1})),
            b"click_burst",
            "bad_rule",
        ),
        (
            orjson.dumps(record(params={"threshold": True, "window_ms": 1, "lateness_ms": 1})),
            b"click_burst",
            "bad_rule",
        ),
        (
            orjson.dumps(record(params={"threshold": 3, "window_ms": 1, "lateness_ms": 1, "x": 1})),
            b"click_burst",
            "bad_rule",
        ),
        (
            orjson.dumps(
                {
                    "rule": "heavy_hitter",
                    "version": 2,
                    "params": {"share_threshold": 1.5, "min_clicks": 10},
                }
            ),
            b"heavy_hitter",
            "bad_rule",
        ),
    ],
)
def test_a_bad_record_is_refused_with_a_reason(raw: bytes | None, key: bytes, reason: str) -> None:
    with pytest.raises(RuleError) as caught:
        decode(raw, key)
    assert caught.value.reason == reason and caught.value.message


def test_the_book_takes_only_newer_versions_and_tells_listeners_once() -> None:
    book = RuleBook(load_rules(RULES))
    seen: list[int] = []
    book.on_change("click_burst", lambda r: seen.append(r.version))
    v2 = decode(orjson.dumps(record()))
    assert book.apply(v2) and book["click_burst"] is v2
    assert not book.apply(v2)  # the same record again (a restart reads the topic again)
    with pytest.raises(RuleError) as caught:
        book.apply(decode(orjson.dumps(record(version=1))))
    assert caught.value.reason == "stale_rule"
    assert book["click_burst"] is v2 and seen == [2]


def test_a_change_is_the_next_version_of_the_whole_rule() -> None:
    v1 = load_rules(RULES)["click_burst"]
    v2 = v1.changed(**changes_of(["threshold=5", "mode=shadow", "notify=true"]), changed_by="me")
    assert v2.version == 2 and v2.params["threshold"] == 5 and v2.params["window_ms"] == 10_000
    assert (v2.mode, v2.notify, v2.changed_by, v2.counts) == ("shadow", True, "me", False)
    assert not v2.changed(enabled=False).counts
    with pytest.raises(RuleError):
        v1.changed(threshold=-1)
    with pytest.raises(RuleError):
        v1.changed(colour="red")
    with pytest.raises(RuleError):
        changes_of(["threshold"])


def click(click_id: str, ts: int) -> Click:
    return Click(click_id=click_id, session_id="s", url="u", timestamp=T0 + ts)


def test_a_new_threshold_applies_from_the_next_event_on_kept_state() -> None:
    processor = KeyedPartition(BurstRule(threshold=3), {})
    for i in range(3):
        assert processor.process(click(f"a{i}", i)).result.fraud is (i == 2)
    processor.set_rule(BurstRule(threshold=5, version=2))
    # The state kept under v1 counts: the 4th and 5th clicks are judged against 5.
    results = [processor.process(click(f"b{i}", 10 + i)).result for i in range(2)]
    assert [r.fraud for r in results] == [False, True]  # 4 < 5, then 5 clicks in 10 s
    assert results[0].findings == []
    assert "b1" in {f.click_id for f in results[1].findings}


def test_a_shorter_window_reads_less_of_the_state_and_a_longer_one_keeps_more() -> None:
    processor = KeyedPartition(BurstRule(threshold=3, window_ms=10_000), {})
    for i, ts in enumerate((0, 4_000)):
        processor.process(click(f"a{i}", ts))
    processor.set_rule(BurstRule(threshold=3, window_ms=2_000, version=2))
    assert processor.clock.retention_ms == 2_000 + 30_000
    assert not processor.process(click("c", 5_000)).result.fraud  # only 4 000 is within 2 s
    processor.set_rule(BurstRule(threshold=3, window_ms=10_000, version=3))
    assert processor.process(click("d", 6_000)).result.fraud  # all four are still kept
