"""Event-time bookkeeping for one partition: its watermark and which keys may expire.

faust's windowed tables judge expiry by the wall clock, which silently drops windows
of replayed or delayed data (DESIGN.md). fraudapp keeps plain tables and expires
keys itself, by the partition's watermark (the newest event time seen on it), so a
stream stamped in 2018 expires exactly like one stamped now.

Pure Python: the faust adapter feeds it events and deletes the keys it names.
"""

from __future__ import annotations

from collections.abc import Iterable


class PartitionClock:
    """Watermark and expiry index of one partition.

    ``retention_ms`` is how long after its newest event a key must still be kept;
    sweeps run each time the watermark has moved ``sweep_every_ms`` past the last
    one, so their cost (one pass over the live keys) is spread thin.
    """

    __slots__ = ("retention_ms", "sweep_every_ms", "watermark", "_latest", "_next_sweep")

    def __init__(self, retention_ms: int, sweep_every_ms: int | None = None) -> None:
        self.retention_ms = retention_ms
        self.sweep_every_ms = max(1, sweep_every_ms or retention_ms // 2 or 1)
        self.watermark: int | None = None
        self._latest: dict[bytes, int] = {}
        self._next_sweep: int | None = None

    def __len__(self) -> int:
        return len(self._latest)

    @property
    def horizon(self) -> int | None:
        """Event time before which state may be dropped."""
        return None if self.watermark is None else self.watermark - self.retention_ms

    def observe(self, timestamp: int) -> None:
        """Advance the watermark with an accepted event's time."""
        if self.watermark is None or timestamp > self.watermark:
            self.watermark = timestamp
        if self._next_sweep is None:
            self._next_sweep = timestamp + self.sweep_every_ms

    def seed(self, entries: Iterable[tuple[bytes, int]]) -> None:
        """Rebuild from recovered state (key, newest event time) after a rebalance."""
        for key, latest in entries:
            self.touch(key, latest)
            self.observe(latest)

    def touch(self, key: bytes, latest: int) -> None:
        """Record ``key``'s newest event time after it was updated."""
        self._latest[key] = latest

    def forget(self, key: bytes) -> None:
        """The key's state was deleted."""
        self._latest.pop(key, None)

    def due(self) -> list[bytes]:
        """Keys whose newest event is behind the horizon, when a sweep is due; else []."""
        if self.watermark is None or self._next_sweep is None or self.watermark < self._next_sweep:
            return []
        self._next_sweep = self.watermark + self.sweep_every_ms
        horizon = self.watermark - self.retention_ms
        return [key for key, latest in self._latest.items() if latest < horizon]
