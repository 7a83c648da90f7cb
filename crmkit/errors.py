"""Which failures are outages a retry cures: one rule for the broker and the database alike."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WaitQueueTimeoutError

# A record too large for the producer or the broker never fits, however often it is sent: bad data,
# not an outage (retried, it would hold its partition forever).
UNSENDABLE = (MessageSizeTooLargeError, RecordListTooLargeError)
_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def is_transient(exc: BaseException) -> bool:
    """True for outages that a retry cures (database or broker unreachable), never for bad data."""
    if isinstance(exc, UNSENDABLE):
        return False
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WaitQueueTimeoutError)):
        return True
    if isinstance(exc, KafkaError):
        return True
    if isinstance(exc, _FILE_ERRORS):
        return False  # a missing or unreadable file stays so however often it is retried
    return isinstance(exc, (asyncio.TimeoutError, ConnectionError, OSError))
