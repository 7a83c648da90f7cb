"""What the batch consumer retries (an outage) and what it parks in the DLQ (bad data)."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError, RecordListTooLargeError
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure

from crmkit.errors import is_transient


def test_outages_are_retried():
    for exc in (KafkaConnectionError(), NotLeaderForPartitionError(), AutoReconnect("down"), asyncio.TimeoutError(), ConnectionResetError()):
        assert is_transient(exc), exc


def test_records_too_large_and_bad_data_are_not():
    for exc in (MessageSizeTooLargeError("3,000,000 bytes"), RecordListTooLargeError(), DuplicateKeyError("dup"), ValueError("bad")):
        assert not is_transient(exc), exc


def test_file_errors_are_the_files_not_an_outage():
    # A directory or missing file named by an import used to be retried every second forever.
    for exc in (IsADirectoryError(21, "Is a directory"), FileNotFoundError(2, "No such file"), PermissionError(13, "denied"),
                NotADirectoryError(20, "Not a directory")):
        assert not is_transient(exc), exc
    assert is_transient(OSError("Multiple exceptions: [Errno 111] Connect call failed"))


def test_a_lost_lock_is_retried_and_other_database_refusals_are_not():
    # What FerretDB answered a createIndexes beside two instances' bulk writes (SQLite's busy timeout).
    locked = OperationFailure("[sqlite.go:...] database is locked (5) (SQLITE_BUSY)", code=1)
    assert is_transient(locked)
    assert is_transient(OperationFailure("write conflict", code=112))
    assert is_transient(OperationFailure("lock timeout", code=24))
    for refused in (OperationFailure("unknown operator: $foo", code=2), OperationFailure("not authorized", code=13)):
        assert not is_transient(refused), refused
