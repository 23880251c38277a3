"""One partition of a keyed, event-time rule over any key-value store.

Every stateful rule in fraudapp has the same shell: refuse events later than the
allowed lateness, load the key's state, prune what fell behind the horizon, apply
the rule, store the state, and now and then delete keys that went quiet. The faust
agents hand it the worker's RocksDB table and the times to judge by (the stage's
watermark across partitions and workers, and the newest event time of the record's
own source partition: :mod:`fraudapp.core.watermarks`); replay and tests hand it a dict
and let it keep the time of the one stream they read in order, so both run exactly
the same code and a backtest gives the alerts the live stream would. Pure Python:
no faust, Kafka or asyncio.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from fraudapp.core.eventtime import PartitionClock, StreamTime

Store = MutableMapping[bytes, bytes]
State = dict[str, Any]
E = TypeVar("E", contravariant=True)
R = TypeVar("R")


class KeyedRule(Protocol[E, R]):
    """What a rule tells the shell; ``apply`` mutates and returns the state."""

    @property
    def lateness_ms(self) -> int: ...

    @property
    def retention_ms(self) -> int: ...

    def key(self, event: E) -> bytes: ...

    def event_time(self, event: E) -> int: ...

    def apply(self, state: State | None, event: E) -> tuple[State, R]: ...

    def prune(self, state: State, horizon: int) -> State | None: ...

    def latest_time(self, state: State) -> int: ...

    def seen(self, state: State, event: E) -> bool:
        """Whether the state holds this event already (by its id)."""
        ...


def encode_state(state: State) -> bytes:
    return orjson.dumps(state)


def decode_state(raw: bytes | None) -> State | None:
    return None if raw is None else orjson.loads(raw)


@dataclass(slots=True)
class Outcome(Generic[R]):
    """``late`` events were refused (``result`` is None); others carry the rule's result.
    ``watermark`` is the time the event was judged against (None: nothing yet)."""

    late: bool
    result: R | None
    watermark: int | None


class _Own:
    """The default of :meth:`KeyedPartition.process`'s times: the partition's own."""


OWN = _Own()


class KeyedPartition(Generic[E, R]):
    """The rule applied to one partition's events, state kept in ``store``.

    ``seed`` is the partition's recovered state (key, value pairs) after a restart
    or rebalance: it rebuilds the expiry index, so expiry carries on where the
    previous owner stopped.
    """

    def __init__(
        self, rule: KeyedRule[E, R], store: Store, seed: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        self.rule = rule
        self.store = store
        self.clock = PartitionClock(rule.retention_ms)
        self.clock.seed((key, rule.latest_time(orjson.loads(value))) for key, value in seed)
        #: The stream's own time, when the caller gives none (replay, tests).
        self.stream = StreamTime()

    def set_rule(self, rule: KeyedRule[E, R]) -> None:
        """Apply a new version of the rule from the next event on. State is kept as it
        is: a shorter window reads less of it, a longer one sees only the history the
        old version kept (its window + lateness) until it has filled."""
        self.rule = rule
        self.clock.retention_ms = rule.retention_ms

    @property
    def watermark(self) -> int | None:
        return self.clock.watermark

    def process(
        self,
        event: E,
        watermark: int | None | _Own = OWN,
        bound: int | None | _Own = OWN,
    ) -> Outcome[R]:
        """Apply the rule to one event.

        ``watermark`` is the stage's watermark: state older than it minus the rule's
        retention expires, and an event more than the lateness behind it is refused
        (its window may be gone). ``bound`` is the newest event time of the event's
        own source partition before it: an event more than the lateness behind that
        is late by its own stream, whatever the stage has seen. None: not known yet.
        By default both are the partition's own stream time, as for one stream read
        in order (replay, tests).
        """
        rule, clock = self.rule, self.clock
        timestamp = rule.event_time(event)
        if isinstance(watermark, _Own) or isinstance(bound, _Own):
            before = self.stream.observe(timestamp)
            bound = before if isinstance(bound, _Own) else bound
            watermark = self.stream.seen if isinstance(watermark, _Own) else watermark
        clock.advance(watermark)
        reference = clock.watermark
        if bound is not None and (reference is None or bound > reference):
            reference = bound
        if reference is not None and timestamp < reference - rule.lateness_ms:
            # A record read again after a crash finds its source's time where the
            # stream had got to, not where it was when the record was first taken:
            # while its key's state still holds it, it is a repeat (apply changes
            # nothing then), so it can re-send what it found instead of being refused.
            state = decode_state(self.store.get(rule.key(event)))
            if state is not None and rule.seen(state, event):
                _, result = rule.apply(state, event)
                return Outcome(late=False, result=result, watermark=reference)
            return Outcome(late=True, result=None, watermark=reference)
        key = rule.key(event)
        state = decode_state(self.store.get(key))
        if state is not None and clock.horizon is not None:
            state = rule.prune(state, clock.horizon)
        state, result = rule.apply(state, event)
        self.store[key] = encode_state(state)
        clock.touch(key, rule.latest_time(state))
        for expired in clock.due():
            self._expire(expired)
        return Outcome(late=False, result=result, watermark=reference)

    def _expire(self, key: bytes) -> None:
        state = decode_state(self.store.get(key))
        horizon = self.clock.horizon
        remaining = None if state is None or horizon is None else self.rule.prune(state, horizon)
        if remaining is None:
            self.store.pop(key, None)
            self.clock.forget(key)
        else:
            self.store[key] = encode_state(remaining)
            self.clock.touch(key, self.rule.latest_time(remaining))
