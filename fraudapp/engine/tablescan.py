"""Reading one partition of a RocksDB-backed faust table directly.

After a rebalance, a worker rebuilds its in-memory expiry index from the state it
recovered. faust only iterates all active partitions at once, so this reaches into
its RocksDB store for one partition's database (internal API, kept in this one
place so an upgrade has one spot to check).
"""

from __future__ import annotations

from collections.abc import Iterator

import faust


def scan_partition(table: faust.Table, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Raw (key, value) pairs of ``partition`` in ``table``'s local store."""
    store = table.data
    if not hasattr(store, "_db_for_partition"):
        raise TypeError(f"table {table.name} is not RocksDB-backed (store {store!r})")
    yield from store._visible_items(store._db_for_partition(partition))
