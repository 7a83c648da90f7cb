"""The patched FerretDB's cheaper updates: what they write and answer is what MongoDB writes and answers.

A stored document is encoded in one pass (crmctl/ferretdb_go/sjson_encode.go.txt), compared byte for
byte with upstream's encoder by a Go test in the patched module; here every awkward value goes in by
an insert, a $set and a replace and reads back as it was sent.
"""

from __future__ import annotations

import pytest
from bson.codec_options import CodecOptions
from bson.int64 import Int64
from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from crmkit.mongo import make_client
from tests.integration.test_ferretdb_decode import AWKWARD, run_patched_go_test

DUPLICATE_KEY = 11000
TYPE_MISMATCH = 14
IMMUTABLE_FIELD = 66


@pytest.fixture
async def col(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    collection = client[isolation.db("fastupdate")].get_collection("docs", CodecOptions(tz_aware=True))
    yield collection
    await client.close()


def test_the_one_pass_encoder_writes_the_bytes_upstreams_does():
    run_patched_go_test("sjson_encode", "CrmEncode")  # and the decoder on what it writes


async def test_awkward_values_read_back_after_an_insert_a_set_and_a_replace(col):
    await col.insert_one({"_id": "a", **AWKWARD})
    assert list((await col.find_one({"_id": "a"})).items()) == list({"_id": "a", **AWKWARD}.items())
    await col.update_one({"_id": "a"}, {"$set": {f"{k}_copy": v for k, v in AWKWARD.items()}})
    # (new fields land in lexicographic order, as MongoDB 5.0+ applies update operators)
    assert await col.find_one({"_id": "a"}) == {"_id": "a", **AWKWARD, **{f"{k}_copy": v for k, v in AWKWARD.items()}}
    await col.replace_one({"_id": "a"}, {"nested": AWKWARD})
    assert await col.find_one({"_id": "a"}) == {"_id": "a", "nested": AWKWARD}


async def test_filters_that_look_like_an_id_but_are_not_exactly_one(col):
    await col.insert_many([{"_id": "a", "n": 0}, {"_id": "b", "n": 0}, {"_id": 1, "n": 0}, {"_id": "1", "n": 0},
                           {"_id": {"k": "a"}, "n": 0}, {"_id": 1.5, "n": 0}])
    one_of = await col.update_one({"_id": {"$in": ["a", "b"]}}, {"$inc": {"n": 1}})
    assert (one_of.matched_count, one_of.modified_count) == (1, 1)
    both = await col.update_many({"_id": {"$in": ["a", "b", "zz"]}}, {"$inc": {"n": 10}})
    assert (both.matched_count, both.modified_count) == (2, 2)
    # an _id of another type is another document: 1, "1" and 1.0 are not one value in the filter's eyes...
    assert (await col.update_one({"_id": 1}, {"$inc": {"n": 100}})).modified_count == 1
    assert (await col.update_one({"_id": "1"}, {"$inc": {"n": 1000}})).modified_count == 1
    assert (await col.update_one({"_id": {"k": "a"}}, {"$inc": {"n": 5}})).modified_count == 1
    assert (await col.update_one({"_id": 1.5}, {"$inc": {"n": 7}})).modified_count == 1
    assert (await col.update_one({"_id": {"k": "b"}}, {"$inc": {"n": 5}})).matched_count == 0
    # ...and an operator on _id is a condition, not a value
    assert (await col.update_many({"_id": {"$gt": "a"}}, {"$set": {"past_a": True}})).matched_count == 1  # "b" only
    found = {repr(d["_id"]): (d["n"], d.get("past_a")) async for d in col.find({})}
    assert sorted([found["'a'"][0], found["'b'"][0]]) == [10, 11] and found["'b'"][1] is True  # one of them got the 1
    assert (found["1"], found["'1'"], found["{'k': 'a'}"], found["1.5"]) == ((100, None), (1000, None), (5, None), (7, None))


async def test_a_version_guard_that_fails_writes_nothing_and_its_upsert_is_a_duplicate_key(col):
    await col.insert_one({"_id": "a", "version": 2, "s": "kept"})
    stale = await col.update_one({"_id": "a", "version": 1}, {"$set": {"s": "lost"}})
    assert (stale.matched_count, stale.modified_count) == (0, 0)
    stale_lt = await col.replace_one({"_id": "a", "version": {"$lt": 2}}, {"version": 3, "s": "lost"})
    assert (stale_lt.matched_count, stale_lt.modified_count) == (0, 0)
    with pytest.raises(DuplicateKeyError):  # MongoDB: the upsert inserts {_id: "a"}, which exists
        await col.update_one({"_id": "a", "version": {"$lt": 2}}, {"$set": {"s": "lost"}}, upsert=True)
    with pytest.raises(BulkWriteError) as failed:
        await col.bulk_write([
            UpdateOne({"_id": "a", "version": {"$lt": 2}}, {"$set": {"s": "lost"}}, upsert=True),
            UpdateOne({"_id": "a", "version": 2}, {"$set": {"s": "won"}, "$inc": {"version": 1}}),
            UpdateOne({"_id": "n", "version": {"$lt": 2}}, {"$set": {"s": "new"}, "$setOnInsert": {"born": 1}}, upsert=True),
        ], ordered=False)
    details = failed.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(0, DUPLICATE_KEY)]
    assert (details["nMatched"], details["nModified"], details["nUpserted"]) == (1, 1, 1)
    assert [u["index"] for u in details["upserted"]] == [2]
    assert await col.find_one({"_id": "a"}) == {"_id": "a", "version": 3, "s": "won"}
    assert await col.find_one({"_id": "n"}) == {"_id": "n", "s": "new", "born": 1}  # ($lt is no value to copy)


async def test_guarded_replacements_answer_as_mongodb_does(col):
    """A replacement guarded by `_id` and plain fields (as the services store a changed document) is written by
    one guarded UPDATE on the patched build (crmctl/ferretdb_replace.py); every case it leaves to the full way
    answers the same, and each reply is MongoDB's."""
    await col.create_index("code", unique=True)
    await col.insert_many([
        {"_id": "a", "version": 1, "s": "one", "code": "ca"}, {"_id": "b", "version": [1, 2], "s": "arr"},
        {"_id": "c", "version": Int64(7)}, {"_id": "d", "tag": "t1", "s": "x"}, {"_id": "e", "version": 1, "code": "ce"},
        {"_id": "g", "version": 1, "flag": True},
    ])

    async def replace(guard, doc):
        result = await col.replace_one(guard, doc)
        return result.matched_count, result.modified_count

    assert await replace({"_id": "a", "version": 1}, {"version": 2, "s": "two", "code": "ca2"}) == (1, 1)
    assert await replace({"_id": "a", "version": 1}, {"version": 3, "s": "lost"}) == (0, 0)  # stale: nothing written
    assert await replace({"_id": "b", "version": 2}, {"version": 3, "s": "arr2"}) == (1, 1)  # an array holding the value
    assert await replace({"_id": "c", "version": 7}, {"version": 8}) == (1, 1)  # an int guard on a long
    assert await replace({"_id": "d", "tag": "t1"}, {"tag": "t2", "s": "y"}) == (1, 1)  # a string guard
    assert await replace({"_id": "g", "version": 1, "flag": 1}, {"version": 2}) == (0, 0)  # true is not 1
    assert await replace({"_id": "g", "version": 1, "flag": True}, {"version": 2, "flag": False}) == (1, 1)
    assert await replace({"_id": "g", "version": 2, "flag": True}, {"version": 3}) == (0, 0)  # a flag that changed
    assert await replace({"_id": "zz", "version": 1}, {"version": 2}) == (0, 0)
    with pytest.raises(WriteError) as immutable:  # a replacement naming another _id
        await col.replace_one({"_id": "a", "version": 2}, {"_id": "other", "version": 3})
    assert immutable.value.code == IMMUTABLE_FIELD
    with pytest.raises(DuplicateKeyError):  # a unique index's value taken, through the guarded write too
        await col.replace_one({"_id": "e", "version": 1}, {"version": 2, "code": "ca2"})
    result = await col.bulk_write([
        ReplaceOne({"_id": "a", "version": 2}, {"version": 3, "s": "bulk", "code": "ca3"}),
        ReplaceOne({"_id": "a", "version": 9}, {"version": 4}),
        ReplaceOne({"_id": "e", "version": 1}, {"version": 2, "code": "ce"}),
    ], ordered=False)
    assert (result.matched_count, result.modified_count) == (2, 2)
    assert [d async for d in col.find({}, sort=[("_id", 1)])] == [
        {"_id": "a", "version": 3, "s": "bulk", "code": "ca3"}, {"_id": "b", "version": 3, "s": "arr2"},
        {"_id": "c", "version": 8}, {"_id": "d", "tag": "t2", "s": "y"}, {"_id": "e", "version": 2, "code": "ce"},
        {"_id": "g", "version": 2, "flag": False},
    ]
    # the indexes follow the guarded writes: the old unique value is free again, the new one taken
    assert [d["_id"] async for d in col.find({"code": "ca3"})] == ["a"] and await col.find_one({"code": "ca2"}) is None
    await col.insert_one({"_id": "f", "code": "ca2"})


async def test_the_operators_the_services_use_on_an_update_by_id(col):
    await col.insert_one({"_id": "a", "n": 1, "gone": "x", "list": ["p"], "contact": {"name": "A"}})
    result = await col.update_one({"_id": "a", "n": 1}, {
        "$inc": {"n": 2, "fresh": 5}, "$unset": {"gone": ""}, "$push": {"list": "q"}, "$set": {"contact.name": "B"},
        "$setOnInsert": {"never": True}})
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert await col.find_one({"_id": "a"}) == {"_id": "a", "n": 3, "list": ["p", "q"], "contact": {"name": "B"}, "fresh": 5}
    same = await col.update_one({"_id": "a"}, {"$set": {"n": 3}})  # a no-op is matched, not modified
    assert (same.matched_count, same.modified_count) == (1, 0)
    with pytest.raises(WriteError) as refused:  # $inc of a string: the statement's error, the document untouched
        await col.update_one({"_id": "a"}, {"$inc": {"contact.name": 1}})
    assert refused.value.code == TYPE_MISMATCH
    assert (await col.find_one({"_id": "a"}))["contact"] == {"name": "B"}


async def test_statements_kept_prepared_follow_a_collection_dropped_and_made_again(endpoints, isolation):
    """The database keeps its statements prepared across commands: a collection dropped and made again
    (with a unique index it lacked) is written as the new one, its index enforced."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("stmtcache")]
    try:
        for round_ in range(3):
            col = db["docs"]
            if round_:
                await col.create_index("code", unique=True)
            await col.insert_many([{"_id": f"d{i}", "code": f"c{i}", "v": round_} for i in range(3)])
            for i in range(3):
                assert (await col.update_one({"_id": f"d{i}", "v": round_}, {"$set": {"v": round_ + 1}})).modified_count == 1
            taking = col.update_one({"_id": "d0"}, {"$set": {"code": "c1"}})
            if round_:
                with pytest.raises(DuplicateKeyError):
                    await taking
            else:
                assert (await taking).modified_count == 1
            assert sorted([d["v"] async for d in col.find({})]) == [round_ + 1] * 3
            await col.drop()
        await client.drop_database(db.name)
        await db["docs"].insert_one({"_id": "d0", "v": 0})  # the database made again, too
        assert (await db["docs"].update_one({"_id": "d0", "v": 0}, {"$set": {"v": 1}})).modified_count == 1
        assert await db["docs"].find_one({"_id": "d0"}) == {"_id": "d0", "v": 1}
    finally:
        await client.drop_database(db.name)
        await client.close()
