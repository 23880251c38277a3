"""The click-burst rule, driven directly: boundaries, ties, order, duplicates, expiry."""

from __future__ import annotations

import random

import pytest

from fraudapp.clicks.detect import BurstRule, prune, step
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.models import Click, click_from_dict
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.keyed import KeyedPartition

RULE = BurstRule()
T0 = 1_767_225_600_000


def click(click_id: str, ts: int, session: str = "s", url: str = "u") -> Click:
    return Click(click_id=click_id, session_id=session, url=url, timestamp=T0 + ts)


def run(clicks: list[Click], rule: BurstRule = RULE) -> tuple[set[str], dict[str, bool]]:
    """Feed clicks in the given order through one partition; alerts and verdicts."""
    processor = KeyedPartition(rule, {})
    alerted: list[str] = []
    verdicts: dict[str, bool] = {}
    for c in clicks:
        result = processor.process(c).result
        assert result is not None, "refused as late"
        verdicts[c.click_id] = result.fraud
        alerted.extend(f.click_id for f in result.findings)
    assert len(alerted) == len(set(alerted)), "a click was alerted twice"
    return set(alerted), verdicts


class TestWindowBoundaries:
    @pytest.mark.parametrize(("span_ms", "fraud"), [(9_999, True), (10_000, True), (10_001, False)])
    def test_third_click_span(self, span_ms: int, fraud: bool) -> None:
        alerts, verdicts = run([click("a", 0), click("b", span_ms // 2), click("c", span_ms)])
        assert ("c" in alerts) is fraud
        assert verdicts["c"] is fraud
        assert alerts <= {"c"}

    def test_two_clicks_are_never_enough(self) -> None:
        assert run([click("a", 0), click("b", 0)])[0] == set()

    def test_threshold_is_a_setting(self) -> None:
        rule = BurstRule(threshold=2, window_ms=1_000)
        assert run([click("a", 0), click("b", 1_000), click("c", 2_001)], rule)[0] == {"b"}

    def test_same_timestamp_clicks_all_fraud(self) -> None:
        alerts, verdicts = run([click("a", 5), click("b", 5), click("c", 5)])
        assert alerts == {"a", "b", "c"}
        assert verdicts == {"a": False, "b": False, "c": True}  # verdict as known on arrival

    def test_other_url_or_session_does_not_count(self) -> None:
        clicks = [click("a", 0), click("b", 1, url="v"), click("c", 2, session="t")]
        assert run(clicks)[0] == set()

    def test_evidence(self) -> None:
        processor = KeyedPartition(RULE, {})
        for c in (click("a", 0), click("b", 4_000)):
            processor.process(c)
        (finding,) = processor.process(click("c", 10_000)).result.findings
        assert finding.evidence() == {
            "click_id": "c",
            "session_id": "s",
            "url": "u",
            "count": 3,
            "threshold": 3,
            "window_start": T0,
            "window_end": T0 + 10_000,
            "click_ids": ["a", "b", "c"],
        }


class TestArrivalOrder:
    def test_late_click_condemns_later_ones(self) -> None:
        alerts, verdicts = run([click("b", 2_000), click("c", 4_000), click("a", 1_000)])
        assert alerts == {"c"}
        assert verdicts["c"] is False  # not known when c arrived; the alert came with a

    def test_late_click_outside_window_changes_nothing(self) -> None:
        assert run([click("b", 12_000), click("c", 13_000), click("a", 1_000)])[0] == set()

    def test_every_permutation_gives_the_same_alerts(self) -> None:
        base = [click(str(i), ts) for i, ts in enumerate([0, 3_000, 6_000, 10_000, 10_001, 25_000])]
        expected = fraudulent_click_ids(
            [
                {"click_id": c.click_id, "session_id": "s", "url": "u", "timestamp": c.timestamp}
                for c in base
            ]
        )
        rng = random.Random(7)
        for _ in range(200):
            shuffled = base[:]
            rng.shuffle(shuffled)
            assert run(shuffled)[0] == expected

    def test_redelivered_click_counts_once_and_keeps_its_verdict(self) -> None:
        clicks = [click("a", 0), click("a", 0), click("b", 1), click("b", 1)]
        assert run(clicks)[0] == set()
        processor = KeyedPartition(RULE, {})
        for c in (click("a", 0), click("b", 1), click("c", 2)):
            processor.process(c)
        again = processor.process(click("c", 2)).result
        assert again.duplicate and again.fraud and not again.findings


class TestLatenessAndExpiry:
    def test_too_late_click_is_refused(self) -> None:
        processor = KeyedPartition(RULE, {})
        processor.process(click("a", 100_000))
        assert processor.process(click("b", 100_000 - RULE.lateness_ms)).late is False
        assert processor.process(click("c", 100_000 - RULE.lateness_ms - 1)).late is True

    def test_quiet_sessions_are_deleted_in_event_time(self) -> None:
        store: dict[bytes, bytes] = {}
        processor = KeyedPartition(RULE, store)
        for i in range(50):
            processor.process(click(f"q{i}", i, session=f"quiet-{i}"))
        assert len(store) == 50
        # Another session moves the watermark far ahead: the quiet ones expire.
        for i in range(5):
            processor.process(click(f"busy{i}", 200_000 + i * 30_000, session="busy"))
        assert set(store) == {b"busy"}

    def test_prune_keeps_what_a_late_click_still_needs(self) -> None:
        state = step(None, click("a", 0), RULE).state
        step(state, click("b", 5_000), RULE)
        assert prune(state, T0 + 1) is not None
        assert [e[1] for e in state["urls"]["u"]] == ["b"]
        assert prune(state, T0 + 5_001) is None

    def test_state_survives_a_new_owner(self) -> None:
        """A partition rebuilt from its store continues exactly (restart / rebalance).
        Its watermark is not taken from the state: the state may hold records handled
        after the last commit, which are read again and would be found late."""
        store: dict[bytes, bytes] = {}
        first = KeyedPartition(RULE, store)
        first.process(click("a", 0))
        first.process(click("b", 1_000))
        second = KeyedPartition(RULE, store, seed=list(store.items()))
        assert second.watermark is None and len(second.clock) == 1
        assert [f.click_id for f in second.process(click("c", 2_000)).result.findings] == ["c"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_stream_matches_oracle_in_any_arrival_order(seed: int) -> None:
    raw = generate_clicks(5_000, seed=seed)
    expected = fraudulent_click_ids(raw)
    assert len(expected) > 100  # the stream has fraud worth finding
    arrived = arrival_order(raw, max_delay_ms=RULE.lateness_ms, seed=seed)
    partitions = [KeyedPartition(RULE, {}) for _ in range(4)]
    alerts: list[str] = []
    for item in arrived:
        c = click_from_dict(item)
        outcome = partitions[hash(c.session_id) % 4].process(c)
        assert not outcome.late
        alerts.extend(f.click_id for f in outcome.result.findings)
    assert len(alerts) == len(set(alerts))
    assert set(alerts) == expected
