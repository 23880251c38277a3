"""The compiled murmur2 places keys where Kafka's Java client and aiokafka do."""

from __future__ import annotations

import ctypes

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st
from murmurhash2 import murmurhash2

from fraudapp.core.partitioning import KAFKA_SEED, partition_for


def reference_partition(key: bytes, partitions: int) -> int:
    """aiokafka's default partitioner, which follows the Java client's."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@settings(max_examples=2000)
@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_matches_aiokafka_partitioner(key: bytes, partitions: int) -> None:
    assert partition_for(key, partitions) == reference_partition(key, partitions)


@pytest.mark.parametrize(
    ("text", "signed_hash"),
    [  # Kafka's own UtilsTest.testMurmur2 (Java ints, so signed)
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_hash_is_kafkas(text: str, signed_hash: int) -> None:
    assert ctypes.c_int32(murmurhash2(text.encode(), KAFKA_SEED)).value == signed_hash
