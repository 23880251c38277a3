"""fraudapp's state tables: faust tables that send their changelog through the outbox.

Why a subclass: faust's table sends one changelog record per write through its own
producer path, the wall ``bench/wall.py`` measures, and looks each key up twice.
Everything else stays faust's: RocksDB store, changelog topic, standbys, recovery.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event
from faust.types import TP

from fraudapp.engine.outbox import OnSent, Outbox
from fraudapp.engine.statewrites import StateWrites

_MISSING: Any = object()


class _Queued:
    """What faust's table expects back from ``send_changelog``: the record's partition."""

    __slots__ = ("message", "partition")

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


class StateTable(faust.Table):
    """fraudapp's state tables: faust tables of raw bytes whose changelog records go
    through the :class:`Outbox`, and whose reads ask RocksDB once.

    Everything else is faust's: RocksDB store, changelog topic, standby and recovery.
    The one duty of faust's per-record callback it replaces is keeping the RocksDB
    partition's persisted changelog offset (where recovery resumes reading); here it
    is set once per delivered batch, to the batch's last offset. While a record is
    handled, reads and writes go straight to its partition's RocksDB database;
    faust's table sensors (its monitor's table counters) do not see them. Under the
    bulk feed, writes are gathered per database and written in one go
    (:mod:`fraudapp.engine.statewrites` says why and what keeps them in order).
    """

    outbox: Outbox
    writes: StateWrites

    def __init__(self, *args: Any, outbox: Outbox, writes: StateWrites, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbox = outbox
        self.writes = writes
        self._persisters: dict[int, OnSent] = {}

    def send_changelog(  # type: ignore[override]
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> _Queued:
        if partition is None:  # only with use_partitioner, which state tables never set
            raise ValueError(f"{self.name}: changelog record without a partition")
        self.outbox.add(
            self.changelog_topic.get_topic_name(),
            partition,
            key,
            value,
            on_sent=self._persister(partition),
        )
        return _Queued(partition)

    def _event_db(self) -> tuple[int, Any] | None:
        """The RocksDB database of the partition of the record being handled (where
        its key's state lives: state tables are keyed and partitioned like their
        topics), or None outside a record or on another store (tests' memory://)."""
        event = current_event()
        if event is None or not isinstance(self.data, RocksDBStore):
            return None
        message = event.message
        self._verify_source_topic_partitions(message.topic)
        return message.partition, self.data._db_for_partition(message.partition)

    def get(self, key: Any, default: Any = None) -> Any:
        """One RocksDB lookup in the record's partition, straight to the database:
        faust's table asks its store twice (``key in data``, then ``data[key]``), each
        time through its codec, store and key-index layers, and rules read a key for
        every event. Outside a record (HTTP views), faust's own lookup."""
        local = self._event_db()
        if local is not None:
            value = self.writes.get(local[1], key)
            return default if value is None else value
        try:
            return self.data[key]
        except KeyError:
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        """Write the record's partition's database and queue the changelog record,
        which is all faust's table does for a raw, unwindowed table, minus its layers
        (codec, key index, sensors) that cost a rule a tenth of its time."""
        local = self._event_db()
        if local is None:
            super().__setitem__(key, value)
            return
        partition, db = local
        self.writes.put(db, key, value)
        self.send_changelog(partition, key, value)

    def __delitem__(self, key: Any) -> None:
        local = self._event_db()
        if local is None:
            super().__delitem__(key)
            return
        partition, db = local
        self.writes.delete(db, key)
        self.send_changelog(partition, key, None)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        del self[key]
        return value

    def _persister(self, partition: int) -> OnSent:
        persist = self._persisters.get(partition)
        if persist is None:
            tp = TP(self.changelog_topic.get_topic_name(), partition)

            def persist(base_offset: int, count: int) -> None:
                self.data.set_persisted_offset(tp, base_offset + count - 1)

            self._persisters[partition] = persist
        return persist
