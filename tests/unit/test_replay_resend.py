"""A record read again after a crash re-sends what it found; a resent click does not.

At-least-once: a worker can die after a record's state reached its table but before
the record's alerts left, and then reads the record again. Each rule recognises the
same delivery (same origin) and returns the findings that record made, so their
alerts go out again under the same ids; a producer's second copy of a click (another
origin) is still counted once and finds nothing. Checked here for every exact rule,
on random streams in random orders, against what each record found the first time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest

from fraudapp.adnet.source import SourceRule
from fraudapp.atm.detect import TravelRule
from fraudapp.atm.generate import generate_txns
from fraudapp.atm.models import txn_from_dict
from fraudapp.clicks.detect import BurstRule
from fraudapp.clicks.generate import generate_clicks
from fraudapp.clicks.models import click_from_dict
from fraudapp.core.keyed import KeyedPartition

FOREVER = 10**12  # lateness: every arrival order is accepted


def finding_ids(result: Any) -> set[tuple[str, ...]]:
    """What a step found, by the fields its alert ids are made of."""
    found: set[tuple[str, ...]] = set()
    for item in getattr(result, "findings", None) or getattr(result, "pairs", []):
        if hasattr(item, "t1"):
            found.add(("atm", item.t1[1], item.t2[1]))
        else:
            found.add((getattr(item, "rule", "burst"), item.click_id))
    return found


def check_replays(rule: Any, events: list[Any], rng: random.Random, exact: bool = True) -> int:
    """Every event once, then replays and foreign copies of random ones: a replay
    returns exactly its first findings (``exact``; else at least those, and only ones
    the stream found); a copy from another origin returns none. Returns how many
    findings the stream made (so a test can't pass on nothing)."""
    partition = KeyedPartition(rule, {})
    first: dict[str, set[tuple[str, ...]]] = {}
    for event in events:
        result = partition.process(event).result
        assert result is not None and not result.duplicate
        first[event.origin] = finding_ids(result)
    for event in rng.sample(events, len(events) // 3):
        again = partition.process(event).result
        assert again is not None and again.duplicate and again.replay
        if exact:
            assert finding_ids(again) == first[event.origin], event
        else:
            everything = set().union(*first.values())
            assert first[event.origin] <= finding_ids(again) <= everything, event
        copy = partition.process(replace(event, origin=event.origin + "-copy")).result
        assert copy is not None and copy.duplicate and not copy.replay
        assert finding_ids(copy) == set()
    return sum(len(found) for found in first.values())


def shuffled(items: Iterable[Any], rng: random.Random) -> list[Any]:
    out = list(items)
    rng.shuffle(out)
    return out


def clicks(n: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    raw = generate_clicks(n, seed=seed)
    unique = {c["click_id"]: c for c in raw}.values()  # the generator also resends
    return [click_from_dict(c, f"0:{i}") for i, c in enumerate(shuffled(unique, rng))]


@pytest.mark.parametrize("seed", range(4))
def test_click_burst_replay(seed: int) -> None:
    rule = BurstRule(lateness_ms=FOREVER)
    events = clicks(3_000, seed)
    assert check_replays(rule, events, random.Random(seed)) > 50


@pytest.mark.parametrize("seed", range(4))
def test_stacked_ads_and_rate_limit_replay(seed: int) -> None:
    rule = SourceRule(lateness_ms=FOREVER)
    events = [c for c in clicks(3_000, seed) if c.device_id or c.ip]
    assert check_replays(rule, events, random.Random(seed)) > 50


@pytest.mark.parametrize("seed", range(4))
def test_atm_replay(seed: int) -> None:
    rng = random.Random(seed)
    raw = shuffled(generate_txns(2_000, seed=seed), rng)
    seen: dict[str, Any] = {}
    for i, t in enumerate(raw):
        seen.setdefault(t["transaction_id"], txn_from_dict(t, origin=f"1:{i}"))
    rule = TravelRule(lateness_ms=FOREVER)
    # A pair is found by whichever of its two arrives second; the state does not keep
    # which, so a replay re-sends every pair it is part of (already sent, same ids).
    assert check_replays(rule, list(seen.values()), rng, exact=False) > 20


def test_state_from_before_origins_is_read() -> None:
    """Entries written before origins were kept (three fields) still work: a repeat is
    a plain duplicate then (no origin to match), never an error."""
    rule = BurstRule()
    t = 1_767_225_600_000
    state: dict[str, Any] = {"urls": {"u": [[t, "a", 1], [t + 1, "b", 0]]}}
    store = {b"s": __import__("orjson").dumps(state)}
    partition = KeyedPartition(rule, store)
    make: Callable[[str, int], Any] = lambda cid, dt: click_from_dict(  # noqa: E731
        {"click_id": cid, "session_id": "s", "url": "u", "timestamp": t + dt}, "0:9"
    )
    again = partition.process(make("a", 0)).result
    assert again is not None and again.duplicate and not again.replay and again.fraud
    third = partition.process(make("c", 2)).result
    assert third is not None and third.fraud


def test_a_replay_behind_the_lateness_is_still_a_repeat() -> None:
    """After a crash the watermark is where the stream had got to, not where it was
    when the record was first taken: a record the state still holds is judged again
    as a repeat, not refused as late; one it does not hold is refused."""
    rule = BurstRule(window_ms=10_000, lateness_ms=1_000)  # keeps 11 s of clicks
    t = 1_767_225_600_000

    def at(cid: str, dt: int, origin: str) -> Any:
        return click_from_dict(
            {"click_id": cid, "session_id": "s", "url": "u", "timestamp": t + dt}, origin
        )

    partition = KeyedPartition(rule, {})
    for i in range(3):
        partition.process(at(f"c{i}", i, f"0:{i}"))
    partition.process(at("later", 5_000, "0:3"))  # watermark now 5 s on
    replay = partition.process(at("c2", 2, "0:2"))
    assert not replay.late and replay.result is not None and replay.result.replay
    assert [f.click_id for f in replay.result.findings] == ["c2"]
    assert partition.process(at("new", 2, "0:4")).late
