"""Tasks stored as plain guarded fields and blobs, on the real database, beside tasks stored in the shape before.

A task written now keeps only what queries, lists and guards name as fields of their own; the rest of it
and its applied messages are blobs. A task written before (every field of its own, the applied messages
nested as ``_recent``) is still read by every query, still found by its applied messages, and takes the new
shape at its next change; the indexes only that shape used are dropped at start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from crmkit.applied import Applied
from crmkit.mongo import make_client
from services.activity import domain as d
from services.activity.repository import StoredTask, TaskRepository, task_document

NOW = datetime(2026, 3, 2, 12, 0, 0, 125000, tzinfo=UTC)
EVENT = {"topic": "crm.activity.events.v1", "message": '{"id":"e-1","data":{"title":"Позвонить \\"Ивану\\""}}', "key": ""}


def _task(task_id: str, **changes) -> d.Task:
    fields = dict(
        task_id=task_id, lead_id="L1", type="call", title=f"Позвонить {task_id}", start_at=NOW, due_at=NOW + timedelta(hours=2),
        assignee_id="bob", contact_id="c-1", comment="line\n\"quoted\"", created_at=NOW, updated_at=NOW, created_by="alice",
    )
    return d.Task(**{**fields, **changes})


def _old_document(task: d.Task, recent: list[Applied]) -> dict:
    """How the repository stored a task before the blobs: every field of its own, the applied messages nested."""
    keys = {name: value for name, value in task_document(task, []).items() if name.startswith("ix")}  # as they are
    return {**task.model_dump(), "_id": task.task_id, **keys, "_recent": [r.to_doc() for r in recent]}


@pytest.fixture
async def db(endpoints, isolation) -> AsyncIterator:
    client = make_client(endpoints.mongodb)
    name = isolation.db("taskdocs")
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_a_task_is_stored_as_its_guarded_fields_and_blobs_and_reads_back_equal(db):
    repo = TaskRepository(db)
    await repo.ensure_indexes()
    done = _task("T2", status="done", outcome="no_answer", completed_at=NOW + timedelta(minutes=5), completed_by="bob",
                 next_call_at=NOW + timedelta(days=1), version=2)
    tasks = [_task("T1"), done]
    recent = [Applied("m-1", [EVENT])]
    assert await repo.save_many([StoredTask(t, recent) for t in tasks], []) == set()

    doc = await db["tasks"].find_one({"_id": "T1"})
    assert set(doc) == {
        "_id", "version", "due_soon_notified", "overdue_notified", "lead_id", "status", "assignee_id", "cancelled_with_lead",
        "due_at", "ix_assignee_status", "ix_assignee", "ix_lead", "ix_status", "ix_all", "ix_due", "ixv", "blob",
        "recent_ids", "recent",
    }
    assert doc["recent_ids"] == ["m-1"] and "title" not in doc and "comment" not in doc
    stored = await repo.get_many(["T1", "T2"])
    assert {tid: s.task for tid, s in stored.items()} == {t.task_id: t for t in tasks}
    assert stored["T1"].recent == recent
    assert await repo.view("T2") == done
    assert sorted(s.task.task_id for s in await repo.applied("m-1", "L1")) == ["T1", "T2"]
    assert await repo.applied("m-2", "L1") == [] and await repo.applied("m-1", "L2") == []
    assert [s.task for s in await repo.of_lead("L1", "done")] == [done]
    found, _ = await repo.search(assignee_id="bob", status="open")
    assert found == [tasks[0]]


async def test_a_task_stored_before_the_blobs_is_read_found_and_rewritten_at_its_next_change(db):
    tasks = db["tasks"]
    # A database of the version before: its indexes, and a task in its shape.
    for keys in ([("status", 1), ("due_at", 1)], [("assignee_id", 1), ("due_at", 1)], [("due_at", 1), ("_id", 1)], [("_recent.id", 1)]):
        await tasks.create_index(keys)
    old = _task("T9")
    recent = [Applied("m-9", [EVENT])]
    await tasks.insert_one(_old_document(old, recent))
    repo = TaskRepository(db)
    await repo.ensure_indexes()
    assert not {"status_1_due_at_1", "assignee_id_1_due_at_1", "due_at_1__id_1", "_recent.id_1"} & set(await tasks.index_information())
    await repo.ensure_indexes()  # again, as a second instance starting: nothing left to drop

    stored = await repo.get_many(["T9"])
    assert stored["T9"].task == old and stored["T9"].recent == recent
    assert await repo.view("T9") == old
    assert [s.task for s in await repo.applied("m-9", "L1")] == [old]
    assert [t.task_id for t in await repo.open_of_leads(["L1"])] == ["T9"]
    found, _ = await repo.search(lead_id="L1")
    assert found == [old]

    changed = old.model_copy(update={"title": "Перезвонить", "version": 2, "updated_at": NOW + timedelta(minutes=1)})
    later = [*recent, Applied("m-10", [EVENT])]
    assert await repo.save_many([], [(StoredTask(changed, later), old)]) == set()
    doc = await tasks.find_one({"_id": "T9"})
    assert "_recent" not in doc and "title" not in doc and doc["recent_ids"] == ["m-9", "m-10"]
    assert (await repo.get_many(["T9"]))["T9"] == StoredTask(changed, later)
    assert [s.task for s in await repo.applied("m-9", "L1")] == [changed], "found by the ids kept beside the blob"
    # A replace guarded by the version read before loses to that change.
    assert await repo.save_many([], [(StoredTask(old, recent), old)]) == {"T9"}
