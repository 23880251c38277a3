"""Changelog records applied in bulk (fraudapp.engine.bulkrestore), on a real RocksDB
database: what faust's per-record recovery would leave, in one WriteBatch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from faust.types import TP
from rocksdict import Options, Rdict

from fraudapp.engine import bulkrestore
from fraudapp.engine.statetable import StateTable

OFFSET_KEY = b"__faust\0offset__"


def record(offset: int, key: bytes, value: bytes | None) -> SimpleNamespace:
    """What aiokafka's fetch gives for one changelog record (the fields read)."""
    return SimpleNamespace(offset=offset, key=key, value=value)


def open_db(path: Path) -> Rdict:
    return Rdict(str(path), Options(raw_mode=True))


def test_last_value_wins_tombstones_delete_and_the_offset_moves_with_the_batch(
    tmp_path: Path,
) -> None:
    db = open_db(tmp_path / "db")
    db[b"old"] = b"kept"
    db[b"gone"] = b"x"
    records = [
        record(10, b"a", b"1"),
        record(11, b"b", b"1"),
        record(12, b"a", b"2"),
        record(13, b"gone", None),
        record(14, b"b", None),
        record(15, b"b", b"3"),
    ]
    assert bulkrestore.write_batch(db, OFFSET_KEY, records, seen=None) == 15
    assert dict(db.items()) == {b"old": b"kept", b"a": b"2", b"b": b"3", OFFSET_KEY: b"15"}
    db.close()


def test_records_recovery_has_seen_are_not_applied_again(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    records = [record(5, b"a", b"old"), record(6, b"a", b"new"), record(7, b"b", b"1")]
    assert bulkrestore.write_batch(db, OFFSET_KEY, records, seen=7) is None
    assert dict(db.items()) == {}
    assert bulkrestore.write_batch(db, OFFSET_KEY, records, seen=5) == 7
    assert dict(db.items()) == {b"a": b"new", b"b": b"1", OFFSET_KEY: b"7"}
    db.close()


def _recovery(table: object, tp: TP, *, standby: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        tp_to_table={tp: table},
        active_tps=set() if standby else {tp},
        standby_tps={tp} if standby else set(),
        active_offsets=Counter(),
        standby_offsets=Counter(),
    )


class _StoredTable(StateTable):
    """A StateTable as the bulk path sees it: its class, and a store with a database
    and faust's offset key (built without faust's app, which the path never reads)."""

    def __init__(self, db: Rdict) -> None:  # no faust app: not StateTable's __init__
        self._store_here = SimpleNamespace(
            offset_key=OFFSET_KEY, _db_for_partition=lambda partition: db
        )

    @property
    def data(self) -> SimpleNamespace:  # type: ignore[override]
        return self._store_here


def test_restore_applies_a_recovering_partition_and_leaves_its_last_record_as_a_wake_up(
    tmp_path: Path,
) -> None:
    db = open_db(tmp_path / "db")
    tp = TP("app-sessions-changelog", 2)
    for standby in (False, True):
        recovery = _recovery(_StoredTable(db), tp, standby=standby)
        records = [record(i, f"k{i % 3}".encode(), str(i).encode()) for i in range(100)]
        left = bulkrestore.restore(recovery, tp, records)
        assert left == records[-1:]
        offsets = recovery.standby_offsets if standby else recovery.active_offsets
        assert offsets[tp] == 99  # faust's loop then finds the wake-up seen
        assert db[b"k0"] == b"99" and db[b"k1"] == b"97" and db[b"k2"] == b"98"
    db.close()


def test_restore_leaves_everything_to_faust_where_it_does_not_apply(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    tp = TP("app-sessions-changelog", 0)
    records = [record(0, b"a", b"1"), record(1, b"b", b"2")]
    elsewhere = _recovery(_StoredTable(db), TP("app-sessions-changelog", 1))
    assert bulkrestore.restore(elsewhere, tp, records) == records  # not being restored
    global_table = _recovery(object(), tp)  # not a StateTable: its callbacks run in faust
    assert bulkrestore.restore(global_table, tp, records) == records
    assert dict(db.items()) == {}
    db.close()
