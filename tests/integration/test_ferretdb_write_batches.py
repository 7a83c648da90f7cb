"""The patched FerretDB's update and delete commands, their statements in shared SQLite transactions.

What MongoDB does is the reference: an ordered command stops at its first failing statement with
the earlier ones written; an unordered one goes on; each failure is a write error at its statement's
index; ``n``, ``nModified`` and ``upserted`` (each upsert with its statement's index) count what was
written; and each statement sees what the earlier statements of the same command wrote. Upstream
FerretDB 1.24 answered a failing update with that error alone at index 0, without the counts, and
stopped even when unordered; the last tests run bulks of hundreds of statements beside other writers,
where upstream once stopped answering.
"""

from __future__ import annotations

import asyncio

import pytest
from pymongo import DeleteOne, IndexModel, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError

from crmkit.mongo import make_client

DUPLICATE_KEY = 11000
TYPE_MISMATCH = 14  # $inc on a string


@pytest.fixture
async def col(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    collection = client[isolation.db("writebatch")]["docs"]
    await collection.create_indexes([IndexModel("g"), IndexModel("code", unique=True)])
    await collection.insert_many([{"_id": f"d{i}", "g": 1, "s": "new", "v": 1, "name": f"n{i}", "code": f"c{i}"} for i in range(5)])
    yield collection
    await client.close()


def _failing_bulk() -> list:
    """Five statements; the one at index 2 fails ($inc of a string), the others change a document each."""
    return [
        UpdateOne({"_id": "d0"}, {"$set": {"s": "done"}}),
        UpdateOne({"_id": "d1"}, {"$set": {"s": "done"}}),
        UpdateOne({"_id": "d2"}, {"$inc": {"name": 1}}),
        UpdateOne({"_id": "d3"}, {"$set": {"s": "done"}}),
        ReplaceOne({"_id": "d4", "v": 1}, {"g": 1, "s": "done", "v": 2, "code": "c4"}),
    ]


async def _states(col) -> dict[str, str]:
    return {d["_id"]: d["s"] async for d in col.find({}, {"s": 1})}


async def test_an_ordered_bulk_stops_at_its_failing_statement_with_the_earlier_ones_written(col):
    with pytest.raises(BulkWriteError) as failed:
        await col.bulk_write(_failing_bulk(), ordered=True)
    details = failed.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(2, TYPE_MISMATCH)]
    assert (details["nMatched"], details["nModified"], details["nUpserted"]) == (2, 2, 0)
    assert await _states(col) == {"d0": "done", "d1": "done", "d2": "new", "d3": "new", "d4": "new"}


async def test_an_unordered_bulk_writes_every_statement_but_the_failing_one(col):
    with pytest.raises(BulkWriteError) as failed:
        await col.bulk_write(_failing_bulk(), ordered=False)
    details = failed.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(2, TYPE_MISMATCH)]
    assert (details["nMatched"], details["nModified"]) == (4, 4)
    assert await _states(col) == {"d0": "done", "d1": "done", "d2": "new", "d3": "done", "d4": "done"}


async def test_the_update_command_is_ordered_unless_it_says_otherwise(col):
    """MongoDB's default, asked for by a raw command without ``ordered``."""
    reply = await col.database.command({
        "update": col.name,
        "updates": [{"q": {"_id": "d0"}, "u": {"$inc": {"name": 1}}}, {"q": {"_id": "d1"}, "u": {"$set": {"s": "done"}}}],
    })
    assert [(e["index"], e["code"]) for e in reply["writeErrors"]] == [(0, TYPE_MISMATCH)]
    assert (reply["n"], reply["nModified"]) == (0, 0)
    assert (await col.find_one({"_id": "d1"}))["s"] == "new"


async def test_upserts_that_hit_a_duplicate_key_fail_alone_and_the_others_are_counted_at_their_index(col):
    ops = [
        UpdateOne({"_id": "x1"}, {"$set": {"s": "up", "code": "cx1"}}, upsert=True),  # 0: new
        UpdateOne({"_id": "d0", "v": {"$lt": 1}}, {"$set": {"v": 1}}, upsert=True),  # 1: stale guard, _id exists
        UpdateOne({"_id": "d1"}, {"$set": {"s": "done"}}),  # 2: changes d1
        UpdateOne({"_id": "x2"}, {"$set": {"s": "up", "code": "c3"}}, upsert=True),  # 3: unique `code` taken by d3
        UpdateOne({"_id": "x3"}, {"$set": {"s": "up", "code": "cx3"}}, upsert=True),  # 4: new
        UpdateOne({"_id": "d2"}, {"$set": {"s": "new"}}),  # 5: matches, changes nothing
    ]
    with pytest.raises(BulkWriteError) as failed:
        await col.bulk_write(ops, ordered=False)
    details = failed.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, DUPLICATE_KEY), (3, DUPLICATE_KEY)]
    assert sorted((u["index"], u["_id"]) for u in details["upserted"]) == [(0, "x1"), (4, "x3")]
    assert (details["nMatched"], details["nModified"], details["nUpserted"]) == (2, 1, 2)
    stored = {d["_id"]: d async for d in col.find({})}
    assert set(stored) == {"d0", "d1", "d2", "d3", "d4", "x1", "x3"}
    assert (stored["d0"]["v"], stored["d1"]["s"], stored["x1"]["s"]) == (1, "done", "up")


async def test_an_upsert_reply_names_the_statement_of_each_upsert(col):
    result = await col.bulk_write([
        UpdateOne({"_id": "d0"}, {"$set": {"s": "done"}}),
        UpdateOne({"_id": "y1"}, {"$set": {"s": "up", "code": "cy1"}}, upsert=True),
        UpdateOne({"_id": "d1"}, {"$set": {"s": "done"}}),
        UpdateOne({"_id": "y2"}, {"$set": {"s": "up", "code": "cy2"}}, upsert=True),
    ])
    assert result.upserted_ids == {1: "y1", 3: "y2"}
    assert (result.matched_count, result.modified_count, result.upserted_count) == (2, 2, 2)


async def test_each_statement_sees_what_the_earlier_statements_of_its_command_wrote(col):
    result = await col.bulk_write([
        UpdateOne({"_id": "n1"}, {"$set": {"k": 1, "code": "cn1"}}, upsert=True),  # written here...
        UpdateOne({"_id": "n1", "k": 1}, {"$set": {"k": 2}}),  # ...and found here
        UpdateOne({"k": 2}, {"$inc": {"c": 1}}),
        UpdateOne({"_id": "d0"}, {"$set": {"g": 7}}),
        UpdateMany({"g": 7}, {"$set": {"seen": True}}),  # a multi-document read, on a connection of its own
        UpdateOne({"g": 7, "seen": True}, {"$inc": {"c": 1}}),  # and what that one wrote
    ])
    assert (result.upserted_count, result.matched_count, result.modified_count) == (1, 5, 5)
    assert await col.find_one({"_id": "n1"}, {"_id": 0, "code": 0}) == {"k": 2, "c": 1}
    assert await col.find_one({"_id": "d0"}, {"_id": 0, "g": 1, "seen": 1, "c": 1}) == {"g": 7, "seen": True, "c": 1}


async def test_one_document_statements_with_the_same_filter_each_take_the_next_document(col):
    """Had a statement not seen the earlier ones' writes, all three would pick the same document."""
    result = await col.bulk_write([UpdateOne({"s": "new"}, {"$set": {"s": "taken"}}) for _ in range(3)])
    assert result.modified_count == 3
    assert sorted((await _states(col)).values()) == ["new", "new", "taken", "taken", "taken"]
    deleted = await col.bulk_write([DeleteOne({"s": "taken"}) for _ in range(3)] + [DeleteOne({"s": "taken"})])
    assert deleted.deleted_count == 3
    assert sorted((await _states(col)).values()) == ["new", "new"]


async def test_a_delete_command_reports_a_failing_statement_at_its_index_with_the_others_applied(col):
    """A ``$bad`` query operator fails its statement; the deletes before it (ordered) or around it stay."""
    with pytest.raises(BulkWriteError) as failed:
        await col.bulk_write([DeleteOne({"_id": "d0"}), DeleteOne({"g": {"$bad": 1}}), DeleteOne({"_id": "d1"})], ordered=False)
    assert [e["index"] for e in failed.value.details["writeErrors"]] == [1]
    assert failed.value.details["nRemoved"] == 2
    assert sorted(await _states(col)) == ["d2", "d3", "d4"]


async def test_a_bulk_longer_than_one_transaction_writes_every_statement(col):
    """1,200 statements: the batch commits every 500 writes and carries on."""
    await col.insert_many([{"_id": f"b{i:04d}", "g": 2, "code": f"b{i}", "v": 1} for i in range(1000)])
    ops = [UpdateOne({"_id": f"b{i:04d}"}, {"$inc": {"v": 1}}) for i in range(1000)]
    ops += [UpdateOne({"_id": f"u{i:04d}"}, {"$set": {"g": 3, "code": f"u{i}"}}, upsert=True) for i in range(200)]
    result = await col.bulk_write(ops, ordered=False)
    assert (result.modified_count, result.upserted_count) == (1000, 200)
    assert await col.count_documents({"v": 2}) == 1000
    assert await col.count_documents({"g": 3}) == 200
    removed = await col.delete_many({"g": {"$in": [2, 3]}})
    assert removed.deleted_count == 1200


async def test_long_bulks_beside_other_writers_all_finish_with_every_write(col):
    """Four 300-statement bulks, 120 single updates and inserts at once, each with a deadline: upstream's
    update held a read connection per statement while waiting for a write one, and ~100 of them
    stopped the server for good."""
    await col.insert_many([{"_id": f"w{w}-{i:03d}", "g": 10 + w, "n": 0, "code": f"w{w}-{i}"} for w in range(4) for i in range(300)])

    async def bulk(w: int) -> int:
        result = await col.bulk_write([UpdateOne({"_id": f"w{w}-{i:03d}"}, {"$inc": {"n": 1}}) for i in range(300)], ordered=w % 2 == 0)
        return result.modified_count

    async def single(i: int) -> int:
        result = await col.update_one({"_id": f"w{i % 4}-{i:03d}"}, {"$inc": {"n": 10}})
        return result.modified_count

    async def inserts(k: int) -> int:
        result = await col.insert_many([{"_id": f"i{k}-{j}", "code": f"i{k}-{j}"} for j in range(50)])
        return len(result.inserted_ids)

    async def many(w: int) -> int:
        return (await col.update_many({"g": 10 + w}, {"$set": {"touched": True}})).matched_count

    work = [bulk(w) for w in range(4)] + [single(i) for i in range(120)] + [inserts(k) for k in range(4)] + [many(w) for w in range(4)]
    results = await asyncio.wait_for(asyncio.gather(*work), timeout=120)
    assert results[:4] == [300] * 4
    assert results[4:124] == [1] * 120
    assert results[124:128] == [50] * 4
    assert results[128:] == [300] * 4
    total = 0
    async for d in col.find({"g": {"$gte": 10}}, {"n": 1, "touched": 1}):
        assert d.get("touched") is True
        total += d["n"]
    assert total == 4 * 300 + 120 * 10


async def test_concurrent_read_modify_writes_lose_no_change(col):
    """FerretDB updates a document by reading it, changing it in Go and writing it whole. Upstream read
    outside the write lock, so two writers of one document could both read it before either wrote, and
    one change was lost; now the read is in the write's transaction. 60 concurrent ``$inc`` of one
    document, a ``$push`` each from 20 more, and 30 ``find_one_and_update`` claims of 10 free documents."""
    await col.insert_many([{"_id": f"f{i}", "state": "free", "code": f"f{i}"} for i in range(10)])

    async def claim(i: int):
        return await col.find_one_and_update({"state": "free"}, {"$set": {"state": "taken", "by": i}})

    incs = [col.update_one({"_id": "d0"}, {"$inc": {"v": 1}}) for _ in range(60)]
    pushes = [col.update_one({"_id": "d0"}, {"$push": {"seen": i}}) for i in range(20)]
    claims = [claim(i) for i in range(30)]
    results = await asyncio.wait_for(asyncio.gather(*incs, *pushes, *claims), timeout=60)
    d0 = await col.find_one({"_id": "d0"})
    assert d0["v"] == 1 + 60
    assert sorted(d0["seen"]) == list(range(20))
    won = [r for r in results[80:] if r is not None]
    assert sorted(r["_id"] for r in won) == sorted(f"f{i}" for i in range(10))  # each free document claimed once
    assert await col.count_documents({"state": "taken"}) == 10


async def test_strings_come_back_exactly_through_an_update(col):
    """An update decodes the stored document and writes it back whole; the patched decoder takes a
    string without escapes as it is and leaves every other string to encoding/json."""
    texts = ["plain", "Заявка с выставки", 'quote " and backslash \\', "tab\tand\nnewline", "<b>&amp;</b>",
             "\u0001 control", "emoji 😀", "line\u2028separator", "", "ё" * 3000]
    await col.insert_one({"_id": "t", "texts": texts, "nested": {"deep": {"text": texts[3]}}, "code": "t"})
    await col.update_one({"_id": "t"}, {"$set": {"v": 2}})
    stored = await col.find_one({"_id": "t"})
    assert stored["texts"] == texts
    assert stored["nested"] == {"deep": {"text": texts[3]}}
    assert stored["v"] == 2


async def test_an_update_that_takes_a_unique_value_is_a_duplicate_key_of_its_statement(col):
    """MongoDB answers E11000 for that statement; upstream FerretDB failed the command (an internal error)."""
    with pytest.raises(BulkWriteError) as failed:
        await col.bulk_write([
            UpdateOne({"_id": "d0"}, {"$set": {"s": "done"}}),
            UpdateOne({"_id": "d1"}, {"$set": {"code": "c2"}}),  # d2 holds c2
            UpdateOne({"_id": "d3"}, {"$set": {"s": "done"}}),
        ], ordered=False)
    details = failed.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, DUPLICATE_KEY)]
    assert (details["nMatched"], details["nModified"]) == (2, 2)
    assert (await col.find_one({"_id": "d1"}))["code"] == "c1"
    assert (await _states(col))["d3"] == "done"
