"""The patched FerretDB's cheaper updates: what they write and answer is what MongoDB writes and answers.

A stored document is encoded in one pass (crmctl/ferretdb_go/sjson_encode.go.txt), compared byte for
byte with upstream's encoder by a Go test in the patched module; here every awkward value goes in by
an insert, a $set and a replace and reads back as it was sent.
"""

from __future__ import annotations

import pytest
from bson.codec_options import CodecOptions

from crmkit.mongo import make_client
from tests.integration.test_ferretdb_decode import AWKWARD, run_patched_go_test


@pytest.fixture
async def col(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    collection = client[isolation.db("fastupdate")].get_collection("docs", CodecOptions(tz_aware=True))
    yield collection
    await client.close()


def test_the_one_pass_encoder_writes_the_bytes_upstreams_does():
    run_patched_go_test("sjson_encode", "CrmEncode")


async def test_awkward_values_read_back_after_an_insert_a_set_and_a_replace(col):
    await col.insert_one({"_id": "a", **AWKWARD})
    assert list((await col.find_one({"_id": "a"})).items()) == list({"_id": "a", **AWKWARD}.items())
    await col.update_one({"_id": "a"}, {"$set": {f"{k}_copy": v for k, v in AWKWARD.items()}})
    # (new fields land in lexicographic order, as MongoDB 5.0+ applies update operators)
    assert await col.find_one({"_id": "a"}) == {"_id": "a", **AWKWARD, **{f"{k}_copy": v for k, v in AWKWARD.items()}}
    await col.replace_one({"_id": "a"}, {"nested": AWKWARD})
    assert await col.find_one({"_id": "a"}) == {"_id": "a", "nested": AWKWARD}
