"""Which partition a key belongs to, exactly as Kafka's Java client and aiokafka decide.

Producers do not all agree: kcat (librdkafka) hashes keys with CRC32 by default, and
some producers send no key at all. Agents check that each record sits on its key's
murmur2 partition and re-key it through an internal topic when it does not, so a
session's state always lives on one partition, owned by one worker.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a non-empty key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
