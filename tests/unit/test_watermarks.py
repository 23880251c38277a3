"""Watermarks across partitions and workers (fraudapp.core.watermarks), without a broker.

The model: a source partition's records are judged against its own newest event
time; stages expire state by levels built from committed source watermarks and, for
other workers, from markers read in band. These tests hold each piece to that, and
hold the whole to the promise it exists for: what a stage finds does not depend on
how its upstream partitions' batches interleave, whatever their size in event time.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudapp.adnet import oracle
from fraudapp.adnet.source import SourceRule
from fraudapp.clicks.detect import BurstRule
from fraudapp.clicks.generate import arrival_order, generate_clicks
from fraudapp.clicks.models import click_from_dict
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.keyed import KeyedPartition
from fraudapp.core.partitioning import partition_for
from fraudapp.core.watermarks import IDLE, Domain, Marker, SourceClock, Watermarks, ahead

CLICKS = Domain("clicks", "clicks", (("session", "by-session"), ("source", "by-source")))
ATM = Domain("atm", "txns", (("account", "by-account"),))
TOPICS = ("clicks", "by-session", "by-source", "txns", "by-account")


def slots(*numbers: int) -> list[tuple[str, int]]:
    """Partition N of every topic: what faust assigns one worker per slot."""
    return [(topic, n) for topic in TOPICS for n in numbers]


def retire(wm: Watermarks) -> None:
    """Read back the markers a worker writes into its own internal partitions."""
    marker = wm.marker()
    for topic in ("by-session", "by-source", "by-account"):
        for partition in range(wm.partitions):
            if wm.owns(topic, partition):
                wm.receive(topic, partition, marker)


# -- a source partition ------------------------------------------------------------------


def test_a_source_judges_by_its_own_newest_time_and_commits_move_safe() -> None:
    clock = SourceClock()
    assert clock.observe(100, offset=0) is None
    assert clock.observe(90, offset=1) == 100  # late-ish record: judged against 100
    assert clock.observe(150, offset=2) == 100
    assert clock.safe is None and clock.span() == 50
    clock.committed(2)  # offsets 0 and 1 committed: newest below is 100
    assert clock.safe == 100 and clock.span() == 50
    clock.committed(3)
    assert clock.safe == 150 and clock.span() == 0
    clock.committed(1)  # an older commit never moves it back
    assert clock.safe == 150


def test_a_record_read_again_is_judged_as_the_first_time() -> None:
    """After a seek back (a rebalance reads from the last commit), a record's
    reference is what lies before its offset, not what was read before it in time."""
    clock = SourceClock()
    for offset, t in enumerate((10, 20, 30, 40, 35)):
        clock.observe(t, offset)
    assert clock.observe(20, 1) == 10  # read again from offset 1
    assert clock.observe(30, 2) == 20
    assert clock.observe(45, 3) == 30  # a different record there now supersedes
    assert clock.seen_below(4) == 45 and clock.seen == 45
    clock.committed(4)
    assert clock.safe == 45
    assert clock.observe(50, 4) == 45  # and reading on in order is the fast path


def test_a_record_read_again_from_below_the_last_commit_is_not_judged_by_the_newest() -> None:
    """The group's offsets can go back below what this clock saw committed (a broker
    restarted from its log, a commit lost in a rebalance): the records read again
    there have no known reference, rather than the newest time of all."""
    clock = SourceClock()
    for offset, t in enumerate((10, 20, 30, 40, 50)):
        clock.observe(t, offset)
    clock.committed(5)
    assert clock.safe == 50
    assert clock.observe(12, offset=2) is None  # not refused against 50
    assert clock.observe(31, offset=3) == 12
    assert clock.observe(55, offset=5) == 31


def test_a_restored_source_starts_where_its_commit_left_it() -> None:
    clock = SourceClock()
    clock.restore(500)
    assert (clock.seen, clock.safe) == (500, 500)
    assert clock.observe(480, 7) == 500  # what was committed is the reference


def test_idleness_needs_both_nothing_to_read_and_quiet() -> None:
    clock = SourceClock(now=0.0)
    assert not clock.idle(10.0, caught_up=False, idle_s=5.0)  # a backlog is never idle
    assert not clock.idle(4.0, caught_up=True, idle_s=5.0)
    assert clock.idle(5.0, caught_up=True, idle_s=5.0)


# -- levels on one worker ------------------------------------------------------------------


def test_a_lone_worker_knows_its_levels_once_its_markers_are_read_back() -> None:
    wm = Watermarks([CLICKS, ATM], 2, "me")
    wm.assign(slots(0, 1), now=0.0)
    wm.restore({("clicks", 0): 1_000, ("clicks", 1): 2_000})
    assert wm.level("clicks", 0) == 1_000  # the committed minimum
    assert wm.level("clicks", 1) is None  # own slots not retired: earlier records may wait
    retire(wm)
    assert [wm.level("clicks", i) for i in range(3)] == [1_000, 1_000, 1_000]
    assert wm.floor("clicks") == 1_000


def test_own_slots_retire_at_once_on_partitions_with_nothing_unread() -> None:
    """Committed to its end when the assignment began: no earlier record of this
    worker's slots can come, so the level is known without the marker's round trip;
    a partition with records left unread still waits for it."""
    wm = Watermarks([CLICKS, ATM], 2, "me")
    wm.assign(slots(0, 1), now=0.0)
    wm.restore({("clicks", 0): 1_000, ("clicks", 1): 2_000})
    wm.drained("by-session", 0)
    assert wm.level("clicks", 1) is None  # by-session[1] still has records to read
    wm.drained("by-session", 1)
    assert wm.level("clicks", 1) == 1_000
    assert wm.level("clicks", 2) is None  # by-source not confirmed yet
    wm.assign(slots(0, 1), now=1.0)  # a new assignment: confirmed again
    assert wm.level("clicks", 1) == 1_000  # effective values never fall back
    assert wm.unknown()["clicks"]


def test_levels_follow_commits_not_reads() -> None:
    wm = Watermarks([CLICKS], 1, "me")
    wm.assign([("clicks", 0), ("by-session", 0), ("by-source", 0)], now=0.0)
    retire(wm)
    clock = wm.source("clicks", 0)
    assert clock is not None
    for offset in range(10):
        clock.observe(1_000 * offset, offset)
    assert wm.level("clicks", 2) is None  # nothing committed: nothing may expire
    wm.committed({("clicks", 0): 5})
    assert wm.level("clicks", 2) == 4_000
    assert wm.commit_metadata("clicks", 0, 8) == '{"wm":7000}'


def test_an_idle_partition_stops_holding_the_level_and_a_level_never_falls() -> None:
    wm = Watermarks([CLICKS], 2, "me")
    wm.assign(slots(0, 1), now=0.0)
    wm.restore({("clicks", 0): 100, ("clicks", 1): 900})
    retire(wm)
    assert wm.level("clicks", 2) == 100
    wm.set_idle([("clicks", 0)])
    assert wm.level("clicks", 2) == 900
    wm.set_idle([])  # it wakes up, still at 100: the level stays where it was
    assert wm.level("clicks", 2) == 900
    wm.set_idle([("clicks", 0), ("clicks", 1)])
    assert wm.exported("clicks")[0] == IDLE and wm.level("clicks", 0) == 900


def test_a_new_assignment_freezes_levels_until_confirmed() -> None:
    wm = Watermarks([CLICKS], 2, "me")
    wm.assign(slots(0, 1), now=0.0)
    wm.restore({("clicks", 0): 100, ("clicks", 1): 200})
    retire(wm)
    wm.assign(slots(0, 1), now=1.0)  # a rebalance gave the same partitions back
    wm.committed({})
    clock = wm.source("clicks", 0)
    assert clock is not None and clock.safe == 100  # kept
    assert wm.level("clicks", 1) == 100  # frozen where it was, not unknown
    old = Marker("me", wm.generation - 1, (0, 1), {})
    wm.receive("by-session", 0, old)  # our marker of the last assignment: not enough
    assert ("by-session", 0, 0) not in wm._retired


# -- two workers ---------------------------------------------------------------------------


def exchange(a: Watermarks, b: Watermarks) -> None:
    """Each worker's marker into every internal partition the other owns, read there."""
    for sender, receiver in ((a, b), (b, a)):
        marker = sender.marker()
        for topic in ("by-session", "by-source", "by-account"):
            for partition in range(receiver.partitions):
                if receiver.owns(topic, partition):
                    receiver.receive(topic, partition, marker)


def two_workers() -> tuple[Watermarks, Watermarks]:
    a, b = Watermarks([CLICKS, ATM], 4, "a"), Watermarks([CLICKS, ATM], 4, "b")
    a.assign(slots(0, 1), now=0.0)
    b.assign(slots(2, 3), now=0.0)
    retire(a)
    retire(b)
    return a, b


def test_a_level_waits_for_every_other_worker_then_takes_the_minimum() -> None:
    a, b = two_workers()
    a.restore({("clicks", 0): 1_000, ("clicks", 1): 1_100})
    b.restore({("clicks", 2): 5_000, ("clicks", 3): 5_500})
    assert a.level("clicks", 1) is None  # b's slots not heard from yet
    exchange(a, b)
    assert a.level("clicks", 1) == 1_000 and b.level("clicks", 1) == 1_000
    assert b.level("clicks", 0) == 5_000  # its own sources: its own level 0


def test_two_workers_move_forward_together_without_waiting_on_themselves() -> None:
    """Each level depends on the levels below it only, so markers going back and
    forth converge on the sources' minimum instead of holding each other up."""
    a, b = two_workers()
    for step in range(1, 6):
        a.restore({("clicks", 0): 1_000 * step, ("clicks", 1): 1_000 * step})
        b.restore({("clicks", 2): 1_000 * step + 500, ("clicks", 3): 1_000 * step + 500})
        for _ in range(3):  # a few rounds of markers
            exchange(a, b)
        assert a.level("clicks", 2) == b.level("clicks", 2) == 1_000 * step


def test_an_idle_worker_does_not_hold_the_other_back() -> None:
    a, b = two_workers()
    a.restore({("clicks", 0): 100, ("clicks", 1): 100})
    b.restore({("clicks", 2): 9_000, ("clicks", 3): 9_000})
    a.set_idle([("clicks", 0), ("clicks", 1)])
    exchange(a, b)
    exchange(a, b)
    assert b.level("clicks", 2) == 9_000


def test_a_slot_that_moves_keeps_its_old_channel_until_the_new_owner_is_confirmed() -> None:
    a, b = two_workers()
    a.restore({("clicks", 0): 100, ("clicks", 1): 100})
    b.restore({("clicks", 2): 300, ("clicks", 3): 300})
    exchange(a, b)
    assert a.level("clicks", 1) == 100
    # b dies; a gets everything. What b sent earlier may still be unread in the
    # partitions a takes over: a's level waits for its own marker there.
    a.assign(slots(0, 1, 2, 3), now=1.0)
    a.restore({("clicks", 2): 300, ("clicks", 3): 300})
    assert a.level("clicks", 1) == 100  # frozen
    retire(a)
    a.committed({})
    assert a.level("clicks", 1) == 100
    a.restore({("clicks", 0): 400, ("clicks", 1): 400})
    assert a.level("clicks", 1) == 300


def test_markers_round_trip() -> None:
    marker = Marker("w1", 3, (0, 2), {"clicks": [10, None, IDLE]})
    assert Marker.decode(marker.encode()) == marker


def test_alignment_pauses_only_what_runs_ahead_of_a_known_floor() -> None:
    clock = SourceClock()
    clock.observe(100_000, 0)
    assert not ahead(clock, None, 30_000)
    assert not ahead(clock, 70_001, 30_000)
    assert ahead(clock, 70_000, 30_000)


# -- the promise: same findings, however the batches interleave ----------------------------


def _run_stages(
    batches: list[tuple[int, list[dict[str, Any]]]], commit_every: int
) -> tuple[set[str], set[str], int]:
    """A lone worker over 4 source partitions, fed whole batches per partition in the
    given order: the click rule at the session stage, the rate limit and stacked ads at
    the source stage, each expiring by its level, committing every few batches."""
    wm = Watermarks([CLICKS], 4, "me")
    wm.assign(slots(0, 1, 2, 3), now=0.0)
    retire(wm)
    burst, source = BurstRule(), SourceRule()
    sessions = {p: KeyedPartition(burst, {}) for p in range(4)}
    sources = {p: KeyedPartition(source, {}) for p in range(4)}
    offsets = dict.fromkeys(range(4), 0)
    bursts: set[str] = set()
    flagged: set[str] = set()
    late = 0
    for number, (partition, batch) in enumerate(batches, 1):
        clock = wm.source("clicks", partition)
        assert clock is not None
        for raw in batch:
            click = click_from_dict(raw, f"{partition}:{offsets[partition]}")
            seen = clock.observe(click.timestamp, offsets[partition])
            offsets[partition] += 1
            home = partition_for(click.session_id.encode(), 4)
            outcome = sessions[home].process(click, wm.level("clicks", 1), seen)
            if outcome.result is None:
                late += 1
                continue
            bursts |= {f.click_id for f in outcome.result.findings}
            key = source.key(click)
            if not key:
                continue
            stage = sources[partition_for(key, 4)]
            found = stage.process(click, wm.level("clicks", 2), None)
            if found.result is None:
                late += 1
                continue
            flagged |= {f.click_id for f in found.result.findings if f.rule == "rate_limit"}
        if number % commit_every == 0:
            wm.committed({("clicks", p): offsets[p] for p in range(4)})
    return bursts, flagged, late


def _batches(
    clicks: list[dict[str, Any]], rng: random.Random, size: int
) -> list[tuple[int, list[dict[str, Any]]]]:
    """Each partition's records (by the producer's murmur2 of the session) cut into
    batches of ``size``, the partitions' batches interleaved at random."""
    per: dict[int, list[dict[str, Any]]] = {p: [] for p in range(4)}
    for click in clicks:
        per[partition_for(click["session_id"].encode(), 4)].append(click)
    queues = {p: [rows[i : i + size] for i in range(0, len(rows), size)] for p, rows in per.items()}
    order = []
    while any(queues.values()):
        p = rng.choice([p for p, q in queues.items() if q])
        order.append((p, queues[p].pop(0)))
    return order


@pytest.fixture(scope="module")
def sparse_clicks() -> list[dict[str, Any]]:
    """About 2 clicks per second of event time: a batch of 500 spans minutes."""
    return arrival_order(generate_clicks(3_000, seed=91, rate_per_s=2.0), max_delay_ms=5_000)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([50, 500, 3_000]))
def test_findings_do_not_depend_on_how_batches_interleave(
    sparse_clicks: list[dict[str, Any]], seed: int, size: int
) -> None:
    bursts, limited, late = _run_stages(_batches(sparse_clicks, random.Random(seed), size), 3)
    assert late == 0
    assert bursts == fraudulent_click_ids(sparse_clicks)
    assert limited == oracle.over_limit_click_ids(sparse_clicks)
