"""What the batch consumer retries (an outage) and what it parks in the DLQ (bad data)."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError, RecordListTooLargeError
from pymongo.errors import AutoReconnect, DuplicateKeyError

from crmkit.messaging import is_transient


def test_outages_are_retried():
    for exc in (KafkaConnectionError(), NotLeaderForPartitionError(), AutoReconnect("down"), asyncio.TimeoutError(), ConnectionResetError()):
        assert is_transient(exc), exc


def test_records_too_large_and_bad_data_are_not():
    for exc in (MessageSizeTooLargeError("3,000,000 bytes"), RecordListTooLargeError(), DuplicateKeyError("dup"), ValueError("bad")):
        assert not is_transient(exc), exc
