"""Upstream records in the leads service: a batch retried after its refresh commands failed sends them again."""

from __future__ import annotations

from crmkit.mongo import make_client
from services.leads.repository import DirectoryRepository


async def test_a_repeated_version_is_fanned_out_again_and_only_a_stale_one_is_not(endpoints, isolation):
    # Before: the retry of a batch whose refresh commands were not published (a broker outage, a
    # missing ACL) found the record stored, counted it "repeated", and the linked leads' snapshots
    # were never refreshed.
    client = make_client(endpoints.mongodb)
    try:
        directory = DirectoryRepository(client[isolation.db("leads")])
        record = {"contact_id": "K-1", "name": "Мария", "version": 2}
        assert await directory.upsert("contact", "K-1", 2, record) is True
        assert await directory.upsert("contact", "K-1", 2, record) is True  # the retried batch: send again
        assert await directory.upsert("contact", "K-1", 1, {**record, "name": "old", "version": 1}) is False  # stale
        assert (await directory.get_many("contact", ["K-1"]))["K-1"]["name"] == "Мария"
        assert await directory.upsert("contact", "K-1", 3, {**record, "name": "Мария С.", "version": 3}) is True
        assert (await directory.get_many("contact", ["K-1"]))["K-1"]["name"] == "Мария С."
    finally:
        await client.close()
