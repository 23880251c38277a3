"""Which partitions a worker owns, and tables' view of the record being handled while
a stage runs inline on another partition."""

from __future__ import annotations

import asyncio
import weakref

from faust.streams import _current_event, current_event
from faust.types import TP

from fraudapp.engine.bulkfeed import BulkEvent, BulkMessage
from fraudapp.engine.owned import OwnedPartitions, handled_on


def test_ownership_follows_assignments_and_revocations() -> None:
    owned = OwnedPartitions()
    assert not owned.owns("stage-source", 1)
    asyncio.run(owned.on_assigned(None, {TP("stage-source", 1), TP("clicks", 1)}))
    assert owned.owns("stage-source", 1) and owned.owns("clicks", 1)
    assert not owned.owns("stage-source", 2)
    asyncio.run(owned.on_revoked(None, {TP("stage-source", 1)}))
    assert not owned.owns("stage-source", 1) and owned.owns("clicks", 1)
    # An assignment replaces the old one: what it leaves out is no longer owned.
    asyncio.run(owned.on_assigned(None, {TP("stage-source", 3)}))
    assert owned.owns("stage-source", 3) and not owned.owns("clicks", 1)


def test_tables_see_the_stage_partition_inside_and_the_record_after() -> None:
    record = BulkEvent(BulkMessage("clicks", 0, 41, None, b"k", b"v", None))
    _current_event.set(weakref.ref(record))
    try:
        with handled_on("stage-source", 2):
            inside = current_event().message
            assert (inside.topic, inside.partition) == ("stage-source", 2)
            with handled_on("stage-area", 3):
                nested = current_event().message
                assert (nested.topic, nested.partition) == ("stage-area", 3)
            back = current_event().message
            assert (back.topic, back.partition) == ("stage-source", 2)
        assert current_event() is record
    finally:
        _current_event.set(None)


def test_the_record_is_current_again_when_the_stage_raises() -> None:
    record = BulkEvent(BulkMessage("clicks", 1, 7, None, b"k", b"v", None))
    _current_event.set(weakref.ref(record))
    try:
        try:
            with handled_on("stage-campaign", 0):
                raise ValueError("a stage failed")
        except ValueError:
            pass
        assert current_event() is record
    finally:
        _current_event.set(None)


def test_work_for_a_partition_runs_here_as_it_is_as_if_on_it_or_not_here() -> None:
    owned = OwnedPartitions()
    owned.assign({TP("stage-source", 0), TP("stage-source", 2)})
    record = BulkEvent(BulkMessage("clicks", 0, 5, None, b"k", b"v", None))
    _current_event.set(weakref.ref(record))
    try:
        same = owned.inline("stage-source", 0, current=0)
        assert same is not None
        with same:
            assert current_event() is record  # the record's own partition: as it is
        other = owned.inline("stage-source", 2, current=0)
        assert other is not None
        with other:
            message = current_event().message
            assert (message.topic, message.partition) == ("stage-source", 2)
        assert current_event() is record
        assert owned.inline("stage-source", 3, current=0) is None  # another worker's
    finally:
        _current_event.set(None)
