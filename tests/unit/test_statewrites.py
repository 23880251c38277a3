"""The gathered state writes: what a handler reads back, and when RocksDB has them."""

from __future__ import annotations

from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from fraudapp.engine.statewrites import StateWrites


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    database = Rdict(str(tmp_path / "db"), options)
    yield database
    database.close()


def test_writes_go_straight_through_outside_the_feed(db: Rdict) -> None:
    writes = StateWrites()
    writes.put(db, b"a", b"1")
    assert db.get(b"a") == b"1"
    writes.delete(db, b"a")
    assert db.get(b"a") is None


def test_gathered_writes_are_read_back_and_written_in_one_go(db: Rdict) -> None:
    db.put(b"kept", b"0")
    db.put(b"gone", b"0")
    writes = StateWrites()
    writes.begin()
    writes.put(db, b"new", b"1")
    writes.put(db, b"kept", b"2")
    writes.delete(db, b"gone")
    writes.put(db, b"new", b"3")  # the later write wins, as in RocksDB
    # The handler reads its own writes; the database does not have them yet.
    assert [writes.get(db, k) for k in (b"new", b"kept", b"gone", b"other")] == [
        b"3",
        b"2",
        None,
        None,
    ]
    assert db.get(b"new") is None and db.get(b"kept") == b"0" and db.get(b"gone") == b"0"
    writes.flush()  # a yield of the feed, or the outbox about to send
    assert db.get(b"new") == b"3" and db.get(b"kept") == b"2" and db.get(b"gone") is None
    writes.put(db, b"after", b"4")
    assert db.get(b"after") is None
    writes.end()  # the feed's batch is over: written, and writes go straight on
    assert db.get(b"after") == b"4"
    writes.put(db, b"direct", b"5")
    assert db.get(b"direct") == b"5"


def test_each_database_gets_its_own_writes(tmp_path: Path, db: Rdict) -> None:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    other = Rdict(str(tmp_path / "other"), options)
    try:
        writes = StateWrites()
        writes.begin()
        writes.put(db, b"k", b"db")
        writes.put(other, b"k", b"other")
        assert writes.get(db, b"k") == b"db" and writes.get(other, b"k") == b"other"
        writes.end()
        assert db.get(b"k") == b"db" and other.get(b"k") == b"other"
    finally:
        other.close()
