"""Stacked ads and the rate limit: examples, then random streams in random arrival
orders against the brute-force oracles."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from fraudapp.adnet.oracle import over_limit_click_ids, stacked_click_ids
from fraudapp.adnet.source import RATE_LIMIT, STACKED, SourceRule, source_of
from fraudapp.clicks.models import Click
from fraudapp.core.keyed import KeyedPartition


def click(
    cid: str, ts: int, ad: str = "a", device: str | None = "d1", ip: str = "10.0.0.1"
) -> Click:
    return Click(cid, "s", f"https://ads.example/{ad}", ts, ip=ip, ad_id=ad, device_id=device)


def run(rule: SourceRule, clicks: list[Click]) -> tuple[set[str], set[str]]:
    """Feed clicks in the given order; the click ids each check condemned."""
    partition = KeyedPartition(rule, {})
    found: dict[str, set[str]] = {STACKED: set(), RATE_LIMIT: set()}
    for c in clicks:
        outcome = partition.process(c)
        assert outcome.result is not None
        for finding in outcome.result.findings:
            assert finding.click_id not in found[finding.rule], "reported twice"
            found[finding.rule].add(finding.click_id)
    return found[STACKED], found[RATE_LIMIT]


def test_source_prefers_device_then_ip() -> None:
    assert source_of(click("x", 0)) == "device:d1"
    assert source_of(click("x", 0, device=None)) == "ip:10.0.0.1"
    assert source_of(Click("x", "s", "u", 0)) is None


def test_three_clicks_at_one_instant_on_two_ads_are_stacked() -> None:
    stacked, _ = run(SourceRule(), [click("1", 0, "a"), click("2", 0, "b"), click("3", 0, "a")])
    assert stacked == {"1", "2", "3"}


def test_one_ad_only_or_wider_than_window_is_not_stacked() -> None:
    same_ad = [click(str(i), 0, "a") for i in range(5)]
    assert run(SourceRule(), same_ad)[0] == set()
    spread = [click("1", 0, "a"), click("2", 100, "b"), click("3", 201, "c")]
    assert run(SourceRule(), spread)[0] == set()
    edge = [click("1", 0, "a"), click("2", 100, "b"), click("3", 200, "c")]
    assert run(SourceRule(), edge)[0] == {"1", "2", "3"}


def test_late_click_completes_a_stack_and_condemns_earlier_clicks() -> None:
    rule = SourceRule()
    stacked, _ = run(rule, [click("1", 1000, "a"), click("3", 1100, "b"), click("2", 1050, "c")])
    assert stacked == {"1", "2", "3"}


def test_burst_of_five_passes_sixth_is_over_and_steady_rate_never_is() -> None:
    rule = SourceRule(stacked_enabled=False)
    _, over = run(rule, [click(str(i), 0) for i in range(7)])
    assert over == {"5", "6"}
    _, over = run(rule, [click(str(i), i * 3000) for i in range(100)])
    assert over == set()


def test_a_flood_is_forgiven_after_one_burst_of_quiet() -> None:
    rule = SourceRule(stacked_enabled=False)
    flood = [click(f"f{i}", i) for i in range(50)]
    later = [click(f"l{i}", 50 + 15_000 + i) for i in range(5)]
    _, over = run(rule, flood + later)
    assert over == {f"f{i}" for i in range(5, 50)}


def test_redelivered_click_is_not_counted_twice() -> None:
    rule = SourceRule(stacked_enabled=False)
    clicks = [click(str(i), 0) for i in range(5)]
    partition = KeyedPartition(rule, {})
    for c in clicks + clicks:
        result = partition.process(c).result
    assert result is not None and result.duplicate and not result.findings


def random_stream(rng: random.Random, n: int) -> list[Click]:
    clicks = []
    for i in range(n):
        source = rng.randrange(12)
        ts = rng.randrange(0, 120_000)
        if rng.random() < 0.3 and clicks:  # cluster near an earlier click of anyone
            ts = max(0, clicks[-1].timestamp + rng.randrange(-150, 150))
        device = f"d{source}" if source % 3 else None
        clicks.append(click(f"c{i}", ts, rng.choice("abc"), device, f"10.0.0.{source}"))
    return clicks


@pytest.mark.parametrize("seed", range(8))
def test_random_streams_in_any_order_match_the_oracles(seed: int) -> None:
    rng = random.Random(seed)
    clicks = random_stream(rng, 600)
    dicts = [asdict(c) for c in clicks]  # the oracles read clicks as dicts
    expected_stacked = stacked_click_ids(dicts)
    expected_over = over_limit_click_ids(dicts)
    assert expected_stacked and expected_over
    # Unbounded lateness so every order is accepted: the verdict must not depend on it.
    rule = SourceRule(lateness_ms=10**9)
    for order in (sorted(clicks, key=lambda c: c.timestamp), rng.sample(clicks, len(clicks))):
        stacked, over = run(rule, order)
        assert stacked == expected_stacked
        assert over == expected_over


def test_pruned_state_keeps_the_gcra_where_it_was() -> None:
    """With ordinary lateness, state is pruned as the watermark moves; results stay exact."""
    rng = random.Random(42)
    clicks = sorted(random_stream(rng, 800), key=lambda c: c.timestamp)
    dicts = [asdict(c) for c in clicks]  # the oracles read clicks as dicts
    stacked, over = run(SourceRule(lateness_ms=1_000), clicks)
    assert stacked == stacked_click_ids(dicts)
    assert over == over_limit_click_ids(dicts)


@pytest.mark.parametrize("lateness_ms", [1_000, 10**9])
def test_a_click_over_the_limit_counts_its_sources_minute_as_held(lateness_ms: int) -> None:
    """The count a rate finding is graded by: the clicks of its source that had
    arrived, within the minute ending at it (kept, even when pruning is tight)."""
    rng = random.Random(7)
    clicks = random_stream(rng, 800)
    orders = [sorted(clicks, key=lambda c: c.timestamp)]
    if lateness_ms > 60_000:
        orders.append(rng.sample(clicks, len(clicks)))
    for order in orders:
        partition = KeyedPartition(SourceRule(stacked_enabled=False, lateness_ms=lateness_ms), {})
        arrived: dict[str, list[int]] = {}
        checked = 0
        for c in order:
            arrived.setdefault(source_of(c) or "", []).append(c.timestamp)
            for finding in partition.process(c).result.findings:
                t = finding.event_time
                held = [ts for ts in arrived[finding.source] if t - 60_000 < ts <= t]
                assert finding.clicks_last_minute == len(held)
                assert finding.evidence()["clicks_last_minute"] == len(held)
                checked += 1
        assert checked
