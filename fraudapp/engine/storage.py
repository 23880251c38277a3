"""How much memory each RocksDB database may hold, and what it holds now.

faust opens one RocksDB database per table partition (7 tables x 4 partitions = 28
here) and gives each RocksDB's server-sized defaults: memtables of 64 MB, three of
them, and a 2 GiB block cache of its own. A memtable is written to disk only when it
is full, and every state rewrite is a new entry in it, so a worker's resident memory
climbed by about 1 KB per event for a million events of a soak before the first
flushes (up to 28 x 192 MB of memtables alone). Small memtables and caches make the
worker's RocksDB memory a fixed budget: ``databases x (write_buffer x buffers +
block_cache)``, plus the index and filter blocks of the open files (bounded by
``max_open_files``; reported as ``table_readers``). The state itself is small and
pruned as windows expire; what is hot is read from the memtables or the OS page
cache, so small caches cost little (bench/soak.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fraudapp.core.settings import MB

#: RocksDB properties reported per table, by the name the metric gives them.
MEMORY_PROPERTIES = {
    "memtables": "rocksdb.size-all-mem-tables",
    "block_cache": "rocksdb.block-cache-usage",
    "table_readers": "rocksdb.estimate-table-readers-mem",
}
SST_PROPERTY = "rocksdb.total-sst-files-size"


def databases_of(table: Any) -> Iterator[tuple[int, Any]]:
    """(partition, open database) of a faust table whose store is RocksDB; nothing for
    other stores. faust keeps its databases in ``Store._dbs`` and has no public
    reader for them."""
    dbs = getattr(getattr(table, "data", None), "_dbs", None)
    if isinstance(dbs, dict):
        yield from list(dbs.items())


def memory_of(tables: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, str, int]]:
    """(table, kind, bytes) summed over each table's open partitions, for the kinds of
    :data:`MEMORY_PROPERTIES` and ``sst`` (bytes on disk in sorted tables); tables
    with no database open here are left out."""
    for name, table in tables:
        databases = list(databases_of(table))
        if not databases:
            continue
        totals = dict.fromkeys([*MEMORY_PROPERTIES, "sst"], 0)
        for _, db in databases:
            for kind, prop in (*MEMORY_PROPERTIES.items(), ("sst", SST_PROPERTY)):
                try:
                    totals[kind] += int(db.property_int_value(prop) or 0)
                except Exception:  # noqa: BLE001 - a database closing under a rebalance
                    continue
        for kind, value in totals.items():
            yield name, kind, value


#: RocksDB's info logs kept per database, and the size at which one is rolled: by
#: default its ``LOG`` is never rolled and grows with every flush and compaction
#: (~2.5 MB in 20 s of heavy writes), and in a soak it was most of what grew on disk
#: (+100 MB over 2 M events). Bounded: at most 2 x 1 MB per database.
KEEP_LOG_FILES = 2
MAX_LOG_FILE_BYTES = 1 * MB


def bound_info_logs() -> None:
    """Make every RocksDB database faust opens keep only a few small info logs.

    faust builds rocksdict's options itself and passes no extra ones through, so its
    option builder is wrapped (once; idempotent)."""
    from faust.stores.rocksdb import RocksDBOptions

    if getattr(RocksDBOptions.as_options, "_fraudapp", False):
        return
    build = RocksDBOptions.as_options

    def as_options(self: RocksDBOptions) -> Any:
        options = build(self)
        if self.use_rocksdict:
            options.set_keep_log_file_num(KEEP_LOG_FILES)
            options.set_max_log_file_size(MAX_LOG_FILE_BYTES)
        return options

    as_options._fraudapp = True  # type: ignore[attr-defined]
    RocksDBOptions.as_options = as_options  # type: ignore[method-assign]
