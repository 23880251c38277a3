"""The partitions this worker owns now, and handling work as if read from one of them.

Why: a click's later checks are keyed by source, campaign and area, so a click's
next stage usually lives on another partition than the one it was read from. When
this worker owns that partition too (faust gives one worker partition N of every
topic and table with the same partition count, and a lone worker owns them all),
sending the click through the stage's topic only to fetch it back costs a record
encoded, produced, fetched, handed over and decoded per hop, for nothing the stage
needs: the stage can run at once, writing the table partition it would write
anyway.

The state tables (:class:`fraudapp.engine.statetable.StateTable`) write the partition of
the record being handled, faust's *current event*; :class:`handled_on` sets that to
the stage's topic and partition for the duration of the inline run, so the state
and its changelog record land exactly where the stage's own agent would put them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from faust.streams import _current_event

from fraudapp.engine.bulkfeed import BulkEvent, BulkMessage


class OwnedPartitions:
    """The topic partitions assigned to this worker, as faust's rebalance signals say.

    Read between two records only: faust stops handing records over before a
    rebalance revokes anything and waits for the batch under way, so what this says
    holds for the whole of a record's handling.
    """

    def __init__(self) -> None:
        self._tps: frozenset[tuple[str, int]] = frozenset()

    def owns(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._tps

    def inline(self, topic: str, home: int, current: int) -> AbstractContextManager[None] | None:
        """How to run work for ``topic``'s partition ``home`` here while a record of
        partition ``current`` is handled: as it is (the same partition), as if on
        ``home`` (:class:`handled_on`, a partition this worker owns), or None: not
        here, it goes through the topic to the worker that owns it."""
        if home == current:
            return nullcontext()
        if self.owns(topic, home):
            return handled_on(topic, home)
        return None

    def assign(self, assigned: Iterable[tuple[str, int]]) -> None:
        """faust's assignment is the whole new set, not a change to the old one."""
        self._tps = frozenset((topic, partition) for topic, partition in assigned)

    def revoke(self, revoked: Iterable[tuple[str, int]]) -> None:
        self._tps = self._tps - {(topic, partition) for topic, partition in revoked}

    async def on_assigned(self, sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        """Receiver of ``app.on_partitions_assigned``."""
        self.assign(assigned or ())

    async def on_revoked(self, sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        """Receiver of ``app.on_partitions_revoked``."""
        self.revoke(revoked or ())


class handled_on:  # noqa: N801 - used as a context manager, like contextlib's
    """Within the block, tables see a record of ``topic`` on ``partition`` handled:
    their reads and writes go to that partition's state and changelog. The record
    being handled before is current again afterwards (blocks may nest).

    A class with cached stand-in records rather than a generator context manager:
    it runs for most of a click's stages, and the generator and two dataclasses per
    use were ~5 % of an all-checks profile."""

    __slots__ = ("event", "token")

    #: One stand-in record per topic partition, kept alive (faust's current event is
    #: a weak reference).
    _stand_ins: dict[tuple[str, int], BulkEvent] = {}

    def __init__(self, topic: str, partition: int) -> None:
        key = (topic, partition)
        event = self._stand_ins.get(key)
        if event is None:
            event = self._stand_ins[key] = BulkEvent(
                BulkMessage(topic, partition, -1, None, None, None, None)
            )
        self.event = weakref.ref(event)

    def __enter__(self) -> None:
        self.token = _current_event.set(self.event)

    def __exit__(self, *exc: object) -> None:
        _current_event.reset(self.token)
