"""Watermarks across partitions, workers and crashes: how far each stage may trust event time.

Why: a stage of fraudapp fed by several upstream partitions (the re-key topics, the
source, campaign and area stages, the alert index) used to judge lateness and expiry
by the newest event time it had seen itself. While a worker catches up, each upstream
partition arrives one whole fetch at a time, and a fetch can span an hour of event
time, so that merge ran far ahead of the slower partitions: their clicks came in
"late", were dead-lettered or skipped, and state they needed was already gone. No
lateness setting can cover a backlog of unknown length. This module is the fix, as
stream processors define it (Flink's watermarks, with its idleness rule and its
watermark alignment; Kafka Streams keeps a partition's stream time in its commits):

**Sources.** Each input partition (a partition of ``clicks`` or ``atm-txns``) keeps
the newest event time read on it (``seen``: its records are judged late against
that, as if the partition were the whole stream) and the newest event time among
its *committed* records (``safe``). Downstream state follows ``safe``, never
``seen``: a record not yet committed can be read again after a crash, and the state
that recognises it must still be there. ``safe`` travels in the commit's metadata,
so a restarted worker, or the next owner of the partition, starts from it.

**Levels.** A record crosses stages in a fixed order, so each event-time *domain*
(clicks; ATM transactions) is a chain of levels: level 0 is its sources, and level
``i`` is the input watermark of the stage that reads ``topics[i]``:
``level[i] = min(level[i - 1] of this worker, level[i - 1] of every other worker
that may send on topics[i])``. What a stage does by its level: it refuses events
more than its lateness behind it and expires state older than it minus retention.
Every record a stage handles is at most ``lateness`` behind the level below it, so
no stage refuses what its upstream accepted. A level depends only on the levels
below it, here and in other workers, so nothing waits on itself (merging all stages
into one watermark per worker would: two workers would each wait for the other).

**Channels.** Work keyed to a partition this worker owns runs inline, so its own
lower levels count as they are. What another worker sends arrives through a topic,
and so does its watermark: each worker writes a small *marker* record into every
partition of the domains' internal topics that it does not own, carrying its
levels; since records and markers of one producer keep their order in a partition,
a marker is *in band*: every record the sender put before it is bounded by its
values. The receiving worker keeps, per (topic, partition, sender slot), the last
values read: a *channel*. An unknown channel (no marker read yet since a start or a
rebalance) freezes the levels above it: they neither move nor fall back, so nothing
is judged on a guess. After this worker gains partitions it writes a marker into
every internal partition it owns; reading its own marker back means every record an
earlier owner of those slots had put there has been read, and the channels of those
slots retire: from then on they are inline.

**Idleness.** A source partition with nothing left to read that gets no record for
``idle_ms`` stops holding its level back (Flink's rule); a sender whose levels are
all idle says so, and its channels stop counting too. A partition that wakes up with
events older than the others' level may find them late: that is the price of
idleness, in every stream processor. A paused partition, or one with a backlog,
is never idle.

**Alignment.** A source partition more than ``max_drift_ms`` of event time ahead of
its domain's slowest source partition (committed, on any worker) is paused until that
one catches up, so the state a lagging partition makes every stage hold stays bounded
(Flink's watermark alignment).

Pure Python: no faust, Kafka or asyncio. :mod:`fraudapp.live.livewatermarks` wires it to
the worker.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

#: A level that constrains nothing: every input under it is idle.
IDLE = "idle"
#: The value of a level: event time (ms), None while unknown, or IDLE.
Value = int | str | None

#: An alignment floor no partition may run ahead of: one of this worker's partitions
#: has records waiting and has not read any yet, so its event time is not known.
HOLD = -(2**62)

#: Key and header of a marker record in an internal topic.
MARKER_KEY = b"\x00watermark"
MARKER_HEADER = "fraudapp-watermark"


@dataclass(frozen=True, slots=True)
class Domain:
    """One event-time domain: its source topic and, per level above 0, the topic whose
    channels feed it. Level names are the stages that use them (for logs and metrics)."""

    name: str
    source: str
    levels: tuple[tuple[str, str], ...]  # (level name, topic), level 1 first
    #: Event time a source partition may read past its last commit before the worker
    #: commits (0: by records only), and how far it may run ahead of the domain's
    #: floor before alignment holds it (0: off). Per domain, as the state they bound
    #: is kept per domain: 40 s for click bursts, an hour for the ATM rule.
    commit_span_ms: int = 0
    max_drift_ms: int = 0

    @property
    def names(self) -> tuple[str, ...]:
        """Level 0 is ``read``: the source partitions themselves."""
        return ("read", *(name for name, _ in self.levels))

    def index(self, level: str) -> int:
        return self.names.index(level)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(topic for _, topic in self.levels))


class SourceClock:
    """One input partition's event time: ``seen`` (newest read) and ``safe`` (newest
    committed), with where ``seen`` rose since the last commit, so a commit of any
    offset knows the newest event time below it."""

    __slots__ = ("seen", "safe", "_marks", "first", "last_record", "committed_at")

    def __init__(self, now: float = 0.0) -> None:
        self.seen: int | None = None
        self.safe: int | None = None
        self._marks: list[tuple[int, int]] = []  # (offset, seen after it), offsets ascending
        #: The first event time read, the span's base until a commit makes ``safe``.
        self.first: int | None = None
        #: When a record was last read (monotonic s): idleness.
        self.last_record = now
        #: The highest offset committed as far as this clock knows (``committed``).
        self.committed_at: int | None = None

    def observe(self, timestamp: int, offset: int) -> int | None:
        """A record at ``offset`` with event time ``timestamp`` was read; returns the
        newest event time among the partition's records before it: what the record
        is judged late against, the same however often the record is read."""
        marks = self._marks
        if marks and offset <= marks[-1][0]:
            # Read again after a seek back (a rebalance, a stopped flow, alignment):
            # what lies past this offset will be read again too, in order.
            before = self.seen_below(offset)
            while marks and marks[-1][0] >= offset:
                marks.pop()
            self.seen = before
        else:
            before = self.seen
        if before is None or timestamp > before:
            self.seen = timestamp
            marks.append((offset, timestamp))
            if self.first is None:
                self.first = timestamp
        return before

    def seen_below(self, next_offset: int) -> int | None:
        """The newest event time among records before ``next_offset`` (None: unknown).
        Below the committed point the marks were let go: unknown there, not ``safe``
        (the newest of all), or records read again from an older commit than this
        clock saw (the group's offsets went back) would all be judged late."""
        marks = self._marks
        at = bisect_right(marks, (next_offset - 1, float("inf"))) - 1
        if at >= 0:
            return marks[at][1]
        if self.committed_at is not None and next_offset < self.committed_at:
            return None
        return self.safe

    def committed(self, next_offset: int) -> None:
        """Offsets before ``next_offset`` are committed: ``safe`` moves with them."""
        value = self.seen_below(next_offset)
        if value is not None and (self.safe is None or value > self.safe):
            self.safe = value
        if self.committed_at is None or next_offset > self.committed_at:
            self.committed_at = next_offset
        marks = self._marks
        at = bisect_right(marks, (next_offset - 1, float("inf"))) - 1
        if at > 0:
            del marks[:at]

    def restore(self, watermark: int) -> None:
        """The watermark a commit left (its metadata): where this partition stood."""
        if self.seen is None or watermark > self.seen:
            self.seen = watermark
        if self.safe is None or watermark > self.safe:
            self.safe = watermark

    def span(self) -> int:
        """Event time read past the last commit (ms): what a crash would make the
        worker read again, and what the stages' state is held back by."""
        base = self.safe if self.safe is not None else self.first
        if self.seen is None or base is None:
            return 0
        return self.seen - base

    def idle(self, now: float, caught_up: bool, idle_s: float) -> bool:
        """Nothing left to read and no record for ``idle_s`` (wall clock)."""
        return caught_up and now - self.last_record >= idle_s


def _min(values: Iterable[Value]) -> Value:
    """The minimum of known values; None if any is unknown; IDLE if all are idle."""
    low: Value = IDLE
    for value in values:
        if value is None:
            return None
        if value == IDLE:
            continue
        if low == IDLE or value < low:  # type: ignore[operator]
            low = value
    return low


@dataclass(slots=True)
class Marker:
    """What a marker record says: who wrote it (a worker instance and its assignment
    generation), the slots it owned then, and its levels per domain."""

    sender: str
    generation: int
    slots: tuple[int, ...]
    levels: dict[str, list[Value]]

    def encode(self) -> bytes:
        return orjson.dumps(
            {"from": self.sender, "gen": self.generation, "slots": self.slots, "v": self.levels}
        )

    @classmethod
    def decode(cls, raw: bytes) -> Marker:
        data = orjson.loads(raw)
        return cls(
            sender=str(data["from"]),
            generation=int(data["gen"]),
            slots=tuple(int(k) for k in data["slots"]),
            levels={str(name): list(values) for name, values in data["v"].items()},
        )


@dataclass(slots=True)
class _DomainState:
    domain: Domain
    #: Effective levels: monotone, frozen while unknown; None until first known.
    effective: list[int | None]
    #: Whether each level is idle now (every input under it is).
    idle: list[bool]


@dataclass
class Watermarks:
    """This worker's event time: its source partitions, the channels from other
    workers, and each domain's levels (module docstring).

    ``partitions`` is the partition count of every topic involved (faust gives one
    worker partition N of each of them: its *slot* N). ``sender`` names this worker
    instance in its markers.
    """

    domains: Sequence[Domain]
    partitions: int
    sender: str
    sources: dict[tuple[str, int], SourceClock] = field(default_factory=dict)
    generation: int = 0
    _assigned: frozenset[tuple[str, int]] = frozenset()
    _idle: set[tuple[str, int]] = field(default_factory=set)
    #: (topic, partition, slot) -> the sender's levels per domain, as last read.
    _channels: dict[tuple[str, int, int], dict[str, list[Value]]] = field(default_factory=dict)
    _retired: set[tuple[str, int, int]] = field(default_factory=set)
    _state: dict[str, _DomainState] = field(default_factory=dict)
    _floors: dict[str, int | None] = field(default_factory=dict)
    #: Called when what this worker tells others (:meth:`exported`) changed.
    on_change: Callable[[], None] | None = None
    #: Source partitions with nothing left to read, as last looked (see :meth:`align_floor`).
    caught_up: set[tuple[str, int]] = field(default_factory=set)
    _owned_by_topic: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for domain in self.domains:
            size = len(domain.names)
            self._state[domain.name] = _DomainState(domain, [None] * size, [False] * size)
        self._by_source = {domain.source: domain for domain in self.domains}

    # -- assignment ------------------------------------------------------------------

    def assign(self, assigned: Iterable[tuple[str, int]], now: float) -> None:
        """faust's new assignment (the whole set). Sources no longer owned are dropped;
        new ones start unknown until :meth:`restore` or a commit; every channel must
        be confirmed again (a marker of this generation read back retires own slots)."""
        self._assigned = frozenset(assigned)
        self._owned_by_topic = {}
        for topic, partition in sorted(self._assigned):
            self._owned_by_topic.setdefault(topic, []).append(partition)
        self.generation += 1
        self.sources = {
            tp: self.sources.get(tp) or SourceClock(now)
            for tp in self._assigned
            if tp[0] in self._by_source
        }
        self._idle &= set(self.sources)
        self._retired.clear()
        self._channels = {
            key: value for key, value in self._channels.items() if key[:2] in self._assigned
        }
        self.recompute()

    def source_partitions(self) -> list[tuple[str, int]]:
        return sorted(self.sources)

    def slots(self) -> tuple[int, ...]:
        """The slots this worker owns: partitions of the domains' source topics."""
        return tuple(sorted({partition for _, partition in self.sources}))

    def owns(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._assigned

    def restore(self, watermarks: Mapping[tuple[str, int], int]) -> None:
        """Source watermarks read back from the committed offsets' metadata."""
        for tp, value in watermarks.items():
            clock = self.sources.get(tp)
            if clock is not None:
                clock.restore(value)
        self.recompute()

    # -- sources ---------------------------------------------------------------------

    def source(self, topic: str, partition: int) -> SourceClock | None:
        return self.sources.get((topic, partition))

    def commit_metadata(self, topic: str, partition: int, next_offset: int) -> str:
        """What a commit of ``next_offset`` stores beside it: the partition's
        watermark at that point, for whoever reads the partition next."""
        clock = self.sources.get((topic, partition))
        if clock is None:
            return ""
        value = clock.seen_below(next_offset)
        return "" if value is None else orjson.dumps({"wm": value}).decode()

    def committed(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Offsets were committed; True if a level may have moved."""
        moved = False
        for tp, offset in offsets.items():
            clock = self.sources.get(tp)
            if clock is not None:
                before = clock.safe
                clock.committed(offset)
                moved = moved or clock.safe != before
        if moved:
            self.recompute()
        return moved

    def set_idle(self, idle: Iterable[tuple[str, int]]) -> bool:
        """The source partitions idle now; True if that changed anything."""
        idle = set(idle) & set(self.sources)
        if idle == self._idle:
            return False
        self._idle = idle
        self.recompute()
        return True

    # -- channels --------------------------------------------------------------------

    def receive(self, topic: str, partition: int, marker: Marker) -> None:
        """A marker read from ``topic``'s ``partition``."""
        if marker.sender == self.sender:
            if marker.generation == self.generation:
                # Our own, of this assignment: everything before it has been read.
                for slot in marker.slots:
                    self._retired.add((topic, partition, slot))
        else:
            for slot in marker.slots:
                self._channels[(topic, partition, slot)] = marker.levels
        self.recompute()

    def drained(self, topic: str, partition: int) -> None:
        """Nothing was left unread on ``topic``'s ``partition`` when this assignment
        began: no record of a previous owner of this worker's slots can come there
        (they stopped sending before the assignment), so those channels retire now,
        as when this worker's own marker is read back."""
        for slot in self.slots():
            self._retired.add((topic, partition, slot))
        self.recompute()

    def marker(self) -> Marker:
        """This worker's marker now."""
        return Marker(
            sender=self.sender,
            generation=self.generation,
            slots=self.slots(),
            levels={name: self.exported(name) for name in self._state},
        )

    def exported(self, domain: str) -> list[Value]:
        """The levels other workers may count on: each level's effective value, or
        IDLE when everything under it is idle (None while never known)."""
        state = self._state[domain]
        return [
            IDLE if idle else value for value, idle in zip(state.effective, state.idle, strict=True)
        ]

    # -- levels ----------------------------------------------------------------------

    def recompute(self) -> None:
        before = [self.exported(name) for name in self._state] if self.on_change else None
        for name, state in self._state.items():
            self._compute(state)
            known = [
                value
                for value, idle in zip(state.effective, state.idle, strict=True)
                if value is not None and not idle
            ]
            self._floors[name] = min(known) if known else None
        changed = before is not None and before != [self.exported(n) for n in self._state]
        if changed and self.on_change is not None:
            self.on_change()

    def _compute(self, state: _DomainState) -> None:
        domain = state.domain
        raw: list[Value] = [
            _min(
                IDLE if tp in self._idle else clock.safe
                for tp, clock in self.sources.items()
                if tp[0] == domain.source
            )
        ]
        slots = range(self.partitions)
        for index, (_, topic) in enumerate(domain.levels, 1):
            values: list[Value] = [raw[index - 1]]
            for j in self._owned_by_topic.get(topic, ()):
                for slot in slots:
                    if (topic, j, slot) in self._retired:
                        continue
                    levels = self._channels.get((topic, j, slot))
                    if levels is None:
                        values.append(None)
                        continue
                    sent = levels.get(domain.name)
                    values.append(None if sent is None else sent[index - 1])
            raw.append(_min(values))
        for index, value in enumerate(raw):
            state.idle[index] = value == IDLE
            if isinstance(value, int):
                current = state.effective[index]
                if current is None or value > current:
                    state.effective[index] = value

    def level(self, domain: str, level: int) -> int | None:
        """The watermark a stage at ``level`` of ``domain`` judges by (None: unknown)."""
        return self._state[domain].effective[level]

    def floor(self, domain: str) -> int | None:
        """The lowest known level of ``domain``: how far behind its state is held."""
        return self._floors.get(domain)

    def align_floor(self, domain: str) -> int | None:
        """What alignment keeps ``domain``'s source partitions within: the lowest
        committed watermark of its sources, on this worker (level 0) and on all (level
        1, which reads the others' level 0 from their markers); and each of this
        worker's partitions that still has records to read and is not committed yet:
        its newest read, or, before it has read anything, :data:`HOLD` (nothing may
        run ahead of what is not known). None: no bound.

        Not the deeper levels: they trail the sources by a marker's round trip per
        level, which in a backlog is many minutes of event time, and pausing on that
        would pace the worker by the markers instead of bounding skew between sources.
        What they hold meanwhile is bounded in records (that many seconds of reading)."""
        state = self._state[domain]
        known = [
            value
            for value, idle in zip(state.effective[:2], state.idle[:2], strict=True)
            if value is not None and not idle
        ]
        floor = min(known) if known else None
        source = state.domain.source
        for tp, clock in self.sources.items():
            if tp[0] != source or clock.safe is not None:
                continue
            if tp in self._idle or tp in self.caught_up:
                continue
            value = HOLD if clock.seen is None else clock.seen
            if floor is None or value < floor:
                floor = value
        return floor

    def domain(self, name: str) -> Domain:
        return self._state[name].domain

    def domain_of(self, topic: str) -> Domain | None:
        """The domain whose source topic ``topic`` is."""
        return self._by_source.get(topic)

    def internal_topics(self) -> list[str]:
        """Every topic that carries channels, of any domain."""
        return list(dict.fromkeys(t for d in self.domains for t in d.topics))

    def describe(self) -> dict[str, Any]:
        """For ``/metrics`` and logs: each domain's levels as other workers see them."""
        return {
            name: dict(zip(state.domain.names, self.exported(name), strict=True))
            for name, state in self._state.items()
        }

    def unknown(self) -> dict[str, list[str]]:
        """Per domain, the channels that hold a level unknown now (``topic[partition]
        from slot k``), and own sources not committed yet: what a frozen level waits on."""
        out: dict[str, list[str]] = {}
        for name, state in self._state.items():
            missing = [
                f"{topic}[{partition}] not committed yet"
                for (topic, partition), clock in sorted(self.sources.items())
                if topic == state.domain.source and clock.safe is None
            ]
            for index, (_, topic) in enumerate(state.domain.levels, 1):
                for j in self._owned_by_topic.get(topic, ()):
                    for slot in range(self.partitions):
                        key = (topic, j, slot)
                        if key in self._retired:
                            continue
                        levels = self._channels.get(key)
                        sent = None if levels is None else levels.get(name)
                        if sent is None or sent[index - 1] is None:
                            missing.append(f"{topic}[{j}] from slot {slot}")
            out[name] = sorted(set(missing))
        return out


def ahead(clock: SourceClock, floor: int | None, max_drift_ms: int) -> bool:
    """Whether a source partition runs too far ahead of its domain's lowest level
    (alignment pauses it; unknown levels pause nothing)."""
    return clock.seen is not None and floor is not None and clock.seen - floor >= max_drift_ms
