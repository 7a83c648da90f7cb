"""The patched FerretDB's `$or` pushdown and its covered reads: answers as MongoDB gives them, plans on the indexes.

A find whose filter the backend pushes down exactly is not filtered again in Go, and with a projection
of plain top-level fields that keeps ``_id`` each row is decoded as just those fields (the leads'
duplicate lookup). Every answer here is checked against the filter and projection evaluated in Python
over the same documents, field order included, for filters pushed down exactly, as a superset, and
not at all.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from bson import ObjectId

from crmkit.mongo import is_ferretdb, make_client

OID = ObjectId("6b0f8d4f7e5973495716b0ec")
WHEN = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DOCS = [
    {"_id": "a", "ix_a": "x", "n": None, "sub": {"q": 1, "r": [1, "s"]}, "num": 5, "blob": b"\x00\x01" * 300, "z": "last"},
    {"_id": OID, "ix_a": "x", "ix_b": "k1", "num": 2.5, "at": WHEN},
    {"_id": "c", "ix_b": "k2", "n": None, "tags": ["t1", "t2"]},
    {"_id": "d", "other": 1, "ix_b": "k3"},
    {"_id": "e", "ix_a": "y", "ix_b": "k1", "z": "e"},
] + [{"_id": f"f{i:02d}", "ix_a": f"v{i % 7}", "ix_b": f"k{i % 5}", "num": i} for i in range(40)]

FILTERS = [
    {"ix_a": "x"},
    {"ix_a": {"$in": ["x", "y", "v3"]}},
    {"$or": [{"ix_a": {"$in": ["y", "v1"]}}, {"ix_b": {"$in": ["k2", "k3"]}}]},  # exact: each branch an index range
    {"$or": [{"ix_b": "k1"}, {"_id": {"$in": ["a", "f05"]}}]},
    {"$or": [{"ix_a": "x"}, {"num": 5}]},  # a branch not pushed down: the whole `$or` is the handler's
    {"$or": [{"ix_a": "v2"}, {"other": "1"}]},  # a superset branch (a plain field may hold an array)
    {"ix_b": "k1", "$or": [{"ix_a": "x"}, {"ix_a": "y"}]},
    {"_id": "a", "sub.q": 1},  # the backend is given the filter without its dotted key
    {"_id": {"$in": ["a", "c"]}, "sub.q": 2},  # ... so what it finds is filtered again: nothing matches
]
PROJECTIONS = [
    None, {"ix_a": 1}, {"ix_a": 1, "ix_b": 1, "z": 1}, {"_id": 1}, {"n": True, "sub": 1, "at": 1},
    {"missing": 1}, {"_id": 0, "ix_a": 1, "num": 1}, {"sub.q": 1}, {"blob": 0, "sub": 0},
]


def _equal(value, wanted) -> bool:
    if isinstance(wanted, dict):
        return any(_equal(value, w) for w in wanted["$in"])
    return value == wanted or (isinstance(value, list) and wanted in value)


def _matches(doc: dict, flt: dict) -> bool:
    for key, wanted in flt.items():
        if key == "sub.q":
            if doc.get("sub", {}).get("q") != wanted:
                return False
        elif key == "$or":
            if not any(_matches(doc, alt) for alt in wanted):
                return False
        elif key not in doc or not _equal(doc[key], wanted):
            return False
    return True


def _projected(doc: dict, projection: dict | None) -> dict:
    if not projection:
        return doc
    if all(not v for k, v in projection.items()):
        return {k: v for k, v in doc.items() if k not in projection}
    keep_id = projection.get("_id", 1)
    out = {}
    for key, value in doc.items():
        if key == "_id" and keep_id:
            out[key] = value
        elif projection.get(key):
            out[key] = value
        elif key == "sub" and "sub.q" in projection:
            out[key] = {"q": value["q"]}
    return out


def _items(doc: dict) -> list:
    return list(doc.items())


def _text(items: list) -> str:
    return json.dumps(items, default=lambda v: v.isoformat() if isinstance(v, dt.datetime) else repr(v))


@pytest.mark.parametrize("projection", PROJECTIONS, ids=[json.dumps(p) for p in PROJECTIONS])
async def test_or_filters_and_projections_answer_as_mongodb_does(endpoints, isolation, projection):
    client = make_client(endpoints.mongodb)
    collection = client[isolation.db("covered")]["docs"]
    try:
        await collection.create_index("ix_a")
        await collection.create_index("ix_b")
        await collection.insert_many([dict(d) for d in DOCS])
        for flt in FILTERS:
            found = [d async for d in collection.find(flt, projection)]
            expected = [_projected(d, projection) for d in DOCS if _matches(d, flt)]
            assert expected or "sub.q" in flt, flt  # every filter above but the last matches something
            # Field order too: a covered row keeps the stored document's order.
            assert sorted(map(_items, found), key=_text) == sorted(map(_items, expected), key=_text), (flt, projection)
    finally:
        await client.drop_database(isolation.db("covered"))
        await client.close()


async def test_an_or_of_indexed_branches_is_read_from_their_indexes(endpoints, isolation):
    """Without the `$or` pushdown the duplicate check's one lookup for three key kinds scanned every lead."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("covered")]
    try:
        if not await is_ferretdb(db):
            pytest.skip("the query plan checked here is FerretDB's")
        await db["docs"].create_index("ix_a")
        await db["docs"].create_index("ix_b")
        await db["docs"].insert_many([dict(d) for d in DOCS])
        plans = {}
        for name, flt in (("indexed", FILTERS[2]), ("with _id", FILTERS[3]), ("one branch not pushed", FILTERS[4])):
            explained = await db.command("explain", {"find": "docs", "filter": flt, "projection": {"ix_a": 1, "ix_b": 1}})
            plans[name] = (explained["filterPushdown"], " ".join(explained["queryPlanner"]["Plan"]))
        for name in ("indexed", "with _id"):
            pushed, plan = plans[name]
            assert pushed and "MULTI-INDEX OR" in plan and "SCAN docs" not in plan.replace('"', ""), plans[name]
        assert plans["one branch not pushed"][0] is False and "SCAN" in plans["one branch not pushed"][1]
    finally:
        await client.drop_database(isolation.db("covered"))
        await client.close()
