"""Documents read back exactly as stored, every BSON type the services use and the awkward ones around them.

The patched FerretDB decodes a stored document in one pass where it can and with upstream's decoder
where it cannot (crmctl/ferretdb_go/sjson_decode.go.txt): each kind of value below takes one of the two
paths, and a find, a sorted page and a find by ``_id`` must all give back what was inserted, field
order included. On MongoDB the same test holds. The decoder is also compared with upstream's on
documents and bytes a client cannot send (crmctl/ferretdb_go/sjson_decode_test.go.txt, run by Go in
the patched module the stack was built from).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from bson import Binary, Int64, ObjectId, Regex, Timestamp
from bson.codec_options import CodecOptions

from crmkit.mongo import make_client

AWKWARD = {
    "plain": "Иван Ёлкин ромашка",
    "escaped": 'quote " backslash \\ newline \n tab \t <html> & ',
    "control": "bell \x07 unit \x1f",
    "separators": "line \u2028 paragraph \u2029",
    "emoji": "😀 astral",
    "empty": "",
    "blob": bytes(range(256)) * 3,  # subtype 0 (pymongo reads it back as bytes)
    "empty_blob": b"",
    "uuid_blob": Binary(b"0123456789abcdef", 4),
    "int": 7, "int_min": -(2**31), "int_max": 2**31 - 1, "zero": 0,
    "long": Int64(2**62), "long_neg": Int64(-(2**40)),
    "double": 1.5, "double_int": 3.0, "tiny": 5e-324, "huge": -1.7e308,  # (FerretDB refuses infinities)
    "yes": True, "no": False, "nothing": None,
    "when": datetime(2026, 12, 1, 18, 0, 0, 123000, tzinfo=UTC), "before_1970": datetime(1969, 7, 20, 20, 17, tzinfo=UTC),
    "nested": {"title": "вложенный", "n": 1, "deeper": {"list": [1, "два", None, {"k": "v"}]}},
    "list": ["a", 2, 3.5, True, None, {}],  # (FerretDB refuses nested arrays)
    "empty_doc": {},
    "oid": ObjectId("5f1d7f0e8b3c2a1d4e5f6a7b"),
    "pattern": Regex("^a[}\\]]\"", "i"),
    "stamp": Timestamp(1700000000, 3),
    "ключ с пробелом": "value under a Cyrillic key",  # (FerretDB writes keys unescaped: no quote or backslash)
}


def _docs() -> list[dict]:
    docs = [{"_id": "whole", "ix_k": "k:0", **AWKWARD}]
    # One document per field too: each field alone takes its own decoding path.
    docs += [{"_id": f"only-{i:02d}", "ix_k": f"k:{i + 1:02d}", name: value} for i, value in enumerate(AWKWARD.values())
             for name in [list(AWKWARD)[i]]]
    return docs


async def test_every_value_reads_back_as_it_was_stored_by_id_by_range_and_sorted(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    db = client.get_database(isolation.db("decode"), codec_options=CodecOptions(tz_aware=True))
    docs = _docs()
    try:
        await db["docs"].create_index([("ix_k", 1)])
        await db["docs"].insert_many([dict(d) for d in docs])
        for doc in docs:
            found = await db["docs"].find_one({"_id": doc["_id"]})
            assert list(found.items()) == list(doc.items()), doc["_id"]
        page = [d async for d in db["docs"].find({"ix_k": {"$gt": "k:", "$lt": "k;"}}).sort("ix_k", -1).limit(len(docs))]
        assert [list(d.items()) for d in page] == [list(d.items()) for d in sorted(docs, key=lambda d: d["ix_k"], reverse=True)]
        every = {d["_id"]: d async for d in db["docs"].find({})}
        assert {k: list(v.items()) for k, v in every.items()} == {d["_id"]: list(d.items()) for d in docs}
        # A replaced document reads back as replaced (the stored shape changed, so its schema did).
        changed = {"_id": "whole", "ix_k": "k:0", "plain": None, "blob": "now a string", "list": {"now": "a document"}}
        await db["docs"].replace_one({"_id": "whole"}, changed)
        assert list((await db["docs"].find_one({"_id": "whole"})).items()) == list(changed.items())
    finally:
        await client.drop_database(isolation.db("decode"))
        await client.close()


def run_patched_go_test(fragment: str, pattern: str) -> None:
    """Run a Go test of crmctl/ferretdb_go (``fragment``) in the sjson package of the patched module this stack was built from."""
    from crmctl.stack import ROOT

    module = ROOT / ".run" / "build" / "ferretdb" / "FerretDB"
    go = shutil.which("go")
    if go is None or not (module / "internal" / "handler" / "sjson" / "sjson.go").exists():
        pytest.skip("needs Go and the patched FerretDB module this stack was built from")
    test_file = module / "internal" / "handler" / "sjson" / f"crm_{fragment}_test.go"
    shutil.copyfile(ROOT / "crmctl" / "ferretdb_go" / f"{fragment}_test.go.txt", test_file)
    try:
        run = subprocess.run(
            [go, "test", "-count=1", "-run", pattern, "./internal/handler/sjson/"], cwd=module,
            env={**os.environ, "CGO_ENABLED": "0"}, capture_output=True, text=True, timeout=600,
        )
    finally:
        test_file.unlink(missing_ok=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_one_pass_decoder_answers_and_refuses_as_upstreams_does():
    run_patched_go_test("sjson_decode", "CrmDecode")
