"""Changelog records applied in bulk: one RocksDB WriteBatch per fetched batch and
partition, the partition's persisted offset written in the same batch.

Why: faust applies each changelog record through a per-record Python path (the
consumer's callback, the conductor, the tables' changelog queue, an event object,
recovery's loop in ``faust/tables/recovery.py``, its buffers): about 4 400 records/s
here, so a worker joining, or taking over from one that died, needed six hours for a
100-million-record state. The bulk feed (:mod:`fraudapp.engine.bulkfeed`) hands
a fetched batch of a state table's changelog partition here instead: its records are
written in one WriteBatch (a tombstone deletes, the last value of a key wins, as the
batch keeps the records' order), with faust's persisted-offset key in the same batch,
so a crash leaves the database and its offset together, and recovery's offset for
the partition moves to the last one. What is applied is what faust's loop would
apply: records of partitions recovery restores (active, or standby), past the offset
it has seen. The batch's last record then still takes faust's own path, as a
wake-up: faust finds it seen and applies nothing, but checks, as after every record,
whether recovery is done (else it would notice only after 5 s without records).
faust never buffers a record of these partitions, so none of its older records can
be written after a newer one of ours.

Only :class:`~fraudapp.engine.statetable.StateTable` changelogs: their records are
raw bytes stored as they are, and nothing runs per record; the global tables (rules,
customers) keep faust's path, where their callbacks run.

faust internals used (``tests/unit/test_engine_contract.py``): the recovery
service's ``active_tps``, ``standby_tps``, ``active_offsets``, ``standby_offsets``
and ``tp_to_table``; the RocksDB store's ``_db_for_partition`` and ``offset_key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rocksdict import WriteBatch

from fraudapp.engine.statetable import StateTable


def applicable(recovery: Any, tp: Any) -> tuple[StateTable, Any] | None:
    """The state table of changelog partition ``tp`` and recovery's offsets counter
    for it, if recovery is restoring it (active or standby); else None."""
    table = recovery.tp_to_table.get(tp)
    if not isinstance(table, StateTable):
        return None
    if tp in recovery.active_tps:
        return table, recovery.active_offsets
    if tp in recovery.standby_tps:
        return table, recovery.standby_offsets
    return None


def write_batch(db: Any, offset_key: bytes, records: Sequence[Any], seen: int | None) -> int | None:
    """Write ``records`` (in offset order) past ``seen`` to ``db`` in one WriteBatch
    with the last one's offset as the persisted offset; returns that offset (None if
    none was past ``seen``)."""
    batch = WriteBatch(raw_mode=True)
    last = None
    put, delete = batch.put, batch.delete
    for record in records:
        offset = record.offset
        if seen is not None and offset <= seen:
            continue
        value = record.value
        if value is None:
            delete(record.key)
        else:
            put(record.key, value)
        last = offset
    if last is None:
        return None
    put(offset_key, str(last).encode())
    db.write(batch)
    return last


def restore(recovery: Any, tp: Any, records: Sequence[Any]) -> Sequence[Any]:
    """Apply a changelog partition's fetched ``records`` in bulk if recovery is
    restoring it, and return what is left for faust's own path: the last record (a
    wake-up, seen already), or all of them where this does not apply."""
    found = applicable(recovery, tp) if records else None
    if found is None:
        return records
    table, offsets = found
    store = table.data
    last = write_batch(
        store._db_for_partition(tp.partition), store.offset_key, records, offsets.get(tp)
    )
    if last is not None:
        offsets[tp] = last
    return records[-1:]
