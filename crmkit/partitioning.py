"""Kafka's default partitioner for keyed records (murmur2 of the key), as the Java client computes it.

The bus fills one record batch per partition itself instead of handing records to the producer one
at a time, so it picks each record's partition; it must be the partition every other Kafka client
picks for the same key, or a lead's messages would not share a partition across producers.
aiokafka's own murmur2 reads the key byte by byte in Python, and a word-at-a-time Python version
still cost 4.5-6.4 µs a 36-byte lead id on this 2-core machine under load; librdkafka's (through
confluent-kafka, already a dependency for crmctl's ACLs) takes 0.13-0.20 µs, with the same partition
for every key (tests/unit/ops/test_partitioning.py checks it against aiokafka's partitioner and
Kafka's own test vectors).
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import murmur2 as _partition_of


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions`` (sorted ids)."""
    return partitions[_partition_of(key, len(partitions))]
