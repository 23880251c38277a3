"""Event-time bookkeeping for one partition: its watermark and which keys may expire.

faust's windowed tables judge expiry by the wall clock, which silently drops windows
of replayed or delayed data (docs/guarantees.md, "Event time and watermarks"). fraudapp keeps
plain tables and expires keys itself, by the stage's watermark, so a stream stamped
in 2018 expires exactly like one stamped now. Where that watermark comes from is the
caller's business: live, a stage's level across partitions and workers
(:mod:`fraudapp.core.watermarks`); in a replay or a test, the newest event time of one
stream read in order (:class:`StreamTime`).

Pure Python: the faust adapter feeds it events and deletes the keys it names.
"""

from __future__ import annotations

from collections.abc import Iterable


class StreamTime:
    """The event time of one stream read in order, as one source partition: its
    newest event time is both what a record is judged late against and, since
    nothing else can hold it back, the watermark."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: int | None = None

    def observe(self, timestamp: int) -> int | None:
        """Returns the newest event time before this one."""
        before = self.seen
        if before is None or timestamp > before:
            self.seen = timestamp
        return before


class PartitionClock:
    """Watermark and expiry index of one partition.

    ``retention_ms`` is how long after its newest event a key must still be kept;
    sweeps run each time the watermark has moved ``sweep_every_ms`` past the last
    one, so their cost (one pass over the live keys) is spread thin. The watermark
    only moves forward: a lower one given later changes nothing.
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

    def advance(self, watermark: int | None) -> None:
        """The stage's watermark now (None: not known yet, nothing moves)."""
        if watermark is None:
            return
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
        if self._next_sweep is None:
            self._next_sweep = watermark + self.sweep_every_ms

    def seed(self, entries: Iterable[tuple[bytes, int]]) -> None:
        """Rebuild the expiry index from recovered state (key, newest event time)
        after a restart or rebalance. Not the watermark: state may hold records
        handled after the last commit, which are read again, and a watermark taken
        from them would find those records late."""
        for key, latest in entries:
            self.touch(key, latest)

    def touch(self, key: bytes, latest: int) -> None:
        """Record ``key``'s newest event time after it was updated."""
        self._latest[key] = latest

    def forget(self, key: bytes) -> None:
        """The key's state was deleted."""
        self._latest.pop(key, None)

    def sweep_due(self) -> bool:
        """Whether :meth:`due` would sweep now."""
        return (
            self.watermark is not None
            and self._next_sweep is not None
            and self.watermark >= self._next_sweep
        )

    def due(self) -> list[bytes]:
        """Keys whose newest event is behind the horizon, when a sweep is due; else []."""
        if self.watermark is None or self._next_sweep is None or self.watermark < self._next_sweep:
            return []
        self._next_sweep = self.watermark + self.sweep_every_ms
        horizon = self.watermark - self.retention_ms
        return [key for key, latest in self._latest.items() if latest < horizon]
