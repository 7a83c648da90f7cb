"""Kafka's default partitioner for keyed records (murmur2 of the key), as the Java client computes it.

The bus fills one record batch per partition itself instead of handing records to the producer one
at a time, so it picks each record's partition; it must be the partition every other Kafka client
picks for the same key, or a lead's messages would not share a partition across producers.
aiokafka's own murmur2 reads the key byte by byte in Python (~5 µs a key); this reads it a word at
a time (~1.5 µs), with the same result (tested against aiokafka's).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as an unsigned 32-bit int (org.apache.kafka.common.utils.Utils.murmur2)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = length & ~3
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions`` (sorted ids)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
