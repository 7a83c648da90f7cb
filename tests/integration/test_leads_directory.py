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


async def test_instances_starting_together_record_the_migration_once(endpoints, isolation):
    # Three leads processes starting at once on a fresh database raised DuplicateKeyError here
    # (an unretrieved background-task exception).
    import asyncio

    from services.leads.repository import LeadsMeta

    client = make_client(endpoints.mongodb)
    try:
        meta = LeadsMeta(client[isolation.db("leads")])
        await asyncio.gather(*(meta.set_read_fields_version(1) for _ in range(8)))
        assert await meta.read_fields_version() == 1
    finally:
        await client.close()
