"""The bus's partitioner must pick the partition every Kafka client picks for a key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from crmkit.partitioning import murmur2, partition_for


def test_murmur2_equals_aiokafkas_for_every_key_length():
    rng = random.Random(7)
    for length in range(0, 70):
        for _ in range(40):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF, key


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
def test_murmur2_equals_the_java_client(key):
    assert murmur2(key) == JAVA_VECTORS[key] & 0xFFFFFFFF


@pytest.mark.parametrize("count", [1, 3, 6, 12])
def test_partition_for_equals_the_default_partitioner(count):
    partitions = list(range(count))
    rng = random.Random(count)
    for _ in range(500):
        key = str(rng.getrandbits(128)).encode()
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
