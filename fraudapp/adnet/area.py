"""The suspicious-location check's pure parts: the geo grid, windowed counts, the rule.

The check asks, per click: of the clicks within ``radius_km`` of this one over the
trailing window, what share was fraudulent? Answering that exactly needs every
click's coordinates and a distance per pair; instead clicks are counted per cell of
a grid and per time bucket, and a query sums a fixed set of cells around the
click's cell. The price is a bounded over-inclusion, documented here and checked
against brute force in ``tests/unit/test_area.py``.

Space: H3 cells and their neighbourhood
---------------------------------------
A click is counted in its H3 cell at ``resolution`` (default 4: hexagon edges ~26 km,
~1,770 km²). The **ring** of a cell ``c`` is every cell ``c'`` of
``h3.grid_disk(c, k)`` with::

    dist(centre(c), centre(c')) <= radius_km + r(c) + r(c') + MARGIN_KM

where ``r(x)`` is the cell's circumradius (largest centre-to-vertex distance; an
H3 cell is a spherical polygon with great-circle edges, so it lies in the cap of
that radius around its centre, which the tests confirm on random points).

* **No misses.** If ``p`` lies in ``c``, ``q`` in ``c'`` and ``dist(p, q) <=
  radius_km``, the triangle inequality gives ``dist(centre(c), centre(c')) <=
  r(c) + radius_km + r(c')``, so ``c'`` is in the ring of ``c``: the ring holds
  every point within ``radius_km`` of *any* point of the cell.
* **Bounded over-inclusion.** Conversely any point of a ring cell is at most
  ``radius_km + 2 (r(c) + r(c')) + MARGIN_KM`` from any point of ``c``, hence
  within ``max_reach_km = radius_km + 4 R_max + MARGIN_KM`` where ``R_max`` is the
  largest circumradius at the resolution (28.68 km at res 4: 215.2 km for a
  100 km radius). So a query counts every click within ``radius_km`` and possibly
  some up to ``max_reach_km`` away, never further.
* **k.** ``grid_disk`` only supplies candidates; ``k`` must reach every cell the
  criterion keeps. Neighbouring centres are at least ``S_min`` apart (smallest over
  the globe at the resolution), and on a hexagonal lattice a cell ``j`` steps away
  is at least ``j * S_min * sqrt(3) / 2`` from the centre, so ``k =
  ceil((radius_km + 2 R_max + MARGIN_KM) / (S_min * sqrt(3) / 2))`` (6 at res 4).
  As a guard against H3's distortion the ring is widened, cell by cell, while its
  outermost hex ring still holds a kept cell; that never happens on the tests'
  worldwide samples.
* **Symmetric.** The criterion is symmetric in ``c`` and ``c'``, so ``c'`` is in
  the ring of ``c`` exactly when ``c`` is in the ring of ``c'``.

Trimming the hexagonal disk to this criterion (rather than counting the whole
``grid_disk``) keeps about a third of its cells (37-59, ~42 around the demo cities,
of 127 at res 4) and roughly halves the worst over-inclusion (a whole k=6 disk
reaches ~350 km).

Time: buckets
-------------
Counts are kept per ``bucket_ms`` bucket (bucket start ``b = t - t % bucket_ms``).
``totals(cell, t)`` sums the buckets whose start is in ``(t - window_ms, t]``;
with ``window_ms`` a multiple of ``bucket_ms`` (required) these are the
``window_ms / bucket_ms`` buckets ending with ``t``'s own, i.e. the clicks with
timestamps in ``[b - window_ms + bucket_ms, b + bucket_ms)``. The window's trailing
edge is thus exact to one bucket (it covers between ``window_ms - bucket_ms`` and
``window_ms`` before ``t``), and clicks already counted later in ``t``'s own bucket
are included.

Partitioning
------------
The stage is keyed by a coarse region, the H3 parent of the cell at
``region_resolution`` (default 1: ~840 cells worldwide, ~1,000 km across). Each
region's :class:`AreaCounts` must hold every cell its own cells' rings touch, so a
click is added in its own region and also sent to every other region in
:meth:`AreaGrid.regions_reached`; by symmetry of the ring that is exactly enough
for any click in any region to see all its ring's clicks.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import lru_cache

import h3

from fraudapp.core.geo import geo_distance_km

#: Per H3 resolution, over every cell of the globe (re-derived on samples by the
#: tests): the smallest distance between the centres of two neighbouring cells
#: (rounded down) and the largest circumradius (rounded up), in km.
MIN_CENTRE_SPACING_KM = {2: 225.36, 3: 86.33, 4: 31.47, 5: 12.23}
MAX_CIRCUMRADIUS_KM = {2: 200.65, 3: 75.86, 4: 28.68, 5: 10.84}
#: Slack for rounding and the cap-containment of cells (measured excess: < 0 km).
MARGIN_KM = 0.5

_RING_CACHE = 1 << 16  # ring tuples share interned cell ids: ~0.5 kB each at res 4


@dataclass(frozen=True, slots=True)
class AreaGrid:
    """Cells, rings and regions for one radius; every method is pure and cached."""

    radius_km: float = 100.0
    resolution: int = 4
    region_resolution: int = 1
    _k: int = field(init=False, repr=False, compare=False)
    _max_reach_km: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.radius_km) and self.radius_km > 0):
            raise ValueError(f"radius_km must be a positive number, got {self.radius_km!r}")
        if self.resolution not in MAX_CIRCUMRADIUS_KM:
            raise ValueError(
                f"resolution must be one of {sorted(MAX_CIRCUMRADIUS_KM)}, got {self.resolution}"
            )
        if not 0 <= self.region_resolution <= self.resolution:
            raise ValueError(
                f"region_resolution must be in [0, {self.resolution}], got {self.region_resolution}"
            )
        r_max = MAX_CIRCUMRADIUS_KM[self.resolution]
        pair = self.radius_km + 2 * r_max + MARGIN_KM
        step = MIN_CENTRE_SPACING_KM[self.resolution] * math.sqrt(3) / 2
        object.__setattr__(self, "_k", math.ceil(pair / step))
        object.__setattr__(self, "_max_reach_km", self.radius_km + 4 * r_max + MARGIN_KM)

    @property
    def k(self) -> int:
        """The ``grid_disk`` size the rings are cut from (widened per cell if needed)."""
        return self._k

    @property
    def max_reach_km(self) -> float:
        """No point of a ring cell is farther than this from any point of the cell."""
        return self._max_reach_km

    def cell(self, lat: float, lon: float) -> str:
        """The H3 cell of a point; ValueError for coordinates off the globe."""
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # also rejects NaN
            raise ValueError(f"not a location: lat={lat!r} lon={lon!r}")
        return sys.intern(h3.latlng_to_cell(lat, lon, self.resolution))

    def ring(self, cell: str) -> tuple[str, ...]:
        """The cells whose clicks count for a click in ``cell``, ``cell`` first."""
        return _ring(self.radius_km, self.resolution, self._k, cell)

    def region(self, cell: str) -> str:
        """The coarse region (partitioning key) of a cell."""
        return _region(cell, self.region_resolution)

    def regions_reached(self, cell: str) -> frozenset[str]:
        """The regions of all of ``cell``'s ring, its own included: where a click in
        ``cell`` must be counted."""
        return _regions_reached(
            self.radius_km, self.resolution, self._k, self.region_resolution, cell
        )


@lru_cache(maxsize=1 << 18)
def _geometry(cell: str) -> tuple[float, float, float]:
    """(lat, lon, circumradius km) of a cell."""
    lat, lon = h3.cell_to_latlng(cell)
    radius = max(geo_distance_km(lat, lon, vlat, vlon) for vlat, vlon in h3.cell_to_boundary(cell))
    return lat, lon, radius


def _in_ring(centre: tuple[float, float, float], other: str, radius_km: float) -> bool:
    lat, lon, r = centre
    olat, olon, orad = _geometry(other)
    return geo_distance_km(lat, lon, olat, olon) <= radius_km + r + orad + MARGIN_KM


@lru_cache(maxsize=_RING_CACHE)
def _ring(radius_km: float, resolution: int, k: int, cell: str) -> tuple[str, ...]:
    if not h3.is_valid_cell(cell) or h3.get_resolution(cell) != resolution:
        raise ValueError(f"{cell!r} is not an H3 cell at resolution {resolution}")
    centre = _geometry(cell)
    while any(_in_ring(centre, other, radius_km) for other in h3.grid_ring(cell, k)):
        k += 1  # the criterion reaches the disk's edge: a wider disk may hold more
    kept = [other for other in h3.grid_disk(cell, k) if _in_ring(centre, other, radius_km)]
    kept.sort(key=lambda other: (other != cell, other))
    return tuple(sys.intern(other) for other in kept)


@lru_cache(maxsize=1 << 16)
def _region(cell: str, region_resolution: int) -> str:
    return sys.intern(h3.cell_to_parent(cell, region_resolution))


@lru_cache(maxsize=_RING_CACHE)
def _regions_reached(
    radius_km: float, resolution: int, k: int, region_resolution: int, cell: str
) -> frozenset[str]:
    ring = _ring(radius_km, resolution, k, cell)
    return frozenset(_region(other, region_resolution) for other in ring)


class _CellCounts:
    """One cell's buckets, plus its window sums as of one bucket (``at``), which
    consecutive queries slide forward a bucket at a time instead of re-summing."""

    __slots__ = ("buckets", "oldest", "at", "clicks", "fraud")

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}  # bucket start -> [clicks, fraud]
        self.oldest = 0  # smallest bucket start (valid while buckets is not empty)
        self.at: int | None = None  # the sums cover buckets in (at - window, at]
        self.clicks = 0
        self.fraud = 0


class AreaCounts:
    """One region's state: per fine cell, per time bucket, ``[clicks, fraud]``.

    Exact for the definition in the module docstring; ``totals`` costs one dict
    lookup per ring cell plus, per cell whose cached sums are for another bucket,
    one lookup per bucket slid (a full re-sum only after a jump of a window).
    """

    def __init__(
        self, grid: AreaGrid, *, window_ms: int = 3_600_000, bucket_ms: int = 60_000
    ) -> None:
        _check_window(window_ms, bucket_ms)
        self.grid = grid
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self._cells: dict[str, _CellCounts] = {}

    def __len__(self) -> int:
        """Cells holding counts."""
        return len(self._cells)

    @property
    def buckets_held(self) -> int:
        """(cell, bucket) entries held: the memory that ``expire`` bounds."""
        return sum(len(state.buckets) for state in self._cells.values())

    def add(self, cell: str, t: int, fraud: bool) -> None:
        """Count one click at event time ``t`` (ms) in ``cell``."""
        b = t - t % self.bucket_ms
        state = self._cells.get(cell)
        if state is None:
            state = self._cells[cell] = _CellCounts()
            state.oldest = b
        entry = state.buckets.get(b)
        if entry is None:
            state.buckets[b] = [1, 1 if fraud else 0]
            if b < state.oldest:
                state.oldest = b
        else:
            entry[0] += 1
            if fraud:
                entry[1] += 1
        at = state.at
        if at is not None and at - self.window_ms < b <= at:
            state.clicks += 1
            if fraud:
                state.fraud += 1

    def totals(self, cell: str, t: int) -> tuple[int, int]:
        """``(clicks, fraud)`` over the ring of ``cell``, in the buckets whose start is in
        ``(t - window_ms, t]``."""
        s = t - t % self.bucket_ms
        cells = self._cells
        clicks = fraud = 0
        for other in self.grid.ring(cell):
            state = cells.get(other)
            if state is None:
                continue
            if state.at != s:
                self._slide(state, s)
            clicks += state.clicks
            fraud += state.fraud
        return clicks, fraud

    def _slide(self, state: _CellCounts, s: int) -> None:
        """Make ``state``'s sums cover the buckets in ``(s - window, s]``."""
        window, step, buckets = self.window_ms, self.bucket_ms, state.buckets
        at = state.at
        if at is None or abs(s - at) >= window or len(buckets) * step < abs(s - at):
            clicks = fraud = 0
            low = s - window
            for b, (c, f) in buckets.items():
                if low < b <= s:
                    clicks += c
                    fraud += f
            state.clicks, state.fraud = clicks, fraud
        else:
            # Forward: buckets (at, s] enter and (at - window, s - window] leave;
            # backward the same with the roles swapped.
            sign = 1 if s > at else -1
            lo, hi = (at, s) if s > at else (s, at)
            for b in range(lo + step, hi + step, step):
                entered, left = buckets.get(b), buckets.get(b - window)
                if entered is not None:
                    state.clicks += sign * entered[0]
                    state.fraud += sign * entered[1]
                if left is not None:
                    state.clicks -= sign * left[0]
                    state.fraud -= sign * left[1]
        state.at = s

    def expire(self, horizon: int) -> list[str]:
        """Drop the buckets that hold only times before ``horizon`` (``start +
        bucket_ms <= horizon``) and return the cells that changed (emptied cells are
        forgotten: ``cell_state`` is then None). Afterwards ``totals(cell, t)`` is
        still exact for every ``t >= horizon + window_ms - bucket_ms``."""
        step, window = self.bucket_ms, self.window_ms
        changed = []
        for cell, state in list(self._cells.items()):
            if state.oldest + step > horizon:
                continue
            buckets = state.buckets
            for b in [b for b in buckets if b + step <= horizon]:
                c, f = buckets.pop(b)
                if state.at is not None and state.at - window < b <= state.at:
                    state.clicks -= c
                    state.fraud -= f
            changed.append(cell)
            if buckets:
                state.oldest = min(buckets)
            else:
                del self._cells[cell]
        return changed

    def cell_state(self, cell: str) -> dict[str, list[int]] | None:
        """One cell's counts as JSON, ``{bucket_start: [clicks, fraud]}`` in bucket
        order, for a key-value table; None when the cell holds nothing."""
        state = self._cells.get(cell)
        if state is None or not state.buckets:
            return None
        return {str(b): list(state.buckets[b]) for b in sorted(state.buckets)}

    def load_cell(self, cell: str, state: dict[str, list[int]]) -> None:
        """Replace a cell's counts with a ``cell_state`` (recovery). Bucket starts
        are re-aligned to this ``bucket_ms``, so a state written with another bucket
        size still loads (its window edge then shifts by up to a bucket)."""
        counts = _CellCounts()
        for key, value in state.items():
            try:
                start = int(key)
                clicks, fraud = (int(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"bad area state for {cell}: {key!r}: {value!r}") from None
            if not 0 <= fraud <= clicks:
                raise ValueError(f"bad area state for {cell}: {key!r}: {value!r}")
            if clicks == 0:
                continue
            b = start - start % self.bucket_ms
            entry = counts.buckets.setdefault(b, [0, 0])
            entry[0] += clicks
            entry[1] += fraud
        if counts.buckets:
            counts.oldest = min(counts.buckets)
            self._cells[cell] = counts
        else:
            self._cells.pop(cell, None)


@dataclass(frozen=True, slots=True)
class LocationRule:
    """When a location is suspicious: at least ``threshold`` of at least
    ``min_clicks`` clicks around it (the ring, over the window) were fraud."""

    radius_km: float = 100.0
    window_ms: int = 3_600_000
    bucket_ms: int = 60_000
    threshold: float = 0.2
    min_clicks: int = 50

    def __post_init__(self) -> None:
        _check_window(self.window_ms, self.bucket_ms)
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.min_clicks < 1:
            raise ValueError(f"min_clicks must be at least 1, got {self.min_clicks!r}")

    def fires(self, clicks: int, fraud: int) -> bool:
        """Enough clicks, and a fraud share at or over the threshold."""
        return clicks >= self.min_clicks and fraud / clicks >= self.threshold


def _check_window(window_ms: int, bucket_ms: int) -> None:
    """A window of whole buckets keeps its edge the same for every time in a bucket."""
    if bucket_ms <= 0 or window_ms <= 0 or window_ms % bucket_ms:
        raise ValueError(
            f"window_ms ({window_ms}) must be a positive multiple of bucket_ms ({bucket_ms})"
        )
