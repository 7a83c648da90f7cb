"""The patched FerretDB's collections and indexes made beside writers: queued with them, never "database is locked".

Upstream made a collection or an index in SQLite statements of their own, outside the queue of the
database's writers (crmctl/ferretdb_registry.py): beside a write command that had read and not yet
written, SQLite refused the write ("database is locked (517)", ~20 a second here), and beside a queue of
bulk writers the change itself waited out SQLite's busy timeout with the registry held for every client.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pymongo import IndexModel, ReturnDocument, UpdateOne

from crmkit.mongo import make_client

SECONDS = 4.0


@pytest.fixture
async def db(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    yield client[isolation.db("registry")]
    await client.close()


async def test_collections_and_indexes_made_beside_writers_of_one_document_fail_none_of_them(db):
    await db["jobs"].insert_one({"_id": "j", "n": 0})
    errors: list[str] = []
    made = [0, 0]
    updates = [0] * 4
    until = time.monotonic() + SECONDS

    async def write(k: int) -> None:
        while time.monotonic() < until:
            try:
                await db["jobs"].find_one_and_update({"_id": "j"}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER)
                updates[k] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(str(exc)[-200:])

    async def make(k: int) -> None:
        while time.monotonic() < until:
            try:
                name = f"c{k}_{made[k]}"
                await db[name].insert_one({"a": 1})
                await db[name].create_index("a")
                await db[name].create_index("a")  # already there: no change, no error
                made[k] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(str(exc)[-200:])

    await asyncio.gather(*(write(k) for k in range(4)), *(make(k) for k in range(2)))
    assert errors == []
    assert all(made) and all(updates)  # both kinds went on: neither waited the other out
    assert (await db["jobs"].find_one({"_id": "j"}))["n"] == sum(updates)


async def test_upserts_that_make_their_collection_inside_one_write_command(db):
    # The command's first upsert makes the collection; the write turn is taken once, and the rest join it.
    result = await db["fresh"].bulk_write([UpdateOne({"_id": f"u{i}"}, {"$set": {"i": i}}, upsert=True) for i in range(5)])
    assert result.upserted_count == 5
    doc = await db["fresh2"].find_one_and_update({"_id": "x"}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
    assert doc == {"_id": "x", "n": 1}
    assert sorted(await db.list_collection_names()) == ["fresh", "fresh2"]


@pytest.mark.parametrize("change", ["drop", "rename", "drop_index"])
async def test_a_change_of_a_collection_beside_a_bulk_writer_of_it(db, change):
    docs = db["busy"]
    await docs.create_indexes([IndexModel("g")])
    await docs.insert_many([{"_id": i, "g": 0} for i in range(500)])

    first_round = asyncio.Event()

    async def bulks() -> int:
        written = 0
        for round_ in range(5):
            result = await db["busy"].bulk_write([UpdateOne({"_id": i}, {"$set": {"g": round_}}) for i in range(500)])
            written += result.modified_count
            first_round.set()  # the change goes in beside the rounds still to come
        return written

    async def alter() -> None:
        await first_round.wait()
        if change == "drop":
            await db["other"].insert_one({"_id": 1})
            await db["other"].drop()
        elif change == "rename":
            await db["other"].insert_one({"_id": 1})
            await db["other"].rename("renamed")
        else:
            await docs.create_index("h")
            await docs.drop_index("h_1")

    written, _ = await asyncio.gather(bulks(), alter())
    assert written == 2_000  # the first round sets g=0 again: 4 rounds change each document
    assert await docs.count_documents({"g": 4}) == 500
