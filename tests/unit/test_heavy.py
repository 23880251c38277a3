"""Heavy hitters against a brute-force exact count per (kind, bucket, source)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from fraudapp.adnet.heavy import (
    ESTIMATE_METHOD,
    KINDS,
    CampaignHitters,
    HeavyHitterRule,
    TopItem,
)
from fraudapp.core.rulebook import SEVERITIES, grade

MIN = 60_000


class Exact:
    """Brute force: exact counts per bucket, windowed exactly like CampaignHitters."""

    def __init__(self, rule: HeavyHitterRule) -> None:
        self.rule = rule
        self.counts: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
        self.totals: Counter[int] = Counter()

    def add(self, t: int, sources: dict[str, str]) -> None:
        b = t - t % self.rule.bucket_ms
        self.totals[b] += 1
        for kind, source in sources.items():
            self.counts[kind, b][source] += 1

    def buckets(self, t: int) -> list[int]:
        return [b for b in self.totals if t - self.rule.window_ms < b <= t]

    def total(self, t: int) -> int:
        return sum(self.totals[b] for b in self.buckets(t))

    def count(self, kind: str, source: str, t: int) -> int:
        return sum(self.counts[kind, b][source] for b in self.buckets(t))

    def window(self, kind: str, t: int) -> Counter[str]:
        out: Counter[str] = Counter()
        for b in self.buckets(t):
            out.update(self.counts[kind, b])
        return out


def zipf_ids(rng: random.Random, n: int, distinct: int, prefix: str) -> list[str]:
    """Zipf-ish ids: rank r drawn with weight 1/r."""
    weights = [1.0 / r for r in range(1, distinct + 1)]
    return [f"{prefix}{r}" for r in rng.choices(range(distinct), weights=weights, k=n)]


# -- rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket_ms": 0},
        {"window_ms": 1000, "bucket_ms": 2000},
        {"lg_max_map_size": 2},
        {"share_threshold": 0.0},
        {"share_threshold": 1.5},
        {"min_clicks": 0},
    ],
)
def test_rule_rejects_bad_settings(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(ValueError):
        HeavyHitterRule(**kwargs)  # type: ignore[arg-type]


def test_unknown_kind_is_refused() -> None:
    h = CampaignHitters(HeavyHitterRule())
    with pytest.raises(ValueError):
        h.add(0, {"ipv4": "1.2.3.4"})
    with pytest.raises(ValueError):
        h.top("ipv4", 3, 0)


# -- (1) below capacity: exact ---------------------------------------------------------


def test_few_sources_are_counted_exactly() -> None:
    rule = HeavyHitterRule(window_ms=10 * MIN, bucket_ms=MIN, min_clicks=50)
    h, exact = CampaignHitters(rule), Exact(rule)
    rng = random.Random(1)
    ips = [f"10.0.0.{i}" for i in range(40)]  # far below 0.75 * 1024 counters
    devices = [f"d{i}" for i in range(30)]
    for i in range(3000):
        t = i * 300
        src = {"ip": rng.choice(ips)}
        if rng.random() < 0.8:
            src["device"] = rng.choice(devices)
        h.add(t, src)
        exact.add(t, src)
    t = 2999 * 300
    assert h.total(t) == exact.total(t)
    for kind in KINDS:
        want = exact.window(kind, t)
        got = h.top(kind, 1000, t)
        assert {x.item: x.estimate for x in got} == dict(want)
        assert all(x.lower_bound == x.estimate == x.upper_bound for x in got)
        assert [x.estimate for x in got] == sorted((x.estimate for x in got), reverse=True)
        top3 = h.top(kind, 3, t)
        assert top3 == got[:3]
        assert [x.estimate for x in top3] == [c for _, c in want.most_common(3)]


def test_findings_below_capacity_match_the_exact_rule() -> None:
    rule = HeavyHitterRule(window_ms=5 * MIN, bucket_ms=MIN, share_threshold=0.3, min_clicks=20)
    h, exact = CampaignHitters(rule), Exact(rule)
    rng = random.Random(2)
    for i in range(2000):
        t = i * 1000
        src = {"ip": "6.6.6.6" if rng.random() < 0.3 else f"10.0.0.{rng.randrange(50)}"}
        exact.add(t, src)
        fired = {(f.kind, f.source) for f in h.add(t, src)}
        total = exact.total(t)
        share = exact.count("ip", src["ip"], t) / total
        want = total >= rule.min_clicks and share >= rule.share_threshold
        assert fired == ({("ip", src["ip"])} if want else set())


# -- (2) far above capacity -------------------------------------------------------------


@pytest.mark.parametrize("lg", [6, 10])
def test_many_sources_find_planted_heavy_hitters_without_false_positives(lg: int) -> None:
    rule = HeavyHitterRule(
        window_ms=60 * MIN, bucket_ms=10 * MIN, lg_max_map_size=lg, min_clicks=100
    )
    h, exact = CampaignHitters(rule), Exact(rule)
    rng = random.Random(lg)
    n = 30_000
    span = 120 * MIN  # two windows: buckets enter and leave the window
    zipf_ip = iter(zipf_ids(rng, n, 20_000, "ip-"))
    zipf_dev = iter(zipf_ids(rng, n, 20_000, "dev-"))
    planted = {("ip", "6.6.6.6"), ("device", "bot-1")}
    first_fired: dict[tuple[str, str], int] = {}
    first_due: dict[tuple[str, str], int] = {}  # exact share passes, window holds min_clicks
    planted_clicks = planted_fired = 0  # planted clicks once the window holds min_clicks
    eps = rule.epsilon
    for i in range(n):
        t = i * span // n
        r = rng.random()
        ip = next(zipf_ip)
        if r < 0.25:
            ip = "6.6.6.6"
        elif r < 0.44:  # near the threshold: exact share hovers around 0.19
            ip = "7.7.7.7"
        dev = "bot-1" if rng.random() < 0.25 else next(zipf_dev)
        src = {"ip": ip, "device": dev}
        exact.add(t, src)
        total = exact.total(t)
        fired = {(f.kind, f.source): f for f in h.add(t, src)}
        for kind, source in src.items():
            true = exact.count(kind, source, t)
            f = fired.get((kind, source))
            if f is not None:
                # No false positive: the exact share passes too; the bounds hold.
                assert total >= rule.min_clicks
                assert true / total >= rule.share_threshold
                assert f.clicks_lower_bound <= true <= f.clicks_upper_bound
                assert f.campaign_clicks == total
                assert f.max_error <= eps * total
                first_fired.setdefault((kind, source), i)
            elif total >= rule.min_clicks:
                # No false negative beyond the sketch's a-priori error.
                assert true / total < rule.share_threshold + eps
            if (kind, source) in planted and total >= rule.min_clicks:
                planted_clicks += 1
                planted_fired += f is not None
                if true / total >= rule.share_threshold:
                    first_due.setdefault((kind, source), i)
        assert set(fired) <= {(k, s) for k, s in src.items()}

    assert set(first_fired) >= planted
    # The planted sources fire on (nearly) every click once the window holds min_clicks.
    assert planted_fired >= 0.98 * planted_clicks
    if lg == 10:
        # The first few hundred clicks are below capacity: counts are exact, so they fire
        # on the very first click where min_clicks is reached and their exact share passes.
        assert all(first_fired[p] == first_due[p] for p in planted)

    t = (n - 1) * span // n
    assert h.total(t) == exact.total(t)
    for kind, source in planted:
        want = exact.window(kind, t)
        got = h.top(kind, 10, t)
        assert len(got) == 10
        assert got[0].item == source
        for x in got:
            assert x.lower_bound <= want[x.item] <= x.upper_bound
            assert x.lower_bound <= x.estimate <= x.upper_bound
            assert x.upper_bound - x.lower_bound <= eps * h.total(t)
        keys = [(-x.estimate, -x.lower_bound, x.item) for x in got]
        assert keys == sorted(keys)
    assert h.top("ip", 2, t)[1].item == "7.7.7.7"


def test_finding_evidence_is_flat_json() -> None:
    rule = HeavyHitterRule(min_clicks=10, share_threshold=0.5)
    h = CampaignHitters(rule)
    findings = []
    for i in range(10):
        findings = h.add(i, {"ip": "1.1.1.1", "device": f"d{i}"})
    assert [(f.kind, f.source) for f in findings] == [("ip", "1.1.1.1")]
    ev = findings[0].evidence()
    assert ev == {
        "kind": "ip",
        "source": "1.1.1.1",
        "clicks_lower_bound": 10,
        "clicks_upper_bound": 10,
        "campaign_clicks": 10,
        "share": 1.0,
        "threshold": 0.5,
        "min_clicks": 10,
        "window_ms": rule.window_ms,
        "estimate_method": ESTIMATE_METHOD,
        "max_error": 0,
    }


def test_a_finding_is_graded_by_the_share_it_fired_on() -> None:
    """The guaranteed (lower-bound) share against the version's thresholds: as the
    farm takes more of the campaign, its findings climb."""
    grades = {"medium_share": 0.3, "high_share": 0.5, "critical_share": 0.8}
    h = CampaignHitters(HeavyHitterRule(min_clicks=10, share_threshold=0.2))
    for i in range(8):
        h.add(i, {"ip": f"10.0.0.{i}"})  # a crowd of one click each
    climbed = []
    for i in range(8, 48):
        (finding,) = h.add(i, {"ip": "6.6.6.6"}) or (None,)
        if finding is not None:
            climbed.append((finding.share, finding.severity(grades)))
    assert climbed[0] == (0.2, "low") and climbed[-1] == (40 / 48, "critical")
    ranks = [SEVERITIES.index(severity) for _, severity in climbed]
    assert ranks == sorted(ranks) and set(ranks) == {0, 1, 2, 3}  # climbing, never back
    for share, severity in climbed:
        assert severity == grade(share, grades, "share")


# -- (3) buckets and window --------------------------------------------------------------


def test_window_drops_old_buckets_and_counts_late_clicks() -> None:
    rule = HeavyHitterRule(window_ms=60 * MIN, bucket_ms=5 * MIN, min_clicks=1)
    h = CampaignHitters(rule)
    h.add(0, {"ip": "a"})  # bucket 0
    h.add(4 * MIN, {"ip": "b"})  # bucket 0
    h.add(30 * MIN, {"ip": "c"})  # bucket 30 min
    assert h.total(30 * MIN) == 3
    # The window at t holds the buckets starting in (t - 60 min, t].
    assert h.total(60 * MIN - 1) == 3
    assert h.total(60 * MIN) == 1  # bucket 0 starts at t - window: out
    assert [x.item for x in h.top("ip", 5, 60 * MIN)] == ["c"]
    # Edge exact to one bucket: at 29:59 the window holds nothing of bucket 30 min, at
    # 30:00 all of it, including clicks after t.
    assert h.total(30 * MIN - 1) == 2
    h.add(34 * MIN, {"ip": "c"})
    assert h.total(30 * MIN) == 4
    assert h.total(30 * MIN - 1) == 2

    h.add(70 * MIN, {"ip": "d"})  # latest: 70 min; window (10 min, 70 min]
    assert h.latest_time() == 70 * MIN
    # Late click into an older bucket still in the window: counted, in its own bucket.
    findings = h.add(16 * MIN, {"ip": "d"})
    assert 15 * MIN in h.bucket_keys()
    assert h.total(70 * MIN) == 4  # buckets 15, 30, 70 min
    assert {x.item: x.estimate for x in h.top("ip", 5, 70 * MIN)} == {"c": 2, "d": 2}
    # Judged over the window at its own time: buckets (-44 min, 16 min] hold a, b, d.
    assert [(f.source, f.campaign_clicks, f.share) for f in findings] == [("d", 3, 1 / 3)]
    assert h.latest_time() == 70 * MIN
    # How late is too late is the stage's watermark's business (CampaignPartition), not
    # the newest click's here: an older click is counted in its own bucket too.
    h.add(14 * MIN, {"ip": "z"})
    assert 10 * MIN in h.bucket_keys()
    assert h.total(14 * MIN) == 3


def test_share_uses_the_window_at_the_clicks_time() -> None:
    rule = HeavyHitterRule(window_ms=10 * MIN, bucket_ms=MIN, min_clicks=10, share_threshold=0.5)
    h = CampaignHitters(rule)
    for i in range(10):  # "x" dominates the first minutes
        h.add(i * 1000, {"ip": "x"})
    for i in range(20):  # then many others, 20 min later: "x" is out of the window
        h.add(20 * MIN + i, {"ip": f"o{i}"})
    assert h.add(20 * MIN + 100, {"ip": "x"}) == []
    assert h.total(20 * MIN + 100) == 21


def test_negative_times_bucket_by_floor() -> None:
    h = CampaignHitters(HeavyHitterRule(bucket_ms=MIN))
    h.add(-1, {"ip": "a"})
    assert h.bucket_keys() == [-MIN]


# -- (4) persistence ---------------------------------------------------------------------


def test_dump_load_round_trip_keeps_top_and_totals() -> None:
    rule = HeavyHitterRule(window_ms=30 * MIN, bucket_ms=5 * MIN, lg_max_map_size=6)
    h = CampaignHitters(rule)
    rng = random.Random(4)
    ips = zipf_ids(rng, 20_000, 5000, "ip-")
    for i, ip in enumerate(ips):
        src = {"ip": "6.6.6.6" if i % 4 == 0 else ip}
        if i % 3:
            src["device"] = f"d{i % 500}"
        h.add(i * 100, src)
    h.add(5, {})  # a click with no source: counted in a bucket that already exists
    restored = CampaignHitters(rule)
    for b in h.bucket_keys():
        restored.load_bucket(b, h.dump_bucket(b))
    assert restored.bucket_keys() == h.bucket_keys()
    assert restored.latest_time() == h.latest_time()
    for t in (0, 5 * MIN, 19_999 * 100, 40 * MIN):
        assert restored.total(t) == h.total(t)
        for kind in KINDS:
            assert restored.top(kind, 20, t) == h.top(kind, 20, t)
    # Both keep working identically on the next click.
    t = 19_999 * 100 + 1
    assert restored.add(t, {"ip": "6.6.6.6"}) == h.add(t, {"ip": "6.6.6.6"})

    # An empty-kind bucket and reloading over an existing bucket.
    e = CampaignHitters(rule)
    e.add(0, {})
    data = e.dump_bucket(0)
    e.load_bucket(0, data)
    assert e.total(0) == 1 and e.top("ip", 3, 0) == []
    with pytest.raises(KeyError):
        e.dump_bucket(5 * MIN)
    with pytest.raises(ValueError):
        e.load_bucket(0, data + b"x")
    with pytest.raises(ValueError):
        e.load_bucket(0, data[:-1])


# -- (5) memory ----------------------------------------------------------------------------


def test_expire_bounds_memory() -> None:
    rule = HeavyHitterRule(window_ms=60 * MIN, bucket_ms=5 * MIN, lg_max_map_size=6)
    h = CampaignHitters(rule)
    rng = random.Random(5)
    held = []
    for i in range(48_000):  # 8 hours, 10 000 clicks per bucket, all distinct
        t = i * 600
        h.add(t, {"ip": f"ip-{rng.getrandbits(40)}", "device": f"d{i}"})
        if i % 500 == 0:
            assert h.expire(t - rule.window_ms)
            held.append(len(h.bucket_keys()))
            for b in h.bucket_keys():
                assert len(h.dump_bucket(b)) < 2 * 2**rule.lg_max_map_size * 64
    # At most the window's buckets plus the current and the one straddling the horizon.
    assert max(held) <= rule.window_ms // rule.bucket_ms + 2
    assert h.expire(h.latest_time() + 10 * rule.window_ms) is False
    assert h.bucket_keys() == [] and h.total(h.latest_time()) == 0
    assert h.top("ip", 5, h.latest_time()) == []


def test_expire_keeps_buckets_that_end_after_the_horizon() -> None:
    h = CampaignHitters(HeavyHitterRule(bucket_ms=MIN))
    for b in range(5):
        h.add(b * MIN, {"ip": "a"})
    assert h.expire(2 * MIN) is True
    assert h.bucket_keys() == [2 * MIN, 3 * MIN, 4 * MIN]
    assert h.expire(2 * MIN + 1) is True
    assert h.bucket_keys() == [2 * MIN, 3 * MIN, 4 * MIN]
    assert h.expire(3 * MIN) is True
    assert h.bucket_keys() == [3 * MIN, 4 * MIN]


def test_top_item_is_a_value() -> None:
    assert TopItem("a", 3, 2, 4) == TopItem("a", 3, 2, 4)
