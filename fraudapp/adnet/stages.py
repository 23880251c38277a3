"""The campaign and area stages' state per partition, over any key-value store.

The two statistical checks keep decoded state in memory per partition (a bucket of
sketches or a region's cell counts is too big to decode per click) and write it to
their store as it changes. The faust agents give them the worker's changelogged
RocksDB tables; ``fraudapp replay`` gives them dicts, so a backtest runs exactly the
code the live stream does. Both judge lateness and expire state by the watermark
their caller gives (live: the stage's level across partitions and workers,
:mod:`fraudapp.core.watermarks`; replay: its stream's newest event time), never by the
newest click they have seen themselves, which runs ahead while a worker catches up.
Pure Python: no faust, Kafka or asyncio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping

import orjson

from fraudapp.adnet.area import AreaCounts, AreaGrid, LocationRule
from fraudapp.adnet.heavy import CampaignHitters, HeavyFinding, HeavyHitterRule

Store = MutableMapping[bytes, bytes]
SEP = "\x1f"
#: Seconds between writes of a changed sketch to the store (see CampaignPartition).
CHECKPOINT_S = 1.0


def marks_key(campaign: str, bucket: int) -> bytes:
    return f"{campaign}{SEP}{bucket}{SEP}alerted".encode()


class CampaignPartition:
    """One partition's campaigns, decoded in memory, checkpointed bucket by bucket.

    A bucket's sketches serialise to up to ~12 KB each, too much to write to the
    changelog per click; changed buckets are written at most once per
    ``CHECKPOINT_S`` instead. A worker that dies loses at most that last second of
    counts (the check then under-counts, which can delay a finding, never invent one).
    Which sources were already alerted per bucket is written with them, so a
    partition that moves to another worker does not alert them again.
    """

    def __init__(
        self,
        partition: int,
        store: Store,
        rule: Callable[[], HeavyHitterRule],
        lateness_ms: int,
        seed: Iterable[tuple[bytes, bytes]] = (),
        request_flush: Callable[[CampaignPartition], None] | None = None,
    ) -> None:
        self.partition = partition
        self.store = store
        self.rule = rule
        self.lateness_ms = lateness_ms
        #: Called when changes wait for the next checkpoint: the live stage makes sure
        #: one comes even if no click does; replay checkpoints at its end.
        self.request_flush = request_flush
        self.campaigns: dict[str, CampaignHitters] = {}
        self.alerted: set[tuple[str, str, str, int]] = set()
        self.dirty: set[tuple[str, int]] = set()
        self.checkpointed = time.monotonic()
        self.flush_due = False
        self.watermark: int | None = None
        self.next_sweep: int | None = None
        for key, value in seed:
            campaign, bucket, *marks = key.decode("utf-8").split(SEP)
            if marks:
                self.alerted.update(
                    (campaign, kind, source, int(bucket)) for kind, source in orjson.loads(value)
                )
            else:
                self.hitters(campaign).load_bucket(int(bucket), value)

    def hitters(self, campaign: str) -> CampaignHitters:
        hitters = self.campaigns.get(campaign)
        if hitters is None:
            hitters = self.campaigns[campaign] = CampaignHitters(self.rule())
        return hitters

    def set_rule(self, rule: HeavyHitterRule) -> None:
        for hitters in self.campaigns.values():
            hitters.rule = rule

    def too_late(self, t: int, watermark: int | None) -> bool:
        """More than the lateness behind the watermark: older buckets of its window
        may be gone."""
        return watermark is not None and t < watermark - self.lateness_ms

    def observe(
        self,
        campaign: str,
        t: int,
        sources: Mapping[str, str],
        repeat: bool,
        watermark: int | None,
    ) -> tuple[list[HeavyFinding], list[tuple[HeavyFinding, int]]]:
        """Count one click (unless it is a ``repeat``, counted when first read) and
        judge its sources: (the findings, each marking the click; those to alert, with
        their bucket: once per source per bucket, and again for a repeat, whose alerts
        may not have left the first time). The caller has refused it if too late."""
        hitters = self.hitters(campaign)
        bucket = hitters.bucket_of(t)
        if repeat:
            findings = hitters.judge(t, sources)
        else:
            findings = hitters.add(t, sources)
            self.dirty.add((campaign, bucket))
        to_alert = []
        for finding in findings:
            mark = (campaign, finding.kind, finding.source, bucket)
            if mark in self.alerted and not repeat:
                continue
            self.alerted.add(mark)
            self.dirty.add((campaign, bucket))
            to_alert.append((finding, bucket))
        self._advance(watermark)
        return findings, to_alert

    def _advance(self, watermark: int | None) -> None:
        """Sweep every campaign once per bucket of watermark progress."""
        if watermark is None or (self.watermark is not None and watermark <= self.watermark):
            return
        self.watermark = watermark
        if self.next_sweep is not None and watermark < self.next_sweep:
            return
        rule = self.rule()
        self.next_sweep = watermark + rule.bucket_ms
        horizon = watermark - rule.window_ms - self.lateness_ms
        for campaign, hitters in list(self.campaigns.items()):
            self._expire(campaign, hitters, horizon)
        self.alerted = {mark for mark in self.alerted if mark[3] >= horizon}

    def _expire(self, campaign: str, hitters: CampaignHitters, horizon: int) -> None:
        before = set(hitters.bucket_keys())
        if before and min(before) >= horizon:
            return
        left = hitters.expire(horizon)
        for bucket in before - set(hitters.bucket_keys()):
            self.store.pop(f"{campaign}{SEP}{bucket}".encode(), None)
            self.store.pop(marks_key(campaign, bucket), None)
            self.dirty.discard((campaign, bucket))
        if not left:
            self.campaigns.pop(campaign, None)

    def checkpoint(self, force: bool = False) -> None:
        """Write changed buckets (live: only from an event of this partition, since
        faust writes a table's changelog to the current event's partition)."""
        if not self.dirty:
            return
        now = time.monotonic()
        if not force and now - self.checkpointed < CHECKPOINT_S:
            if not self.flush_due and self.request_flush is not None:
                self.flush_due = True
                self.request_flush(self)
            return
        self.checkpointed = now
        for campaign, bucket in self.dirty:
            hitters = self.campaigns.get(campaign)
            if hitters is not None and bucket in hitters.bucket_keys():
                self.store[f"{campaign}{SEP}{bucket}".encode()] = hitters.dump_bucket(bucket)
                marks = sorted(
                    [kind, source]
                    for c, kind, source, b in self.alerted
                    if c == campaign and b == bucket
                )
                if marks:
                    self.store[marks_key(campaign, bucket)] = orjson.dumps(marks)
        self.dirty.clear()


class AreaPartition:
    """One partition's regions: per region, the counts of the cells it can see."""

    def __init__(
        self,
        store: Store,
        grid: AreaGrid,
        rule: Callable[[], LocationRule],
        lateness_ms: int,
        seed: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self.store = store
        self.grid = grid
        self.rule = rule
        self.lateness_ms = lateness_ms
        self.regions: dict[str, AreaCounts] = {}
        self.watermark: int | None = None
        self.next_sweep: int | None = None
        for key, value in seed:
            region, cell = key.decode("utf-8").split(SEP, 1)
            self.counts(region).load_cell(cell, orjson.loads(value))

    def counts(self, region: str) -> AreaCounts:
        counts = self.regions.get(region)
        if counts is None:
            rule = self.rule()
            counts = self.regions[region] = AreaCounts(
                self.grid, window_ms=rule.window_ms, bucket_ms=rule.bucket_ms
            )
        return counts

    def too_late(self, t: int, watermark: int | None) -> bool:
        """Older buckets of its window may be expired already: it would see too few."""
        return watermark is not None and t < watermark - self.lateness_ms

    def record(
        self, region: str, cell: str, t: int, fraud: bool, watermark: int | None
    ) -> AreaCounts:
        counts = self.counts(region)
        counts.add(cell, t, fraud)
        self._persist(counts, region, cell)
        self._advance(watermark)
        return counts

    def contribute(
        self, region: str, cell: str, t: int, fraud: bool, watermark: int | None
    ) -> bool:
        """A click of a neighbouring region, counted here (it is judged in its own);
        False if it came too late to count."""
        if self.too_late(t, watermark):
            return False
        self.record(region, cell, t, fraud, watermark)
        return True

    def _advance(self, watermark: int | None) -> None:
        if watermark is None or (self.watermark is not None and watermark <= self.watermark):
            return
        self.watermark = watermark
        if self.next_sweep is None or watermark >= self.next_sweep:
            self.sweep()

    def sweep(self) -> None:
        """Drop buckets that left every window; runs once per bucket of event time."""
        if self.watermark is None:
            return
        rule = self.rule()
        horizon = self.watermark - rule.window_ms - self.lateness_ms
        for region, counts in list(self.regions.items()):
            for cell in counts.expire(horizon):
                self._persist(counts, region, cell)
        self.next_sweep = self.watermark + rule.bucket_ms

    def _persist(self, counts: AreaCounts, region: str, cell: str) -> None:
        key = f"{region}{SEP}{cell}".encode()
        state = counts.cell_state(cell)
        if state is None:
            self.store.pop(key, None)
        else:
            self.store[key] = orjson.dumps(state)
