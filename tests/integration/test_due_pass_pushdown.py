"""The activity due pass on the real database: one range of ``ix_due`` up to now, answering as the scan of every open task did.

Tasks of every status and notice state, due long ago, within the due-soon window and later: the
pass's candidates are exactly the tasks the domain's ``due_notice`` would announce, soonest notice
first, before and after notices are claimed, for tasks stored before the key (the start-up migration),
and the query is served from the key's index (SQLite's plan on FerretDB, ``explain`` on MongoDB).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmkit.mongo import is_ferretdb, make_client
from services.activity import domain as d
from services.activity.repository import TaskRepository, task_document

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _tasks() -> list[d.Task]:
    out = []
    offsets = [-72, -25, -1, 1, 5, 23, 25, 72]  # hours from NOW
    flags = [(False, False), (True, False), (True, True)]
    for i, hours in enumerate(offsets * 3):
        soon, overdue = flags[i // len(offsets)]
        due = NOW + timedelta(hours=hours, minutes=i)
        out.append(d.Task(
            task_id=f"T{i:03d}", lead_id=f"L{i % 4}", type="call", title=f"Call {i}", start_at=due - timedelta(hours=1),
            due_at=due, assignee_id="bob", status=["open", "open", "done"][i % 3] if i % 5 else "cancelled",
            due_soon_notified=soon, overdue_notified=overdue, created_at=NOW, updated_at=NOW,
        ))
    return out


def _expected(tasks: list[d.Task], now: datetime) -> list[str]:
    due = [t for t in tasks if d.due_notice(t, now) is not None]
    return [t.task_id for t in sorted(due, key=lambda t: (d.next_notice_at(t), t.task_id))]


async def test_due_candidates_are_one_index_range_and_equal_the_scan(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("duepass")]
    try:
        repo = TaskRepository(db)
        await repo.ensure_indexes()
        tasks = _tasks()
        # Stored as a database from before the key: the pass falls back to the scan until migrated.
        await db["tasks"].insert_many([{k: v for k, v in task_document(t, []).items() if k not in ("ix_due", "ixv")} for t in tasks])
        assert await repo.list_keys_stale()
        expected = _expected(tasks, NOW)
        assert expected and len(expected) < len([t for t in tasks if t.is_open])  # some open tasks are not due
        scanned = await repo.due_candidates(NOW, NOW + d.DUE_SOON_WITHIN, 1000)
        assert sorted(t.task_id for t in scanned) == sorted(expected)

        assert await repo.migrate_list_keys() == len(tasks)
        await repo.mark_list_keys_done()
        assert [t.task_id for t in await repo.due_candidates(NOW, NOW + d.DUE_SOON_WITHIN, 1000)] == expected
        assert [t.task_id for t in await repo.due_candidates(NOW, NOW + d.DUE_SOON_WITHIN, 3)] == expected[:3]

        # Claimed notices move a task to its next moment (overdue) or out of the range for good.
        by_id = {t.task_id: t for t in tasks}
        for task_id in expected[:4]:
            task = by_id[task_id]
            notice = d.due_notice(task, NOW)
            await repo.claim_notice(task, notice.due_soon_notified, notice.overdue_notified, f"n-{task_id}", "{}", NOW)
            by_id[task_id] = task.model_copy(update={"due_soon_notified": notice.due_soon_notified, "overdue_notified": notice.overdue_notified})
        later = NOW + timedelta(hours=2)
        assert [t.task_id for t in await repo.due_candidates(later, later + d.DUE_SOON_WITHIN, 1000)] == _expected(list(by_id.values()), later)

        query = {"ix_due": {"$gt": ":", "$lt": ":" + "9" * 13}}
        if await is_ferretdb(db):
            plan = await db.command("explain", {"find": "tasks", "filter": query, "sort": {"ix_due": 1}, "limit": 5})
            text = " ".join(plan["queryPlanner"]["Plan"])
            assert "USING INDEX" in text and "ix_due" in text and "TEMP B-TREE" not in text, text
            assert plan["sortPushdown"] and plan["limitPushdown"]
        else:
            plan = str((await db["tasks"].find(query).sort("ix_due", 1).limit(5).explain())["queryPlanner"]["winningPlan"])
            assert "IXSCAN" in plan and "COLLSCAN" not in plan and "'SORT'" not in plan, plan
    finally:
        await client.drop_database(isolation.db("duepass"))
        await client.close()
