"""The suspicious-location grid and counts against brute force.

Coverage and reach are checked on random points worldwide (poles, antimeridian,
pentagons); counts against a brute-force scan of every click, both over the same
cells (exact equality) and over true distances (the documented bounds).
"""

from __future__ import annotations

import json
import math
import random

import h3
import pytest

from fraudapp.adnet.area import (
    MARGIN_KM,
    MAX_CIRCUMRADIUS_KM,
    MIN_CENTRE_SPACING_KM,
    AreaCounts,
    AreaGrid,
    LocationRule,
)
from fraudapp.adnet.geoip import DEMO_CITIES
from fraudapp.core.geo import EARTH_RADIUS_KM, geo_distance_km

MIN = 60_000
HOUR = 3_600_000
GRID = AreaGrid()


def destination(lat: float, lon: float, bearing: float, km: float) -> tuple[float, float]:
    """The point ``km`` from (lat, lon) along ``bearing`` (radians) on the sphere."""
    phi, lam, delta = math.radians(lat), math.radians(lon), km / EARTH_RADIUS_KM
    phi2 = math.asin(
        math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(bearing)
    )
    lam2 = lam + math.atan2(
        math.sin(bearing) * math.sin(delta) * math.cos(phi),
        math.cos(delta) - math.sin(phi) * math.sin(phi2),
    )
    lon2 = (math.degrees(lam2) + 540.0) % 360.0 - 180.0
    return max(-90.0, min(90.0, math.degrees(phi2))), lon2


def centre_and_radius(cell: str) -> tuple[float, float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    radius = max(geo_distance_km(lat, lon, a, b) for a, b in h3.cell_to_boundary(cell))
    return lat, lon, radius


def worldwide_points(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """Uniform on the sphere, plus the awkward places: poles, antimeridian, pentagons."""
    points = []
    for _ in range(n):
        points.append((math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)))
    for _ in range(n // 4):
        points.append((rng.choice((-1, 1)) * rng.uniform(80, 90), rng.uniform(-180, 180)))
        points.append((rng.uniform(-70, 70), rng.choice((-1, 1)) * rng.uniform(179, 180)))
    for pentagon in h3.get_pentagons(GRID.resolution):
        lat, lon = h3.cell_to_latlng(pentagon)
        for _ in range(3):
            points.append(destination(lat, lon, rng.uniform(0, 2 * math.pi), rng.uniform(0, 60)))
    return points


# -- the grid ------------------------------------------------------------------------------


def test_resolution_constants_hold_on_samples() -> None:
    """The per-resolution constants bound every cell: exhaustively at res 2, and at the
    default res 4 on all the children of three base cells, one a pentagon."""
    for res, bases in ((2, h3.get_res0_cells()), (4, ["8009fffffffffff", "8001fffffffffff"])):
        bases = list(bases) + ([h3.get_pentagons(0)[0]] if res == 4 else [])
        circ, spacing = 0.0, math.inf
        for base in bases:
            for cell in h3.cell_to_children(base, res):
                lat, lon, radius = centre_and_radius(cell)
                circ = max(circ, radius)
                for other in h3.grid_ring(cell, 1):
                    spacing = min(spacing, geo_distance_km(lat, lon, *h3.cell_to_latlng(other)))
        assert circ <= MAX_CIRCUMRADIUS_KM[res]
        assert spacing >= MIN_CENTRE_SPACING_KM[res]
        if res == 2:  # exhaustive: the constants are also tight
            assert MAX_CIRCUMRADIUS_KM[res] - circ < 0.01
            assert spacing - MIN_CENTRE_SPACING_KM[res] < 0.01


def test_cells_lie_within_their_circumradius() -> None:
    """The ring criterion's premise: a point is no farther from its cell's centre than
    the cell's farthest vertex."""
    rng = random.Random(1)
    for lat, lon in worldwide_points(rng, 4000):
        clat, clon, radius = centre_and_radius(GRID.cell(lat, lon))
        assert geo_distance_km(lat, lon, clat, clon) <= radius + MARGIN_KM / 10


def test_defaults() -> None:
    assert (GRID.radius_km, GRID.resolution, GRID.region_resolution) == (100.0, 4, 1)
    assert GRID.k == 6
    assert GRID.max_reach_km == pytest.approx(100 + 4 * 28.68 + 0.5)
    ring = GRID.ring(GRID.cell(51.5074, -0.1278))
    assert 35 <= len(ring) <= 60 and ring[0] == GRID.cell(51.5074, -0.1278)
    assert GRID.ring(ring[0]) is ring  # cached


def test_no_misses_and_reach_is_bounded() -> None:
    """Every point within the radius of a point falls in a ring cell, and no point of
    a ring cell is farther than ``max_reach_km``."""
    rng = random.Random(2)
    for grid in (GRID, AreaGrid(radius_km=30.0, resolution=5)):
        for lat, lon in worldwide_points(rng, 300 if grid is GRID else 60):
            cell = grid.cell(lat, lon)
            ring = set(grid.ring(cell))
            inner = set(h3.grid_disk(cell, grid.k - 1))
            assert cell in ring
            for i in range(40):
                km = grid.radius_km * (1 - 1e-9 if i < 8 else math.sqrt(rng.random()))
                qlat, qlon = destination(lat, lon, rng.uniform(0, 2 * math.pi), km)
                assert geo_distance_km(lat, lon, qlat, qlon) <= grid.radius_km + 1e-6
                assert grid.cell(qlat, qlon) in ring, (lat, lon, qlat, qlon)
            for other in ring:
                olat, olon, radius = centre_and_radius(other)
                assert geo_distance_km(lat, lon, olat, olon) + radius <= grid.max_reach_km
                # the disk was wide enough: no kept cell sits on its edge
                assert other in inner


def test_ring_is_symmetric() -> None:
    rng = random.Random(3)
    for lat, lon in worldwide_points(rng, 20)[:40]:
        cell = GRID.cell(lat, lon)
        for other in GRID.ring(cell):
            assert cell in GRID.ring(other)


def test_regions_reached_cover_every_point_within_the_radius() -> None:
    rng = random.Random(4)
    for lat, lon in worldwide_points(rng, 300):
        cell = GRID.cell(lat, lon)
        reached = GRID.regions_reached(cell)
        assert GRID.region(cell) in reached
        assert h3.get_resolution(GRID.region(cell)) == GRID.region_resolution
        for _ in range(30):
            q = destination(lat, lon, rng.uniform(0, 2 * math.pi), rng.uniform(0, 100))
            assert GRID.region(GRID.cell(*q)) in reached
            # and the other way round: q's clicks reach p's region
            assert GRID.region(cell) in GRID.regions_reached(GRID.cell(*q))


def test_bad_grid_arguments() -> None:
    with pytest.raises(ValueError, match="resolution"):
        AreaGrid(resolution=9)
    with pytest.raises(ValueError, match="region_resolution"):
        AreaGrid(region_resolution=5)
    with pytest.raises(ValueError, match="radius"):
        AreaGrid(radius_km=0)
    with pytest.raises(ValueError, match="not a location"):
        GRID.cell(91.0, 0.0)
    with pytest.raises(ValueError, match="not a location"):
        GRID.cell(float("nan"), 0.0)
    with pytest.raises(ValueError, match="resolution 4"):
        GRID.ring(h3.latlng_to_cell(0.0, 0.0, 5))


# -- the counts ------------------------------------------------------------------------------


class Click:
    __slots__ = ("lat", "lon", "t", "fraud", "cell", "bucket")

    def __init__(self, lat: float, lon: float, t: int, fraud: bool, grid: AreaGrid) -> None:
        self.lat, self.lon, self.t, self.fraud = lat, lon, t, fraud
        self.cell = grid.cell(lat, lon)
        self.bucket = t - t % MIN


def clustered_clicks(rng: random.Random, n: int, grid: AreaGrid) -> list[Click]:
    """Clicks around a few cities (one by the antimeridian, two near each other so their
    rings and regions overlap), over two hours, some on bucket boundaries."""
    centres = [(c[2], c[3]) for c in DEMO_CITIES if c[0] in {"London", "Lagos", "Auckland"}]
    centres += [(48.8566, 2.3522), (-16.5, 179.9)]  # Paris (near London), Fiji
    clicks = []
    for _ in range(n):
        lat, lon = rng.choice(centres)
        km = abs(rng.gauss(0, 90))
        lat, lon = destination(lat, lon, rng.uniform(0, 2 * math.pi), km)
        t = rng.randrange(2 * HOUR) if rng.random() < 0.9 else rng.randrange(120) * MIN
        clicks.append(Click(lat, lon, t, rng.random() < 0.3, grid))
    return clicks


def window(click: Click, query: Click) -> bool:
    s = query.t - query.t % MIN
    return s - HOUR < click.bucket <= s


def test_totals_match_brute_force_across_regions() -> None:
    """Clicks arrive up to 5 minutes late; each is added to every region it reaches, as
    the stage does, and evaluated in its own region's counts. Totals equal a brute-force
    count over the ring's cells, and are bracketed by true-distance counts."""
    rng = random.Random(5)
    clicks = clustered_clicks(rng, 2000, GRID)
    arrival = sorted(clicks, key=lambda c: c.t + rng.randrange(5 * MIN))
    regions: dict[str, AreaCounts] = {}
    seen: list[Click] = []
    watermark = 0
    checked = 0
    for i, click in enumerate(arrival):
        for region in GRID.regions_reached(click.cell):
            regions.setdefault(region, AreaCounts(GRID)).add(click.cell, click.t, click.fraud)
        seen.append(click)
        watermark = max(watermark, click.t)
        if i % 97 == 0:  # expiry that keeps every window still queried intact
            for counts in regions.values():
                counts.expire(watermark - 2 * HOUR)
        if i % 5:
            continue
        totals = regions[GRID.region(click.cell)].totals(click.cell, click.t)
        ring = set(GRID.ring(click.cell))
        in_window = [c for c in seen if window(c, click)]
        in_ring = [c for c in in_window if c.cell in ring]
        assert totals == (len(in_ring), sum(c.fraud for c in in_ring))
        distances = [(geo_distance_km(click.lat, click.lon, c.lat, c.lon), c) for c in in_window]
        disc = [c for d, c in distances if d <= GRID.radius_km]
        reach = [c for d, c in distances if d <= GRID.max_reach_km]
        assert len(disc) <= totals[0] <= len(reach)
        assert sum(c.fraud for c in disc) <= totals[1] <= sum(c.fraud for c in reach)
        checked += 1
    assert checked == 400
    assert len(regions) >= 5  # the clusters span several regions


def test_totals_at_any_time_in_any_order() -> None:
    """The per-cell window sums slide forward and back: query random times, including
    window and bucket edges, against brute force."""
    rng = random.Random(6)
    clicks = clustered_clicks(rng, 600, GRID)
    counts = AreaCounts(GRID)
    for click in clicks:
        counts.add(click.cell, click.t, click.fraud)

    def check(query: Click) -> None:
        ring = set(GRID.ring(query.cell))
        hits = [c for c in clicks if c.cell in ring and window(c, query)]
        assert counts.totals(query.cell, query.t) == (len(hits), sum(c.fraud for c in hits))

    queries = []
    for _ in range(400):
        probe = rng.choice(clicks)
        edge = rng.choice((0, 1, -1, HOUR, HOUR - 1, HOUR + MIN, rng.randrange(-3 * HOUR, HOUR)))
        queries.append(Click(probe.lat, probe.lon, probe.bucket + edge, False, GRID))
        check(queries[-1])
    # Clicks added after a cell's sums were cached, on the cached window's edges.
    for _ in range(300):
        query = rng.choice(queries)
        s = query.t - query.t % MIN
        t = s + rng.choice((-HOUR, -HOUR + 1, -HOUR + MIN, -1, 0, MIN - 1, MIN))
        click = Click(query.lat, query.lon, t, rng.random() < 0.5, GRID)
        clicks.append(click)
        counts.add(click.cell, click.t, click.fraud)
        check(query)


def test_expire_and_round_trip() -> None:
    rng = random.Random(7)
    clicks = clustered_clicks(rng, 1500, GRID)
    counts = AreaCounts(GRID)
    for click in clicks:
        counts.add(click.cell, click.t, click.fraud)
    cells = {c.cell for c in clicks}
    queries = [(c.cell, c.t) for c in rng.sample(clicks, 200)]
    queries += [(c.cell, 129 * MIN + rng.randrange(MIN)) for c in rng.sample(clicks, 100)]
    before = {q: counts.totals(*q) for q in queries}  # warms the cached sums, then expire
    held = counts.buckets_held

    horizon = 70 * MIN
    changed = counts.expire(horizon)
    assert set(changed) == {c.cell for c in clicks if c.bucket + MIN <= horizon}
    assert counts.buckets_held < held
    for cell in cells:
        state = counts.cell_state(cell)
        kept = [c for c in clicks if c.cell == cell and c.bucket + MIN > horizon]
        if not kept:
            assert state is None
            continue
        assert state is not None
        assert all(int(b) + MIN > horizon for b in state)
        assert sum(v[0] for v in state.values()) == len(kept)
        assert sum(v[1] for v in state.values()) == sum(c.fraud for c in kept)
    restored = AreaCounts(GRID)
    for cell in cells:
        state = counts.cell_state(cell)
        if state is not None:
            restored.load_cell(cell, json.loads(json.dumps(state)))
    assert len(restored) == len(counts) and restored.buckets_held == counts.buckets_held
    # counts answers from the sums it cached before expiring: they must have followed
    for cell, t in queries + [(c.cell, c.t + HOUR // 2) for c in clicks[:100]]:
        assert restored.totals(cell, t) == counts.totals(cell, t)
    for (cell, t), totals in before.items():
        if t >= horizon + HOUR - MIN:  # windows clear of the horizon are unchanged
            assert counts.totals(cell, t) == totals

    left = {c for c in cells if counts.cell_state(c) is not None}
    assert left and sorted(counts.expire(3 * HOUR)) == sorted(left)
    assert len(counts) == 0 and counts.buckets_held == 0 and counts.expire(4 * HOUR) == []


@pytest.mark.parametrize("query_min", [69, 100, 109, 129])
def test_expire_keeps_cached_sums_right_on_the_edges(query_min: int) -> None:
    """A cell's window sums cached at a query time follow the buckets ``expire`` drops,
    including the bucket at the window's trailing edge and the query's own bucket."""
    counts = AreaCounts(GRID)
    cell = GRID.cell(-36.8485, 174.7633)
    for minute in (9, 40, 41, 49, 69, 70, 100):
        counts.add(cell, minute * MIN + 5, minute % 2 == 1)
    t = query_min * MIN + 7
    counts.totals(cell, t)  # caches the sums at t's bucket
    counts.expire(70 * MIN)  # drops minutes 9..69
    fresh = AreaCounts(GRID)
    fresh.load_cell(cell, counts.cell_state(cell) or {})
    assert counts.totals(cell, t) == fresh.totals(cell, t)
    assert fresh.totals(cell, 100 * MIN) == (2, 0)  # minutes 70 and 100


def test_load_cell_replaces_realigns_and_rejects() -> None:
    counts = AreaCounts(GRID)
    cell = GRID.cell(6.4541, 3.3947)
    counts.add(cell, 10 * MIN, True)
    counts.load_cell(cell, {str(5 * MIN): [3, 1], str(5 * MIN + 30_000): [2, 2]})
    assert counts.cell_state(cell) == {str(5 * MIN): [5, 3]}  # replaced, re-bucketed
    assert counts.totals(cell, 6 * MIN) == (5, 3)
    counts.load_cell(cell, {})
    assert counts.cell_state(cell) is None and len(counts) == 0
    for bad in ({"x": [1, 0]}, {"0": [1]}, {"0": [1, 2]}, {"0": "ab"}):
        with pytest.raises(ValueError, match="bad area state"):
            counts.load_cell(cell, bad)  # type: ignore[arg-type]


def test_window_must_be_whole_buckets() -> None:
    with pytest.raises(ValueError, match="multiple"):
        AreaCounts(GRID, window_ms=90_000, bucket_ms=60_000)
    with pytest.raises(ValueError, match="multiple"):
        LocationRule(window_ms=HOUR, bucket_ms=0)


def test_rule() -> None:
    rule = LocationRule()
    assert rule.fires(50, 10)  # exactly 20 % of exactly 50
    assert not rule.fires(50, 9)
    assert not rule.fires(49, 49)
    assert rule.fires(1000, 200) and not rule.fires(1000, 199)
    assert not rule.fires(0, 0)
    with pytest.raises(ValueError, match="threshold"):
        LocationRule(threshold=0.0)
    with pytest.raises(ValueError, match="min_clicks"):
        LocationRule(min_clicks=0)
