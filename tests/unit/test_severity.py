"""Severity from the evidence: each rule's grading against its version's thresholds,
the boundaries (inclusive), the router keeping a graded severity, and the actions a
rule version may ask for."""

from __future__ import annotations

import orjson
import pytest

from fraudapp.adnet.alerting import blocklist_severity, location_severity
from fraudapp.adnet.blocklist import Blocklist, BlockMatch
from fraudapp.adnet.heavy import HeavyFinding
from fraudapp.adnet.source import RateFinding, SourceRule, StackFinding
from fraudapp.atm import detect as atm
from fraudapp.atm.models import Txn
from fraudapp.cli.main import build_parser
from fraudapp.cli.rulescli import changes_of
from fraudapp.clicks import detect as clicks
from fraudapp.clicks.models import Click
from fraudapp.core.alerts import make_alert
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import (
    GRADED,
    SCHEMAS,
    SEVERITIES,
    SOURCE_RULES,
    RuleBook,
    RuleError,
    decode,
    default_params,
    grade,
    load_rules,
)

RULES = load_rules(tables_dir() / "rules.json")
T0 = 1_767_225_600_000


def params(rule: str) -> dict:
    return dict(RULES[rule].params)


# -- the ladder and the shipped thresholds ---------------------------------------------------


def test_every_grading_rule_ships_its_thresholds_equal_to_the_schemas_defaults() -> None:
    """tables/rules.json lists the thresholds; a record without them means the same."""
    assert set(GRADED) == set(SCHEMAS) - {"ip_blocklist"}
    for rule, unit in GRADED.items():
        names = {f"{s}_{unit}" for s in ("medium", "high", "critical")}
        assert set(default_params(rule)) == names, rule
        assert {k: RULES[rule].params[k] for k in names} == default_params(rule), rule


@pytest.mark.parametrize(
    ("value", "severity"),
    [(0.0, "low"), (1.999, "low"), (2.0, "medium"), (3.9, "medium"), (4.0, "high"),
     (9.99, "high"), (10.0, "critical"), (1e9, "critical")],
)  # fmt: skip
def test_the_ladder_is_inclusive_at_each_threshold(value: float, severity: str) -> None:
    thresholds = {"medium_x": 2.0, "high_x": 4.0, "critical_x": 10.0}
    assert grade(value, thresholds, "x") == severity


def test_equal_thresholds_skip_a_grade() -> None:
    thresholds = {"medium_x": 2, "high_x": 2, "critical_x": 5}
    assert [grade(v, thresholds, "x") for v in (1, 2, 5)] == ["low", "high", "critical"]


# -- ATM: the speed the pair needs -----------------------------------------------------------

LEEDS = (53.8008, -1.5491)
#: A cash machine 4 km north of LEEDS's.
NEIGHBOUR = (53.8008 + 4 / 111.195, -1.5491)


def pair_at(other: tuple[float, float], gap_ms: int) -> atm.TravelPair:
    processor = KeyedPartition(atm.TravelRule(), {})
    processor.process(Txn("a1", "t1", "ATM", 20, *LEEDS, T0))
    (pair,) = processor.process(Txn("a1", "t2", "ATM", 40, *other, T0 + gap_ms)).result.pairs
    return pair


def test_neighbouring_atms_ten_minutes_apart_are_low_yet_still_alerted() -> None:
    pair = pair_at(NEIGHBOUR, 600_000)
    alert = atm.travel_alert(pair, 1, atm.customer_evidence(None))
    assert 23.9 < alert["kmh_required"] < 24.1
    assert alert["severity"] == "low" and alert["rule"] == atm.RULE_NAME


def test_the_seeds_pair_at_4648_kmh_is_critical() -> None:
    t1 = Txn("ac_03", "04", "Wells Fargo", 50, 37.5522855, -121.9797997, T0)
    t2 = Txn("ac_03", "X05", "Barclays", 500, 33.5522855, -120.9797997, T0 + 351_473)
    processor = KeyedPartition(atm.TravelRule(), {})
    processor.process(t1)
    (pair,) = processor.process(t2).result.pairs
    alert = atm.travel_alert(pair, 1, atm.customer_evidence(None))
    assert alert["kmh_required"] == 4648.888083433872
    assert alert["severity"] == "critical"


@pytest.mark.parametrize(
    ("kmh", "severity"),
    [(49.99, "low"), (50.0, "medium"), (149.99, "medium"), (150.0, "high"),
     (999.99, "high"), (1000.0, "critical")],
)  # fmt: skip
def test_atm_boundaries(kmh: float, severity: str) -> None:
    assert atm.severity_of(kmh, params(atm.RULE_NAME)) == severity


def test_the_atm_thresholds_of_the_version_given_grade_the_alert() -> None:
    pair = pair_at(NEIGHBOUR, 600_000)  # 24 km/h
    stricter = {**params(atm.RULE_NAME), "medium_kmh": 20.0}
    alert = atm.travel_alert(pair, 2, {}, stricter)
    assert alert["severity"] == "medium" and alert["rule_version"] == 2


# -- click bursts: clicks in the window over the threshold ------------------------------------


def burst(n: int, threshold: int = 3) -> list[clicks.BurstFinding]:
    """The findings of ``n`` clicks on one URL, 100 ms apart."""
    processor = KeyedPartition(clicks.BurstRule(threshold=threshold), {})
    found: list[clicks.BurstFinding] = []
    for i in range(n):
        click = Click(click_id=f"c{i:03}", session_id="s", url="u", timestamp=T0 + 100 * i)
        found.extend(processor.process(click).result.findings)
    return found


def test_a_burst_climbs_from_low_to_critical_as_it_grows() -> None:
    findings = burst(30)
    graded = {f.count: clicks.burst_alert(f, 1)["severity"] for f in findings}
    assert graded[3] == graded[5] == "low"  # just a burst
    assert graded[6] == graded[11] == "medium"  # 2x the threshold
    assert graded[12] == graded[29] == "high"  # 4x
    assert graded[30] == "critical"  # 10x
    assert all(f.threshold == 3 for f in findings)


def test_a_burst_is_graded_relative_to_the_threshold_in_force() -> None:
    (finding,) = burst(6, threshold=6)
    assert finding.evidence()["threshold"] == 6
    assert clicks.burst_alert(finding, 2)["severity"] == "low"  # 6 of 6: just a burst
    assert clicks.severity_of(burst(6)[-1], params(clicks.RULE_NAME)) == "medium"  # 6 of 3


def test_the_click_thresholds_of_the_version_given_grade_the_alert() -> None:
    first = burst(3)[0]
    lenient = {**params(clicks.RULE_NAME), "medium_ratio": 1.0}
    assert clicks.burst_alert(first, 2, None, lenient)["severity"] == "medium"


# -- the rate limit: the source's minute against its allowance --------------------------------


def source_click(i: int, ts: int) -> Click:
    return Click(f"c{i:04}", "s", "u", T0 + ts, ip="10.0.0.1", ad_id="a", device_id="d")


def rate_findings(rule: SourceRule, times: list[int]) -> list[RateFinding]:
    processor = KeyedPartition(rule, {})
    found: list[RateFinding] = []
    for i, ts in enumerate(times):
        found.extend(processor.process(source_click(i, ts)).result.findings)
    return [f for f in found if isinstance(f, RateFinding)]


def test_a_flood_grades_by_its_clicks_in_the_minute_against_the_allowance() -> None:
    rule = SourceRule(stacked_enabled=False, per_minute=20.0, burst=5)
    findings = rate_findings(rule, [300 * i for i in range(200)])  # 200 a minute
    by_count = {f.clicks_last_minute: f.severity(params("rate_limit")) for f in findings}
    assert by_count[6] == by_count[39] == "low"  # over the burst, under 2x the rate
    assert by_count[40] == by_count[99] == "medium"
    assert by_count[100] == by_count[199] == "high"
    assert by_count[200] == "critical"  # 10x: 200 clicks in one minute
    assert findings[-1].evidence()["clicks_last_minute"] == 200


def test_the_gcras_excess_cannot_grade_it_is_capped_at_one_burst() -> None:
    """Why the minute's count, not ``excess_ms``: every click over the limit has its
    excess within one emission interval of the cap, the slightly quick and the flood."""
    rule = SourceRule(stacked_enabled=False, per_minute=20.0, burst=5)
    quick = rate_findings(rule, [0, 1, 2, 3, 4, 5])  # six at once: the 6th is over
    flood = rate_findings(rule, [300 * i for i in range(200)])
    interval = rule.interval_ms
    for finding in (*quick, *flood):
        assert (
            (rule.burst - 1) * interval < finding.evidence()["excess_ms"] <= rule.burst * interval
        )
    assert quick[0].severity(params("rate_limit")) == "low"
    assert flood[-1].severity(params("rate_limit")) == "critical"


def test_the_minute_is_the_one_ending_at_the_click() -> None:
    """(t - 60 s, t]: a click exactly a minute before is no longer in it."""
    rule = SourceRule(stacked_enabled=False, per_minute=1.0, burst=1)
    findings = rate_findings(rule, [0, 1, 60_000])
    assert [(f.click_id, f.clicks_last_minute) for f in findings] == [("c0001", 2), ("c0002", 2)]


def test_the_source_state_keeps_the_minute_a_click_is_graded_by() -> None:
    assert SourceRule(lateness_ms=0).retention_ms >= 60_000
    assert SourceRule(lateness_ms=0, rate_enabled=False).retention_ms == 15_001


# -- stacked ads: how many different ads ------------------------------------------------------


def stack(ads: int) -> StackFinding:
    shown = tuple((T0, f"c{i}", f"ad{i}") for i in range(ads))
    return StackFinding("c0", "device:d", T0, shown, 200)


@pytest.mark.parametrize(
    ("ads", "severity"),
    [(2, "low"), (3, "medium"), (4, "medium"), (5, "high"), (9, "high"), (10, "critical")],
)
def test_stacked_ads_boundaries(ads: int, severity: str) -> None:
    assert stack(ads).severity(params("stacked_ads")) == severity


def test_clicks_on_the_same_ad_do_not_make_a_deeper_stack() -> None:
    shown = tuple((T0, f"c{i}", "ad0" if i % 2 else "ad1") for i in range(20))
    assert StackFinding("c0", "device:d", T0, shown, 200).severity(params("stacked_ads")) == "low"


# -- heavy hitters and suspicious locations: shares -------------------------------------------


def heavy(share: float) -> HeavyFinding:
    clicks_ = round(share * 1000)
    return HeavyFinding("ip", "10.0.0.1", clicks_, 1000, share, clicks_, 0, 3_600_000, 0.2, 100)


@pytest.mark.parametrize(
    ("share", "severity"),
    [(0.2, "low"), (0.299, "low"), (0.3, "medium"), (0.5, "high"), (0.79, "high"),
     (0.8, "critical"), (1.0, "critical")],
)  # fmt: skip
def test_heavy_hitter_boundaries(share: float, severity: str) -> None:
    assert heavy(share).severity(params("heavy_hitter")) == severity


@pytest.mark.parametrize(
    ("frauds", "severity"),
    [(10, "low"), (14, "low"), (15, "medium"), (25, "high"), (40, "critical")],
)
def test_location_boundaries_out_of_50_clicks(frauds: int, severity: str) -> None:
    assert location_severity(50, frauds, params("suspicious_location")) == severity


# -- the blocklist: exact or probable ---------------------------------------------------------


def test_an_exact_match_has_the_versions_severity_a_bloom_match_one_lower() -> None:
    exact = BlockMatch("cidr", "192.168.7.0/24", False, None)
    probable = BlockMatch("ip", "192.168.7.8", True, 0.001)
    assert blocklist_severity(exact, "high") == "high"
    assert blocklist_severity(probable, "high") == "medium"
    assert blocklist_severity(probable, "critical") == "high"
    assert blocklist_severity(probable, "low") == "low"


def test_the_blocklist_tells_the_two_matches_apart() -> None:
    blocklist = Blocklist(expected_ips=1_000, fp_rate=0.001)
    blocklist.add_ips(["198.51.100.7"])
    blocklist.apply_update("203.0.113.0/24", True)
    blocklist.apply_update("192.0.2.9", True)
    assert blocklist.match("198.51.100.7").probabilistic
    assert not blocklist.match("203.0.113.5").probabilistic
    assert not blocklist.match("192.0.2.9").probabilistic


# -- the router keeps a graded severity -------------------------------------------------------


def alert(rule: str, **extra: object) -> dict:
    return make_alert(
        rule=rule, rule_version=1, key="k", event_time=T0, identity=("x",), evidence={}, **extra
    )


def test_route_keeps_a_graded_severity_and_falls_back_to_the_versions() -> None:
    book = RuleBook(RULES)
    graded = alert("atm_impossible_travel", severity="low")
    assert book.route(graded) == "live" and graded["severity"] == "low"  # v1 says "high"
    ungraded = alert("ip_blocklist")
    assert "severity" not in ungraded
    assert book.route(ungraded) == "live" and ungraded["severity"] == "high"
    bogus = {**alert("click_burst"), "severity": "apocalyptic"}
    book.route(bogus)
    assert bogus["severity"] == RULES["click_burst"].severity


def test_a_severity_is_a_keyword_never_evidence() -> None:
    with pytest.raises(ValueError, match="severity"):
        make_alert(
            rule="click_burst",
            rule_version=1,
            key="k",
            event_time=T0,
            identity=("x",),
            evidence={"severity": "critical"},
        )
    graded = alert("click_burst", severity="high")
    assert graded["severity"] == "high" and set(SEVERITIES) >= {graded["severity"]}


# -- optional parameters ----------------------------------------------------------------------


def test_a_record_may_give_some_thresholds_and_take_the_others_defaults() -> None:
    record = {
        "rule": "heavy_hitter",
        "version": 3,
        "params": {"share_threshold": 0.2, "min_clicks": 100, "critical_share": 0.9},
    }
    rule = decode(orjson.dumps(record), b"heavy_hitter")
    assert rule.params["critical_share"] == 0.9
    assert (rule.params["medium_share"], rule.params["high_share"]) == (0.3, 0.5)
    with pytest.raises(RuleError, match="high_share"):
        rule.changed(high_share=0.95)  # above critical_share
    with pytest.raises(RuleError, match="critical_share"):
        rule.changed(critical_share=1.5)  # a share ends at 1


def test_a_required_parameter_is_still_required() -> None:
    record = {"rule": "heavy_hitter", "version": 3, "params": {"min_clicks": 100}}
    with pytest.raises(RuleError, match="missing") as caught:
        decode(orjson.dumps(record), b"heavy_hitter")
    missing = caught.value.message.split("missing")[1]
    assert "share_threshold" in missing and "medium_share" not in missing


# -- actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", SOURCE_RULES)
def test_a_traffic_source_rule_may_block_ips(rule: str) -> None:
    changed = RULES[rule].changed(action="block_ip", action_ttl_ms=60_000)
    assert (changed.action, changed.action_ttl_ms, changed.version) == ("block_ip", 60_000, 2)
    written = orjson.loads(changed.encode())
    assert (written["action"], written["action_ttl_ms"]) == ("block_ip", 60_000)
    assert decode(changed.encode()) == changed
    back = changed.changed(action="none")
    assert back.action == "none" and back.action_ttl_ms == 60_000


@pytest.mark.parametrize("rule", sorted(set(SCHEMAS) - set(SOURCE_RULES)))
def test_other_rules_may_not_block_ips(rule: str) -> None:
    with pytest.raises(RuleError) as caught:
        RULES[rule].changed(action="block_ip")
    assert caught.value.reason == "bad_rule"
    assert rule in caught.value.message and "rate_limit" in caught.value.message


@pytest.mark.parametrize("ttl", [0, -5, 1.5, True, "60000", None])
def test_an_action_ttl_is_a_whole_number_of_ms_at_least_1(ttl: object) -> None:
    with pytest.raises(RuleError, match="action_ttl_ms"):
        RULES["rate_limit"].changed(action="block_ip", action_ttl_ms=ttl)


def test_an_action_ttl_written_as_a_whole_float_is_taken() -> None:
    assert RULES["rate_limit"].changed(action_ttl_ms=60_000.0).action_ttl_ms == 60_000


def test_rules_set_takes_an_action_from_the_command_line() -> None:
    args = build_parser().parse_args(
        ["rules", "set", "rate_limit", "action=block_ip", "action_ttl_ms=60000", "--by", "ops"]
    )
    changes = changes_of(args.assignments)
    assert changes == {"action": "block_ip", "action_ttl_ms": 60_000}
    record = RULES[args.name].changed(**changes, changed_by=args.by)
    assert (record.action, record.action_ttl_ms, record.changed_by) == ("block_ip", 60_000, "ops")
    assert RULES["rate_limit"].changed(**changes_of(["action=none"])).action == "none"


def test_an_old_record_without_an_action_does_nothing() -> None:
    old = {"rule": "stacked_ads", "version": 2, "params": params("stacked_ads")}
    rule = decode(orjson.dumps(old), b"stacked_ads")
    assert (rule.action, rule.action_ttl_ms) == ("none", 3_600_000)
