"""Which failures are outages a retry cures: one rule for the broker and the database alike."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure, WaitQueueTimeoutError

# A record too large for the producer or the broker never fits, however often it is sent: bad data,
# not an outage (retried, it would hold its partition forever).
UNSENDABLE = (MessageSizeTooLargeError, RecordListTooLargeError)
_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)
# A write that lost a race for a lock: MongoDB's LockTimeout and WriteConflict, and FerretDB's SQLite
# answering SQLITE_BUSY ("database is locked", code 1 InternalError) when a collection or index was made
# beside a queue of writers. The same command succeeds once the lock is free.
_LOCK_CODES = frozenset({24, 112})
_LOCKED = "database is locked"


def is_transient(exc: BaseException) -> bool:
    """True for outages that a retry cures (database or broker unreachable), never for bad data."""
    if isinstance(exc, UNSENDABLE):
        return False
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WaitQueueTimeoutError)):
        return True
    if isinstance(exc, KafkaError):
        return True
    if isinstance(exc, OperationFailure):
        return exc.code in _LOCK_CODES or _LOCKED in str(exc)
    if isinstance(exc, _FILE_ERRORS):
        return False  # a missing or unreadable file stays so however often it is retried
    return isinstance(exc, (asyncio.TimeoutError, ConnectionError, OSError))
