"""MongoDB access shared by the services: the async client, readiness and retry on start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.asynchronous.database import AsyncDatabase

from .errors import is_transient

log = logging.getLogger("crmkit.mongo")


def make_client(url: str) -> AsyncMongoClient:
    """A client with timeouts short enough that an outage shows up as an error, not a hang."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=3000,
        socketTimeoutMS=30000,
        retryWrites=False,  # FerretDB has no retryable writes; handlers are idempotent instead
    )


class QueryTimeout(Exception):
    """A read query ran past its time limit; the server was told to stop it (HTTP 503)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"The query took longer than {seconds:g} s and was stopped; narrow it down "
                         "(a filter, a longer search word) or try again.")
        self.seconds = seconds


@contextlib.contextmanager
def read_time_limit(seconds: float) -> Iterator[None]:
    """Bound every database call inside: pymongo sends the rest of the time as ``maxTimeMS`` (the
    server ends the query; the patched FerretDB interrupts SQLite) and gives up on the socket after
    it, which closes the connection and so cancels the command on the server too."""
    try:
        with pymongo.timeout(seconds):
            yield
    except PyMongoError as exc:
        if exc.timeout:
            raise QueryTimeout(seconds) from exc
        raise


async def ping(db: AsyncDatabase, timeout: float = 2.0) -> bool:
    try:
        await asyncio.wait_for(db.command("ping"), timeout)
        return True
    except Exception:
        return False


async def until_available(fn: Callable[[], Awaitable[None]], what: str) -> None:
    """Run a start-up step, waiting through a database or broker outage rather than crashing."""
    delay = 0.2
    while True:
        try:
            await fn()
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: waiting for dependencies (%s: %s)", what, type(exc).__name__, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def ensure_indexes(collection, indexes) -> None:
    """Create the missing indexes one by one.

    FerretDB 1.24 panics when ``createIndexes`` names several indexes that already exist, so
    existing ones are skipped by name and the rest are created singly.
    """
    existing = set((await collection.index_information()).keys())
    for index in indexes:
        document = index.document
        if document["name"] in existing:
            continue
        options = {k: v for k, v in document.items() if k not in ("key", "name")}
        await collection.create_index(list(document["key"].items()), name=document["name"], **options)


INDEX_NOT_FOUND = 27  # the server's code for dropIndexes naming an index that is not there


async def drop_indexes(collection, names: Sequence[str]) -> None:
    """Drop these indexes where they exist (ones an earlier version made that no query reads any more).

    Another instance starting at the same moment may drop one first: that is the outcome wanted, not an error.
    """
    existing = set((await collection.index_information()).keys())
    for name in names:
        if name not in existing:
            continue
        try:
            await collection.drop_index(name)
        except OperationFailure as exc:
            if exc.code != INDEX_NOT_FOUND:
                raise


async def is_ferretdb(db: AsyncDatabase) -> bool:
    """FerretDB makes no conditional write atomic (it reads, then writes)."""
    info = await db.command("buildInfo")
    # FerretDB 1.x answers with `ferretdbVersion`/`ferretdbFeatures`, v2 with a `ferretdb` document.
    return any(key.lower().startswith("ferretdb") for key in info)


IDS_PER_QUERY = 500  # the patched FerretDB pushes an `$in` of up to 500 values down to its index


async def find_by_ids(collection, ids, projection=None) -> list[dict]:
    """The documents with these ``_id`` values, ``IDS_PER_QUERY`` ids a query.

    Upstream FerretDB 1.24 answered ``{_id: {$in: [...]}}`` by scanning the whole collection; the
    patched build serves it from the ``_id`` index (crmctl/ferretdb_patches.py): 1,000 ids out of
    10,000 documents in 0.06 s, against 0.28 s one ``find_one`` each and seconds for a scan.
    """
    keys = sorted(set(ids))
    found: list[dict] = []
    for start in range(0, len(keys), IDS_PER_QUERY):
        found.extend([doc async for doc in collection.find({"_id": {"$in": keys[start:start + IDS_PER_QUERY]}}, projection)])
    return found


_DUPLICATE_KEY = 11000


async def insert_new(collection: Any, docs: Sequence[dict[str, Any]]) -> set[int]:
    """Insert every document whose ``_id`` is not stored yet, in one request; the indexes of those that were."""
    if not docs:
        return set()
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != _DUPLICATE_KEY for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()


async def upsert_ignoring_stale(collection: Any, ops: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Run version-guarded upserts (filter, update) in one request; a guard failing on an existing document
    is a stale fact, whose upsert collides with the newer document (a duplicate ``_id``, ignored)."""
    if not ops:
        return
    try:
        await collection.bulk_write([pymongo.UpdateOne(f, u, upsert=True) for f, u in ops], ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise
    except KeyError:
        # FerretDB 1.24 leaves `n` and `nModified` out of an update reply that carries write errors,
        # and pymongo's bulk merge reads them: redone one write at a time, only in that case.
        for f, u in ops:
            with contextlib.suppress(DuplicateKeyError):
                await collection.update_one(f, u, upsert=True)
