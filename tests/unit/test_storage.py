"""RocksDB's memory budget: what the settings give faust, and what it adds up to."""

from __future__ import annotations

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from fraudapp.core.settings import MB, RocksDBBudget, Settings
from fraudapp.engine.storage import KEEP_LOG_FILES, bound_info_logs, memory_of


def test_defaults_replace_rocksdbs_server_sized_ones() -> None:
    options = Settings().rocksdb.table_options()
    assert options == {
        "write_buffer_size": 4 * MB,
        "max_write_buffer_number": 2,
        "block_cache_size": 8 * MB,
        "max_open_files": 256,
    }
    # faust takes them as they are (an unknown name would end in extra_options).
    faust_options = RocksDBOptions(**options)
    assert faust_options.write_buffer_size == 4 * MB and not faust_options.extra_options
    assert RocksDBBudget().bound_mb(28) == 28 * 16


def test_the_budget_comes_from_the_environment() -> None:
    budget = Settings.from_env(
        {
            "ROCKSDB_WRITE_BUFFER_MB": "16",
            "ROCKSDB_WRITE_BUFFERS": "3",
            "ROCKSDB_BLOCK_CACHE_MB": "32",
        }
    ).rocksdb
    assert (budget.write_buffer_mb, budget.write_buffers, budget.block_cache_mb) == (16, 3, 32)
    assert budget.per_database_mb() == 80


class _Table:
    def __init__(self, dbs: dict[int, object]) -> None:
        self.data = type("Store", (), {"_dbs": dbs})()


def test_memory_is_read_from_each_open_partition(tmp_path) -> None:
    options = RocksDBOptions(**RocksDBBudget().table_options())
    dbs = {p: options.open(tmp_path / f"t-{p}.db") for p in range(2)}
    try:
        for p, db in dbs.items():
            for i in range(1000):
                db[f"k{p}-{i}".encode()] = b"v" * 100
        figures = {(t, k): v for t, k, v in memory_of([("t", _Table(dbs)), ("memory", object())])}
        assert figures[("t", "memtables")] > 2 * 1000 * 100
        assert ("memory", "memtables") not in figures
    finally:
        for db in dbs.values():
            db.close()
    assert isinstance(dbs[0], rocksdict.Rdict)


def test_each_database_keeps_only_a_few_info_logs(tmp_path) -> None:
    """Every open rolls RocksDB's LOG to LOG.old.*; without a bound they pile up."""
    bound_info_logs()
    options = RocksDBOptions(**RocksDBBudget().table_options())
    path = tmp_path / "t.db"
    for i in range(8):
        db = options.open(path)
        db[f"k{i}".encode()] = b"v"
        db.close()
    old = [p for p in path.iterdir() if p.name.startswith("LOG.old")]
    assert len(old) <= KEEP_LOG_FILES
