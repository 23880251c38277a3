"""State writes of the records being handled, gathered into one RocksDB write per database.

Why: every ``put`` to a RocksDB database is its own write to the write-ahead log, a
``write()`` system call. In the click rule's profile (py-spy ``--native``, one worker
on a backlog) the state table's ``put`` took ~12 us of the ~90 us a click costs, 60 %
of it in that system call, where the same puts as a ``WriteBatch`` of 100 take
~0.7 us each. So while the bulk feed hands a partition's records to the handlers
(:mod:`fraudapp.engine.bulkfeed`), state writes and deletes go into a ``WriteBatch`` per
database, and reads of the keys written meanwhile are answered from the same
pending writes; the batch is written at each of the feed's yields to the event loop
(at most :data:`fraudapp.engine.bulkfeed.YIELD_EVERY` records) and before the records'
offsets are acked.

What it keeps:

- **Order with the changelog.** A state write is pending before its changelog
  record is queued in the outbox, and the outbox writes the pending batches before
  it hands any record to Kafka (``Outbox.before_send``). So a changelog record, and
  the persisted changelog offset that its delivery writes to RocksDB, never reach
  Kafka or RocksDB ahead of the state they describe: after a crash, the database
  holds at least what its persisted offset says, and recovery reads on from there.
- **At-least-once.** An offset is acked after the batch holding its record's writes
  is written; a crash before that loses unacked work only, which is read again.
- **Rebalances.** faust waits for the feed's batch under way before it revokes
  partitions (and closes their databases); the feed writes the pending batches
  before it lets go of that batch.
- **Views.** HTTP views read the databases outside any record and see writes once
  they are written: at most one yield (100 records) later.

Outside the bulk feed (``FRAUDAPP_DELIVERY=faust``, or a record handled through
faust's path) writes go straight to the database, as before.
"""

from __future__ import annotations

from typing import Any

from rocksdict import WriteBatch

#: Marks a key deleted by a pending write (a value may be any bytes, never this).
_DELETED: Any = object()


class StateWrites:
    """The pending writes of the records being handled, per RocksDB database."""

    __slots__ = ("_active", "_pending")

    def __init__(self) -> None:
        self._active = False
        #: id(database) -> (database, its write batch, key -> value or _DELETED)
        self._pending: dict[int, tuple[Any, WriteBatch, dict[bytes, Any]]] = {}

    def begin(self) -> None:
        """Gather writes from now on (the feed starts handing records over)."""
        self._active = True

    def end(self) -> None:
        """Write what is pending and write straight through again."""
        self._active = False
        self.flush()

    def get(self, db: Any, key: bytes) -> bytes | None:
        """``key``'s value in ``db`` as the records handled so far left it."""
        pending = self._pending.get(id(db))
        if pending is not None:
            value = pending[2].get(key)
            if value is not None:
                return None if value is _DELETED else value
        return db.get(key)

    def put(self, db: Any, key: bytes, value: bytes) -> None:
        if not self._active:
            db.put(key, value)
            return
        _, batch, values = self._batch_of(db)
        batch.put(key, value)
        values[key] = value

    def delete(self, db: Any, key: bytes) -> None:
        if not self._active:
            db.delete(key)
            return
        _, batch, values = self._batch_of(db)
        batch.delete(key)
        values[key] = _DELETED

    def flush(self) -> None:
        """Write every pending batch, each to its database in one write."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for db, batch, _ in pending.values():
            db.write(batch)

    def _batch_of(self, db: Any) -> tuple[Any, WriteBatch, dict[bytes, Any]]:
        entry = self._pending.get(id(db))
        if entry is None:
            entry = self._pending[id(db)] = (db, WriteBatch(raw_mode=True), {})
        return entry
