"""Task and deal lists on the real database: every filter, paged by cursor, equals a scan; plans use one index.

The tasks and deals are written through the services' own repositories (inserts and the guarded
replaces the handlers use), then each list is compared with the same question answered in Python
over every stored document.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from crmkit.mongo import is_ferretdb, make_client
from pymongo import ASCENDING, DESCENDING
from services.activity.domain import Task
from services.activity.repository import TaskRepository
from services.qualification.domain import Deal
from services.qualification.repository import UNUSED_INDEXES, DealRepository, deal_list_keys, ensure_indexes

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _order(item_at: datetime, item_id: str):
    return (item_at.replace(microsecond=item_at.microsecond // 1000 * 1000), item_id.encode().hex())


async def _all_pages(call, limit):
    found, cursor = [], None
    while True:
        page, cursor = await call(cursor=cursor, limit=limit)
        assert len(page) <= limit
        found += page
        if cursor is None:
            return found


async def test_task_lists_equal_a_scan_through_changes(endpoints, isolation):
    rnd = random.Random(5)
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("activity")]
    try:
        repo = TaskRepository(db)
        await repo.ensure_indexes()
        tasks: dict[str, Task] = {}
        for i in range(70):
            due = T0 + timedelta(minutes=rnd.randrange(0, 3 * 24 * 60), microseconds=rnd.randrange(1000))
            task = Task(
                task_id=f"T{i:02d}", lead_id=f"L{i % 6}", type="call", title=f"Task {i}", start_at=due - timedelta(hours=1),
                due_at=due if i % 9 else T0 + timedelta(hours=5), assignee_id=["ann", "bob", "cid"][i % 3],
                created_at=T0, updated_at=T0,
            )
            assert await repo.insert(task, [])
            tasks[task.task_id] = task
        # Changes through the guarded replace: done, cancelled, reassigned, moved in time.
        for i in rnd.sample(range(70), 25):
            old = tasks[f"T{i:02d}"]
            change = rnd.choice([
                {"status": "done"}, {"status": "cancelled"}, {"assignee_id": "dan"},
                {"due_at": old.due_at + timedelta(hours=rnd.randrange(-30, 30))},
            ])
            new = old.model_copy(update={**change, "version": old.version + 1})
            assert await repo.replace(new, old, [])
            tasks[new.task_id] = new

        def expected(lead_id=None, assignee_id=None, status=None, due_before=None, due_from=None):
            found = [
                t for t in tasks.values()
                if (not lead_id or t.lead_id == lead_id) and (not assignee_id or t.assignee_id == assignee_id)
                and (not status or t.status == status) and (due_before is None or t.due_at < due_before)
                and (due_from is None or t.due_at >= due_from)
            ]
            return [t.task_id for t in sorted(found, key=lambda t: _order(t.due_at, t.task_id))]

        day = T0 + timedelta(days=1)
        questions = [
            {}, {"lead_id": "L2"}, {"lead_id": "L3", "status": "open"}, {"assignee_id": "bob"},
            {"assignee_id": "ann", "status": "open", "due_before": day},  # a day plan's overdue part
            {"assignee_id": "cid", "due_from": day, "due_before": day + timedelta(days=1)},  # its today part
            {"status": "done"}, {"due_before": T0 + timedelta(hours=5)}, {"assignee_id": "dan", "lead_id": "L1"},
        ]
        for question in questions:
            for limit in (4, 500):
                found = await _all_pages(lambda **kw: repo.search(**question, **kw), limit)
                assert [t.task_id for t in found] == expected(**question), (question, limit)
            assert expected(**question), question  # each question has an answer
        if await is_ferretdb(db):
            query = {"ix_assignee_status": {"$gt": "", "$lt": "~"}}
            plan = await db.command("explain", {"find": "tasks", "filter": query, "sort": {"ix_assignee_status": 1}, "limit": 5})
            text = " ".join(plan["queryPlanner"]["Plan"])
            assert "USING INDEX" in text and "TEMP B-TREE" not in text and plan["limitPushdown"], text
    finally:
        await client.drop_database(isolation.db("activity"))
        await client.close()


async def test_deal_lists_equal_a_scan(endpoints, isolation):
    rnd = random.Random(9)
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("qualification")]
    try:
        await ensure_indexes(db)
        repo = DealRepository(db)
        deals = []
        for i in range(40):
            deal = Deal(
                deal_id=f"D{i:02d}", lead_id=f"L{i % 5}", company_id="C", title=f"Deal {i}", responsible_id="bob",
                deal_pipeline_id="sales", created_at=T0 + timedelta(seconds=rnd.randrange(100), microseconds=rnd.randrange(999)),
            )
            await repo.create(deal)
            await repo.create(deal)  # a repeated step stores it once
            deals.append(deal)
        for lead_id in (None, "L3"):
            want = [d.deal_id for d in sorted(deals, key=lambda d: _order(d.created_at, d.deal_id), reverse=True)
                    if lead_id is None or d.lead_id == lead_id]
            for limit in (3, 200):
                found = await _all_pages(lambda **kw: repo.list(lead_id=lead_id, **kw), limit)
                assert [d.deal_id for d in found] == want, (lead_id, limit)
    finally:
        await client.drop_database(isolation.db("qualification"))
        await client.close()


async def test_deals_stored_before_the_blob_are_read_and_listed_beside_new_ones(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("qualification")]
    try:
        await ensure_indexes(db)
        repo = DealRepository(db)
        old = Deal(deal_id="D-old", lead_id="L1", company_id="C", title="Older", responsible_id="bob", deal_pipeline_id="sales",
                   contact={"name": "Иван"}, products=[{"product_id": "P1", "quantity": 2}], created_at=T0)
        new = Deal(deal_id="D-new", lead_id="L1", company_id="C", title="Newer", responsible_id="bob", deal_pipeline_id="sales",
                   created_at=T0 + timedelta(seconds=1))
        # The shape an earlier version wrote: every field of the deal in the document.
        await db["deals"].insert_one({**old.model_dump(), "_id": old.deal_id, **deal_list_keys(old)})
        await repo.create(new)

        assert await repo.get("D-old") == old and await repo.get("D-new") == new
        assert (await repo.list(lead_id="L1")) == ([new, old], None)
        assert await repo.count(lead_id="L1") == 2
    finally:
        await client.drop_database(isolation.db("qualification"))
        await client.close()


async def test_qualification_drops_the_indexes_no_query_reads(endpoints, isolation):
    """A database an older version indexed loses the four unused indexes, even with two instances starting at once."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("qualification")]
    try:
        await db["deals"].create_index([("lead_id", ASCENDING)])
        await db["deals"].create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await db["companies"].create_index([("lead_id", ASCENDING)])
        await db["leads"].create_index([("pipeline_id", ASCENDING)])
        for collection, names in UNUSED_INDEXES.items():
            assert set(names) <= set(await db[collection].index_information())

        await asyncio.gather(ensure_indexes(db), ensure_indexes(db))

        assert set(await db["deals"].index_information()) == {"_id_", "ix_all_1", "ix_lead_1"}
        assert set(await db["companies"].index_information()) == {"_id_"}
        assert set(await db["leads"].index_information()) == {"_id_"}
        await ensure_indexes(db)  # nothing left to drop: a no-op, not an error
    finally:
        await client.drop_database(isolation.db("qualification"))
        await client.close()
