"""The ad-network stages' bodies (fraudapp.adnet.pipeline), one by one, without a
broker: what each returns for a click (alerts, contributions, verdict changes) over a
partition's state in a dict, and the rules and state the live worker and replay share."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fraudapp.adnet.alerting import HEAVY, LOCATION
from fraudapp.adnet.area import AreaGrid, LocationRule
from fraudapp.adnet.blocklist import Blocklist
from fraudapp.adnet.envelope import Checked
from fraudapp.adnet.geoip import load_geoip
from fraudapp.adnet.heavy import HeavyHitterRule
from fraudapp.adnet.pipeline import (
    BLOCKLIST,
    RULES,
    Contribution,
    StageResult,
    StageStates,
    adnet_rules,
    area_key,
    area_stage,
    blocklist_check,
    campaign_stage,
    contribute,
    duplicate_verdict,
    enabled_stages,
    enter,
    source_stage,
)
from fraudapp.adnet.source import RATE_LIMIT, STACKED, SourceRule
from fraudapp.adnet.stages import AreaPartition, CampaignPartition
from fraudapp.clicks.models import Click
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import RuleBook, defaults
from fraudapp.core.settings import AdnetSettings, Settings

SETTINGS = Settings()
RULES_V1 = defaults(SETTINGS, tables_dir() / "rules.json")
T = 1_767_225_600_000
LAGOS = (6.4541, 3.3947)
GRID = AreaGrid(radius_km=100.0)


def book(**modes: str) -> RuleBook:
    """The shipped rules, some in another mode (``shadow``) or paused (``paused``)."""
    records = dict(RULES_V1)
    for rule, mode in modes.items():
        records[rule] = (
            replace(records[rule], enabled=False)
            if mode == "paused"
            else replace(records[rule], mode=mode)
        )
    return RuleBook(records)


def click(cid: str, dt: int = 0, **fields: Any) -> Click:
    base: dict[str, Any] = {
        "ip": "10.0.0.1",
        "ad_id": "a",
        "campaign_id": "cmp-1",
        "device_id": "d1",
        "origin": f"0:{cid}",
    }
    return Click(cid, f"s-{cid}", "https://ads.example/x", T + dt, **{**base, **fields})


def envelope(c: Click, reasons: tuple[str, ...] = (), repeat: bool = False) -> Checked:
    checked = Checked(c, list(reasons), repeat=repeat)
    checked.lat, checked.lon, checked.located_by = (*LAGOS, "click")
    return checked


def alerted(result: StageResult, rule: str | None = None) -> list[str]:
    return [a["click_id"] for _, a in result.alerts if rule is None or a["rule"] == rule]


def ids(result: StageResult) -> list[tuple[str, str]]:
    """The alerts by key and id (the same finding again has the same id)."""
    return [(key, alert["alert_id"]) for key, alert in result.alerts]


# -- the rules -------------------------------------------------------------------------------


def test_the_rules_are_the_settings_with_the_books_parameters() -> None:
    config = AdnetSettings(lateness_ms=7_000, rate_enabled=False, heavy_window_ms=600_000)
    rules = RuleBook(RULES_V1)
    first = adnet_rules(config, rules)
    assert first.source.stacked_threshold == RULES_V1[STACKED].params["threshold"]
    assert first.source.lateness_ms == 7_000 and not first.source.rate_enabled
    assert first.heavy.window_ms == 600_000
    rules.apply(RULES_V1[STACKED].changed(threshold=5))
    rules.apply(RULES_V1[HEAVY].changed(min_clicks=7))
    rules.apply(RULES_V1[LOCATION].changed(threshold=0.9))
    later = adnet_rules(config, rules)
    assert later.source.stacked_threshold == 5 and later.heavy.min_clicks == 7
    assert later.location.threshold == 0.9
    assert later.source.per_minute == first.source.per_minute  # untouched
    assert set(RULES) == {STACKED, RATE_LIMIT, HEAVY, LOCATION}


def test_a_stage_whose_checks_are_all_off_is_skipped() -> None:
    off = AdnetSettings(stacked_enabled=False, rate_enabled=False, location_enabled=False)
    assert enabled_stages(off) == {"source": False, "campaign": True, "area": False}
    assert enabled_stages(AdnetSettings()) == dict.fromkeys(("source", "campaign", "area"), True)


def test_the_area_key_is_the_region_of_a_located_click() -> None:
    key = area_key(GRID)
    assert key(envelope(click("1"))) == GRID.region(GRID.cell(*LAGOS))
    assert key(Checked(click("2"))) is None


# -- the session stage's part --------------------------------------------------------------


def test_a_click_enters_placed_by_its_own_coordinates_else_its_ips() -> None:
    geoip = load_geoip(tables_dir() / "geoip.csv")
    checked = enter(click("1", lat=1.5, lon=2.5), ["click_burst"], geoip, repeat=True)
    assert (checked.lat, checked.lon, checked.located_by) == (1.5, 2.5, "click")
    assert checked.reasons == ["click_burst"] and checked.repeat
    by_ip = enter(click("2", ip="10.1.3.4"), (), geoip, received=12.5)
    assert by_ip.location() == {"lat": LAGOS[0], "lon": LAGOS[1], "by": "geoip"}
    assert by_ip.received == 12.5 and not by_ip.repeat
    assert enter(click("3", ip=None), (), geoip).location() is None


def listed(*entries: str) -> Blocklist:
    blocklist = Blocklist(expected_ips=1_000, fp_rate=0.001)
    for entry in entries:
        blocklist.apply_update(entry, True)
    return blocklist


def test_a_listed_ip_is_alerted_under_its_ip_and_condemns_the_click() -> None:
    checked = envelope(click("1", ip="192.168.7.8"))
    result = blocklist_check(checked, listed("192.168.7.0/24"), book())
    assert result.fired == [BLOCKLIST]
    [(key, alert)] = result.alerts
    assert key == "192.168.7.8" and alert["rule"] == BLOCKLIST
    assert alert["click_id"] == "1" and alert["blocklist_entry"] == "192.168.7.0/24"
    assert alert["location"] == checked.location()
    assert checked.reasons == []  # the caller applies the result


def test_an_unlisted_ip_no_ip_or_the_check_off_find_nothing() -> None:
    blocklist = listed("192.168.7.0/24")
    assert blocklist_check(envelope(click("1")), blocklist, book()) == StageResult()
    assert blocklist_check(envelope(click("2", ip=None)), blocklist, book()) == StageResult()
    off = blocklist_check(envelope(click("3", ip="192.168.7.8")), None, book())
    assert off == StageResult()


def test_an_exact_blocklist_match_has_the_versions_severity_a_bloom_match_one_lower() -> None:
    blocklist = listed("192.168.7.0/24")
    blocklist.add_ips(["198.51.100.7"])  # the Bloom filter: a probable match
    exact = blocklist_check(envelope(click("1", ip="192.168.7.8")), blocklist, book())
    probable = blocklist_check(envelope(click("2", ip="198.51.100.7")), blocklist, book())
    assert RULES_V1[BLOCKLIST].severity == "high"
    assert exact.alerts[0][1]["severity"] == "high"
    assert probable.alerts[0][1]["severity"] == "medium"
    assert probable.alerts[0][1]["probabilistic"] and probable.fired == [BLOCKLIST]


@pytest.mark.parametrize("mode", ["shadow", "paused"])
def test_a_shadow_or_paused_rule_alerts_for_the_router_but_condemns_nothing(mode: str) -> None:
    result = blocklist_check(
        envelope(click("1", ip="192.168.7.8")), listed("192.168.7.8"), book(ip_blocklist=mode)
    )
    assert result.fired == [] and alerted(result) == ["1"]


# -- the source stage ------------------------------------------------------------------------


def source_partition(**rule: Any) -> KeyedPartition:
    return KeyedPartition(SourceRule(**rule), {})


def test_a_stack_completed_by_a_click_alerts_every_click_of_it() -> None:
    state, rules = source_partition(), book()
    first = source_stage(state, "device:d1", envelope(click("1", ad_id="a")), rules, T)
    second = source_stage(state, "device:d1", envelope(click("2", ad_id="b")), rules, T)
    assert first == StageResult() == second
    third = source_stage(state, "device:d1", envelope(click("3", ad_id="a")), rules, T)
    assert sorted(alerted(third, STACKED)) == ["1", "2", "3"]
    assert {key for key, _ in third.alerts} == {"device:d1"}
    assert third.fired == [STACKED] and not third.late and third.skipped == {}


def test_the_click_over_the_rate_limit_is_condemned() -> None:
    state, rules = source_partition(stacked_enabled=False), book()
    results = [source_stage(state, "k", envelope(click(str(i))), rules, T) for i in range(7)]
    assert [r.fired for r in results] == [[]] * 5 + [[RATE_LIMIT]] * 2
    assert [alerted(r) for r in results[5:]] == [["5"], ["6"]]


def test_the_source_alerts_are_graded_by_the_version_in_force() -> None:
    """Six clicks in a second: over the burst, far under twice the rate over the
    minute (low); a version whose medium starts at a quarter of the rate says medium."""
    state, rules = source_partition(stacked_enabled=False), book()
    results = [source_stage(state, "k", envelope(click(str(i))), rules, T) for i in range(6)]
    ((_, first),) = results[5].alerts
    assert (first["clicks_last_minute"], first["severity"]) == (6, "low")
    rules.apply(RULES_V1[RATE_LIMIT].changed(medium_ratio=0.25))
    ((_, second),) = source_stage(state, "k", envelope(click("6")), rules, T).alerts
    assert (second["clicks_last_minute"], second["severity"], second["rule_version"]) == (
        7,
        "medium",
        2,
    )


def test_a_deeper_stack_is_a_graver_alert() -> None:
    state, rules = source_partition(), book()
    results = [
        source_stage(state, "k", envelope(click(str(i), ad_id=f"ad{i}")), rules, T)
        for i in range(5)
    ]
    graded = {a["click_id"]: (len(a["ads"]), a["severity"]) for r in results for _, a in r.alerts}
    # The third click completes a stack of three ads (medium); the two later join a
    # window of four and five ads.
    assert graded["0"] == (3, "medium") and graded["3"] == (4, "medium")
    assert graded["4"] == (5, "high")


def test_a_late_click_is_skipped_by_each_source_check_that_is_on() -> None:
    state, rules = source_partition(lateness_ms=1_000), book()
    source_stage(state, "k", envelope(click("new", 10_000)), rules, T + 10_000)
    late = source_stage(state, "k", envelope(click("old", 0)), rules, T + 10_000)
    why = "later than 1000 ms behind the source stage's watermark"
    assert late.late and late.skipped == {STACKED: why, RATE_LIMIT: why}
    assert late.alerts == [] and late.fired == []
    only_rate = source_partition(lateness_ms=1_000, stacked_enabled=False)
    source_stage(only_rate, "k", envelope(click("new", 10_000)), rules, T + 10_000)
    late = source_stage(only_rate, "k", envelope(click("old", 0)), rules, T + 10_000)
    assert late.skipped == {RATE_LIMIT: why}


def test_a_record_read_again_resends_its_alerts_and_marks_a_repeat() -> None:
    state, rules = source_partition(), book()
    clicks = [click("1", ad_id="a"), click("2", ad_id="b"), click("3", ad_id="a")]
    first = [source_stage(state, "k", envelope(c), rules, T) for c in clicks][-1]
    again = source_stage(state, "k", envelope(clicks[2]), rules, T)
    assert again.repeat and ids(again) == ids(first) and again.fired == [STACKED]
    copy = source_stage(state, "k", envelope(replace(clicks[2], origin="9:9")), rules, T)
    assert not copy.repeat and copy.alerts == []


def test_a_shadow_stacked_rule_alerts_without_condemning() -> None:
    state, rules = source_partition(), book(stacked_ads="shadow")
    for cid, ad in (("1", "a"), ("2", "b")):
        source_stage(state, "k", envelope(click(cid, ad_id=ad)), rules, T)
    third = source_stage(state, "k", envelope(click("3", ad_id="a")), rules, T)
    assert third.fired == [] and len(third.alerts) == 3


# -- the campaign stage ---------------------------------------------------------------------

HEAVY_RULE = HeavyHitterRule(
    window_ms=600_000, bucket_ms=60_000, share_threshold=0.3, min_clicks=10
)


def campaign_partition(lateness_ms: int = 60_000) -> CampaignPartition:
    return CampaignPartition(0, {}, lambda: HEAVY_RULE, lateness_ms)


def farm_and_crowd(n: int = 20) -> list[Click]:
    """Every other click from the farm's IP, the rest from IPs of their own."""
    return [
        click(str(i), i, ip="10.1.200.7" if i % 2 else f"10.2.0.{i}", device_id=None)
        for i in range(n)
    ]


def test_a_heavy_source_condemns_its_clicks_and_is_alerted_once_a_bucket() -> None:
    state, rules = campaign_partition(), book()
    results = [
        campaign_stage(state, "cmp-1", envelope(c), rules, T + i)
        for i, c in enumerate(farm_and_crowd())
    ]
    fired = [c.click_id for c, r in zip(farm_and_crowd(), results, strict=True) if r.fired]
    assert fired and all(int(cid) % 2 for cid in fired)  # the farm's clicks only
    alerts = [a for r in results for _, a in r.alerts]
    assert len(alerts) == 1 and alerts[0]["source"] == "10.1.200.7"
    assert {key for r in results for key, _ in r.alerts} == {"cmp-1"}
    # Half the campaign's clicks: "high" by the shipped thresholds (0.5 and up).
    assert alerts[0]["share"] == 0.5 and alerts[0]["severity"] == "high"


def test_a_repeat_is_judged_again_and_alerted_again_but_not_counted() -> None:
    state, rules = campaign_partition(), book()
    clicks = farm_and_crowd()
    results = [campaign_stage(state, "cmp-1", envelope(c), rules, T) for c in clicks]
    alerting = next(i for i, r in enumerate(results) if r.alerts)
    total = state.campaigns["cmp-1"].total(T + 19)
    again = campaign_stage(state, "cmp-1", envelope(clicks[alerting], repeat=True), rules, T)
    assert ids(again) == ids(results[alerting]) and again.fired == [HEAVY]
    assert state.campaigns["cmp-1"].total(T + 19) == total


def test_a_click_too_late_for_the_campaign_window_is_skipped() -> None:
    state, rules = campaign_partition(lateness_ms=1_000), book()
    late = campaign_stage(state, "cmp-1", envelope(click("1")), rules, T + 5_000)
    why = "later than 1000 ms behind the campaign stage's watermark"
    assert late.late and late.skipped == {HEAVY: why} and state.campaigns == {}


# -- the area stage --------------------------------------------------------------------------

LOCATION_RULE = LocationRule(
    radius_km=100.0, window_ms=600_000, bucket_ms=60_000, threshold=0.5, min_clicks=4
)


def area_partition(lateness_ms: int = 60_000) -> AreaPartition:
    return AreaPartition({}, GRID, lambda: LOCATION_RULE, lateness_ms)


def border_point() -> tuple[float, float]:
    """A place whose ring reaches regions besides its own (a contribution goes out)."""
    for step in range(400):
        lat, lon = LAGOS[0] + step * 0.05, LAGOS[1] + step * 0.05
        if len(GRID.regions_reached(GRID.cell(lat, lon))) > 1:
            return lat, lon
    raise AssertionError("no border near Lagos")


def placed(
    c: Click, at: tuple[float, float], reasons: tuple[str, ...] = (), repeat: bool = False
) -> Checked:
    checked = envelope(c, reasons, repeat)
    checked.lat, checked.lon = at
    return checked


def test_enough_fraud_around_a_click_condemns_it_and_alerts_under_its_cell() -> None:
    state, rules = area_partition(), book()
    at = LAGOS
    region, cell = GRID.region(GRID.cell(*at)), GRID.cell(*at)
    fraud = ("click_burst",)
    results = [
        area_stage(state, region, placed(click(str(i), i), at, fraud if i < 3 else ()), rules, T)
        for i in range(5)
    ]
    assert [r.fired for r in results] == [[], [], [], [LOCATION], [LOCATION]]
    key, alert = results[3].alerts[0]
    assert key == cell and alert["clicks_nearby"] == 4 and alert["fraud_nearby"] == 3
    # 3 of 4 nearby were fraud: "high" (0.5 and up, under 0.8); 3 of 5, still high.
    assert alert["severity"] == "high" and results[4].alerts[0][1]["severity"] == "high"


def test_a_click_is_handed_to_every_other_region_its_ring_reaches() -> None:
    state, rules = area_partition(), book()
    at = border_point()
    cell = GRID.cell(*at)
    region = GRID.region(cell)
    result = area_stage(state, region, placed(click("1"), at, ("stacked_ads",)), rules, T)
    others = GRID.regions_reached(cell) - {region}
    assert others and set(result.contributions) == {
        Contribution(other, cell, T, True) for other in others
    }
    assert region not in {c.region for c in result.contributions}


def test_a_repeat_is_judged_again_but_counted_nowhere() -> None:
    state, rules = area_partition(), book()
    at = border_point()
    region = GRID.region(GRID.cell(*at))
    for i in range(4):
        area_stage(state, region, placed(click(str(i)), at, ("click_burst",)), rules, T)
    counts = state.counts(region).totals(GRID.cell(*at), T)
    again = area_stage(
        state, region, placed(click("3"), at, ("click_burst",), repeat=True), rules, T
    )
    assert again.fired == [LOCATION] and alerted(again) == ["3"]
    assert again.contributions == []
    assert state.counts(region).totals(GRID.cell(*at), T) == counts


def test_a_click_too_late_for_the_area_window_is_skipped_and_counted_nowhere() -> None:
    state, rules = area_partition(lateness_ms=1_000), book()
    region = GRID.region(GRID.cell(*LAGOS))
    late = area_stage(state, region, placed(click("1"), LAGOS), rules, T + 5_000)
    why = "later than 1000 ms behind the area stage's watermark"
    assert late.late and late.skipped == {LOCATION: why} and late.contributions == []
    assert state.regions == {}


def test_a_contribution_counts_in_its_region_unless_too_late() -> None:
    state = area_partition(lateness_ms=1_000)
    cell = GRID.cell(*LAGOS)
    assert contribute(state, Contribution("r-1", cell, T, True), T)
    assert state.counts("r-1").totals(cell, T) == (1, 1)
    assert not contribute(state, Contribution("r-1", cell, T, False), T + 5_000)
    assert state.counts("r-1").totals(cell, T) == (1, 1)


# -- results into the verdict, and the state the stages share ------------------------------


def test_a_result_changes_the_verdict_when_applied() -> None:
    checked = envelope(click("1"), ("click_burst",))
    StageResult(fired=["click_burst", STACKED], skipped={HEAVY: "late"}, repeat=True).apply(checked)
    assert checked.reasons == ["click_burst", STACKED]
    assert checked.skipped == {HEAVY: "late"} and checked.repeat
    StageResult().apply(checked)
    assert checked.repeat  # a later stage never clears it


def test_a_duplicates_verdict_is_marked_and_unplaced() -> None:
    record = duplicate_verdict(click("1", lat=1.0, lon=2.0), ["click_burst"], AdnetSettings())
    assert record["duplicate"] and record["reasons"] == ["click_burst"]
    assert record["location"] is None and record["skipped"] == {}


def test_stage_states_load_from_their_stores_and_take_new_rules() -> None:
    config = AdnetSettings()
    rules = RuleBook(RULES_V1)
    asked: list[tuple[str, int]] = []
    stores: dict[tuple[str, int], dict[bytes, bytes]] = {}

    def store(stage: str, partition: int):
        asked.append((stage, partition))
        return stores.setdefault((stage, partition), {}), ()

    states = StageStates(adnet_rules(config, rules), GRID, config.lateness_ms, store)
    c = envelope(click("1"))
    states.run("source", 3, "device:d1", c, rules, T)
    states.run("campaign", 1, "cmp-1", c, rules, T)
    states.run("area", 2, GRID.region(GRID.cell(*LAGOS)), c, rules, T)
    assert asked == [("source", 3), ("campaign", 1), ("area", 2)]
    assert stores["source", 3] and stores["area", 2]  # written through
    rules.apply(RULES_V1[STACKED].changed(threshold=4))
    rules.apply(RULES_V1[HEAVY].changed(min_clicks=3))
    states.set_rules(adnet_rules(config, rules))
    assert states.source[3].rule.stacked_threshold == 4
    assert states.campaign[1].campaigns["cmp-1"].rule.min_clicks == 3
    states.clear()
    states.run("source", 3, "device:d1", envelope(click("2")), rules, T)
    assert asked[-1] == ("source", 3) and states.source[3].rule.stacked_threshold == 4
