"""The patched FerretDB's read pushdown: ranges, sorts, limits and counts on `ix_` fields, and time limits.

Each answer is checked against the filter evaluated in Python over the same documents (MongoDB's
semantics), and each plan against SQLite's EXPLAIN QUERY PLAN: an index range, read in the index's
order (no temporary B-tree), with the LIMIT in SQL only when the filter is pushed down exactly.
"""

from __future__ import annotations

import json

import pytest
from pymongo.errors import ExecutionTimeout

from crmkit.mongo import is_ferretdb, make_client

DOCS = [
    {"_id": f"d{i:03d}", "ix_k": f"{'LD'[i % 2]}{i % 3}:{1000 + i * 7 % 97:04d}{i:03x}",
     "ix_terms": f" {['иван', 'ivan', 'петр'][i % 3]}{i % 5} ромашка ", "owner": f"u{i % 4}"}
    for i in range(120)
] + [{"_id": "bare", "owner": "u1"}]


def _in_range(doc, cond):
    value = doc.get("ix_k")
    if value is None:
        return False
    ops = {"$gt": value.__gt__, "$gte": value.__ge__, "$lt": value.__lt__, "$lte": value.__le__}
    return all(ops[op](bound) for op, bound in cond.items())


def _matches(doc, flt):
    for key, wanted in flt.items():
        if key == "$and":
            if not all(_matches(doc, sub) for sub in wanted):
                return False
        elif key == "ix_k":
            if not _in_range(doc, wanted):
                return False
        elif key == "ix_terms":
            if wanted["$regex"] not in doc.get("ix_terms", ""):
                return False
        elif doc.get(key) != wanted:
            return False
    return True


QUERIES = [
    ({"ix_k": {"$gt": "L1:", "$lt": "L1;"}}, True),
    ({"ix_k": {"$gt": "L1:", "$lt": "L1:1050"}}, True),  # a later page: the cursor is the upper bound
    ({"ix_k": {"$gte": "D", "$lt": "E"}, "$and": [{"ix_terms": {"$regex": " иван"}}]}, True),
    ({"ix_k": {"$gt": "L", "$lt": "M"}, "$and": [{"ix_terms": {"$regex": " ivan2"}}, {"ix_terms": {"$regex": " ром"}}]}, True),
    ({"ix_k": {"$gt": "L0:", "$lt": "L0;"}, "owner": "u2"}, False),  # checked row by row: no LIMIT in SQL
]


@pytest.mark.parametrize("fts", [False, True], ids=["instr", "fts"])
@pytest.mark.parametrize(("query", "exact"), QUERIES, ids=[json.dumps(q, ensure_ascii=False) for q, _ in QUERIES])
async def test_ix_ranges_sorts_limits_and_counts_answer_as_mongodb_does(endpoints, isolation, query, exact, fts):
    """With ``fts`` the words of ``ix_terms`` are matched by the FTS table behind an ``ix_terms_fts`` index."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("readpush")]
    try:
        ferretdb = await is_ferretdb(db)
        if fts and not ferretdb:
            pytest.skip("the ix_terms_fts index is the patched FerretDB's")
        await db["docs"].create_index([("ix_k", 1)])
        if fts:
            await db["docs"].create_index([("ix_terms", 1)], name="ix_terms_fts")
        await db["docs"].insert_many(DOCS)
        expected = sorted((d for d in DOCS if _matches(d, query)), key=lambda d: d["ix_k"], reverse=True)
        assert expected  # every query above matches something
        for limit in (1, 5, 500):
            found = [d["_id"] async for d in db["docs"].find(query).sort("ix_k", -1).limit(limit)]
            assert found == [d["_id"] for d in expected[:limit]], limit
        ascending = [d["_id"] async for d in db["docs"].find(query).sort("ix_k", 1).limit(3)]
        assert ascending == [d["_id"] for d in expected[::-1][:3]]
        counted = await db.command({"count": "docs", "query": query})
        assert counted["n"] == len(expected)
        assert (await db.command({"count": "docs", "query": query, "limit": 2}))["n"] == min(2, len(expected))
        if ferretdb:
            plan = await db.command("explain", {"find": "docs", "filter": query, "sort": {"ix_k": -1}, "limit": 5})
            text = " ".join(plan["queryPlanner"]["Plan"])
            searched = fts and "ix_terms" in json.dumps(query)
            assert ("VIRTUAL TABLE" in text) is searched, text
            assert plan["sortPushdown"] and plan["limitPushdown"] is exact
            if searched:  # every word here is rare (under 1,000 rows): its rows first, then sorted
                assert "TEMP B-TREE" in text, text
            else:
                assert "USING INDEX" in text and "ix_k" in text and "TEMP B-TREE" not in text, text
        else:
            # MongoDB: the page is read from the key's index in its order (no collection scan, no sort stage).
            plan = str((await db["docs"].find(query).sort("ix_k", -1).limit(5).explain())["queryPlanner"]["winningPlan"])
            assert "IXSCAN" in plan and "COLLSCAN" not in plan and "'SORT'" not in plan, plan
        # A document changed or removed leaves the words' answers right (the FTS table follows by triggers).
        victim = expected[0]
        await db["docs"].replace_one({"_id": victim["_id"]}, {**victim, "ix_terms": " другое "})
        await db["docs"].delete_one({"_id": expected[-1]["_id"]})
        changed = [{**d, "ix_terms": " другое "} if d["_id"] == victim["_id"] else d for d in DOCS if d["_id"] != expected[-1]["_id"]]
        again = sorted((d for d in changed if _matches(d, query)), key=lambda d: d["ix_k"], reverse=True)
        assert [d["_id"] async for d in db["docs"].find(query).sort("ix_k", -1).limit(500)] == [d["_id"] for d in again]
        assert [d["_id"] async for d in db["docs"].find({"ix_terms": {"$regex": " друг"}})] == [victim["_id"]]
    finally:
        await client.drop_database(isolation.db("readpush"))
        await client.close()


async def test_a_search_reads_a_rare_words_rows_first_and_walks_the_index_for_a_common_one(endpoints, isolation):
    """A page of a common word walks the list index in order; a rare word (under 1,000 FTS rows) is read
    from its rows and sorted, so it does not walk the whole range: both answer as MongoDB does."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("readrare")]
    try:
        if not await is_ferretdb(db):
            pytest.skip("the ix_terms_fts index is the patched FerretDB's")
        docs = [{"_id": f"r{i:04d}", "ix_k": f"L:{i:05d}", "ix_terms": f" common {'rare ' if i % 700 == 3 else ''}n{i} "}
                for i in range(1500)]
        await db["docs"].create_index([("ix_k", 1)])
        await db["docs"].create_index([("ix_terms", 1)], name="ix_terms_fts")
        await db["docs"].insert_many(docs)
        for word, walks in (("common", True), ("rare", False), ("n14", False)):
            query = {"ix_k": {"$gt": "L:", "$lt": "L;"}, "$and": [{"ix_terms": {"$regex": f" {word}"}}]}
            expected = sorted((d for d in docs if f" {word}" in d["ix_terms"]), key=lambda d: d["ix_k"], reverse=True)
            for limit in (1, 5, 51):
                found = [d["_id"] async for d in db["docs"].find(query).sort("ix_k", -1).limit(limit)]
                assert found == [d["_id"] for d in expected[:limit]], (word, limit)
            plan = await db.command("explain", {"find": "docs", "filter": query, "sort": {"ix_k": -1}, "limit": 51})
            text = " ".join(plan["queryPlanner"]["Plan"])
            assert "VIRTUAL TABLE" in text and plan["limitPushdown"], text
            assert ("TEMP B-TREE" not in text and "USING INDEX" in text) is walks, (word, text)
    finally:
        await client.drop_database(isolation.db("readrare"))
        await client.close()


async def test_a_query_past_its_max_time_is_stopped_with_max_time_expired(endpoints, isolation):
    """Upstream FerretDB ignored maxTimeMS on count; a find interrupted inside SQLite said nothing useful."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("readpush")]
    try:
        # Enough text that matching a regex against every document takes far longer than 1 ms.
        await db["slow"].insert_many([{"_id": f"s{i}", "text": "ab" * 4000} for i in range(1500)])
        with pytest.raises(ExecutionTimeout):
            await db["slow"].find({"text": {"$regex": "(a|b)*c"}}).max_time_ms(1).to_list()
        with pytest.raises(ExecutionTimeout):
            await db.command({"count": "slow", "query": {"text": {"$regex": "(a|b)*c"}}, "maxTimeMS": 1})
        # The server is free again at once: the next query answers normally.
        assert await db["slow"].count_documents({"_id": "s1"}) == 1
    finally:
        await client.drop_database(isolation.db("readpush"))
        await client.close()
