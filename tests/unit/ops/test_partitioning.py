"""The bus's partitioner must pick the partition every Kafka client picks for a key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from crmkit.partitioning import partition_for

# Kafka's own vectors (UtilsTest.testMurmur2), signed as the Java client returns them.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key", sorted(JAVA_VECTORS))
@pytest.mark.parametrize("count", [1, 3, 6, 7, 12, 100])
def test_partition_for_equals_the_java_client(key, count):
    # The Java client's DefaultPartitioner: toPositive(murmur2(key)) % numPartitions.
    assert partition_for(key, list(range(count))) == (JAVA_VECTORS[key] & 0x7FFFFFFF) % count


def test_partition_for_equals_aiokafkas_for_every_key_length():
    rng = random.Random(7)
    partitions = list(range(6))
    for length in range(0, 70):
        for _ in range(40):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions), key


@pytest.mark.parametrize("count", [1, 3, 6, 12])
def test_partition_for_equals_the_default_partitioner(count):
    partitions = list(range(count))
    rng = random.Random(count)
    for _ in range(500):
        key = str(rng.getrandbits(128)).encode()
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_partition_ids_need_not_start_at_zero():
    partitions = [3, 5, 9]
    key = b"a-little-bit-long-string"
    assert partition_for(key, partitions) == partitions[(JAVA_VECTORS[key] & 0x7FFFFFFF) % 3]
