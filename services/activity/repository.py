"""Where tasks and task types live in MongoDB; with projection.py, the only modules that know document shapes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


from crmkit import blobs, listkeys
from crmkit.applied import Applied, applied_for, kept
from crmkit.mongo import IDS_PER_QUERY, drop_indexes, ensure_indexes, find_by_ids, insert_new
from pymongo import ASCENDING, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.activity.domain import Task, next_notice_at

# A task's applied messages, each with what it published: {"topic": ..., "message": serialized envelope}.
Recent = Applied


@dataclass
class StoredTask:
    task: Task
    recent: list[Applied[dict[str, str]]]

    def recent_for(self, message_id: str) -> Applied[dict[str, str]] | None:
        return applied_for(self.recent, message_id)


@dataclass
class Owed:
    """A due-time notice claimed by this instance and not yet confirmed published."""

    task_id: str
    notice_id: str
    message: str


# The lists of GET /tasks and /my-day, soonest due first: one indexed key per way of filtering them
# (crmkit/listkeys.py), so a page is one range of one index on MongoDB and on the patched FerretDB.
TASK_LISTS = ("assignee_status", "assignee", "lead", "status", "all")
LIST_KEYS_VERSION = 2  # 2: ix_due


def _list_values(task: Task) -> dict[str, tuple[str, ...] | None]:
    return {
        "assignee_status": (task.assignee_id, task.status) if task.assignee_id else None,
        "assignee": (task.assignee_id,) if task.assignee_id else None,
        "lead": (task.lead_id,) if task.lead_id else None,
        "status": (task.status,),
        "all": (),
    }


def _list_keys(task: Task) -> dict[str, Any]:
    tail = listkeys.key_tail(task.due_at, task.task_id)  # every list sorts by due time: one tail for all
    keys: dict[str, Any] = {
        f"ix_{name}": listkeys.prefix(*values) + tail if values is not None else None
        for name, values in _list_values(task).items()
    }
    return {**keys, "ix_due": _due_key(task), "ixv": LIST_KEYS_VERSION}


def _due_key(task: Task) -> str | None:
    """The due pass's key: open tasks with a notice to come, by the moment it falls due (None: no notice
    left), so a pass reads one index range up to now instead of every open task."""
    at = next_notice_at(task)
    return listkeys.key((), at, task.task_id) if at is not None else None


# A task is stored as the fields a query, a list or a guard names, plain, and the rest of it as one JSON
# blob; its applied messages (the events each published, ~1 KB a create) as another, so that reading a
# task for a list or a card leaves them out. FerretDB turns every BSON field into JSON and back on each
# write: with every field of its own and the applied messages nested, a task cost it 180-197 µs of CPU
# inserted, as blobs 152-161, and 130-140 without the four indexes only that shape used (5,000 tasks of
# bench_flow, four rounds alternated, AMD EPYC machine). The document:
#
#   _id, version, due_soon_notified,     the task id and what every replace is guarded by (the due pass
#   overdue_notified                     sets the two flags alone)
#   lead_id, status, assignee_id,        what queries filter on (a lead's tasks, a list's other filters,
#   cancelled_with_lead, due_at          a lead restored, the due notice's guard)
#   ix_<list>, ix_due, ixv               the list keys and the due pass's key (crmkit/listkeys.py)
#   blob                                 every other field of the task (crmkit.blobs.pack)
#   recent_ids, recent                   the applied messages' ids, and the messages with what each published
#
# Tasks written before (every field of its own, the applied messages as ``_recent``) are still read, and
# take this shape at their next change.
_PLAIN = ("version", "due_soon_notified", "overdue_notified", "lead_id", "status", "assignee_id", "cancelled_with_lead", "due_at")
_APPLIED = ("recent", "recent_ids", "_recent")  # left out where only the task is read
_NO_APPLIED = dict.fromkeys(_APPLIED, 0)


def task_document(task: Task, recent: Sequence[Recent]) -> dict[str, Any]:
    values = task.model_dump(exclude={"task_id"})
    doc: dict[str, Any] = {"_id": task.task_id, **{name: values.pop(name) for name in _PLAIN}, **_list_keys(task)}
    doc["blob"] = blobs.pack(values)
    doc["recent_ids"] = [r.message_id for r in recent]
    doc["recent"] = blobs.pack([r.to_doc() for r in recent])
    return doc


def _stored_from(doc: dict[str, Any]) -> StoredTask:
    applied = blobs.unpack(doc["recent"]) if "recent" in doc else doc.get("_recent") or []
    return StoredTask(_task_from(doc), [Applied.from_doc(r) for r in applied])


def _task_from(doc: dict[str, Any]) -> Task:
    if "blob" in doc:
        return Task.model_validate({**blobs.unpack(doc["blob"]), **{name: doc[name] for name in _PLAIN}, "task_id": doc["_id"]})
    return Task.model_validate({k: v for k, v in doc.items() if k not in _APPLIED and k != "_id" and not k.startswith("ix")})


def _expected(task: Task) -> dict[str, Any]:
    """The filter that matches the document exactly as `task` was read (the pass's flags included)."""
    return {
        "_id": task.task_id,
        "version": task.version,
        "due_soon_notified": task.due_soon_notified,
        "overdue_notified": task.overdue_notified,
    }


# Indexes an earlier version made that no query reads now: dropped at start. The first three served the due pass
# before its key (ix_due), which runs the old query only until the start-up migration has keyed every task;
# the applied messages' ids are looked up only among one lead's tasks, read by ``lead_id``.
_UNUSED_INDEXES = ("status_1_due_at_1", "assignee_id_1_due_at_1", "due_at_1__id_1", "_recent.id_1")

_KEYED = {"assignee_status": ("assignee_id", "status"), "assignee": ("assignee_id",), "lead": ("lead_id",),
          "status": ("status",), "all": ()}


class TaskRepository:
    """Tasks with their per-task record of recently applied messages (for exactly-once effects)."""

    def __init__(self, db: AsyncDatabase, recent_kept: int = 8) -> None:
        self._col = db["tasks"]
        self._notices = db["due_notices"]
        self._recent_kept = recent_kept
        self._meta = db["activity_meta"]
        self._keys_current = False  # every stored task has the current list keys (ix_due included)

    async def list_keys_stale(self) -> bool:
        """Whether stored tasks may lack their list keys (a database from before them)."""
        doc = await self._meta.find_one({"_id": "list_keys"})
        self._keys_current = bool(doc) and doc.get("version", 0) >= LIST_KEYS_VERSION
        return not self._keys_current

    async def mark_list_keys_done(self) -> None:
        await self._meta.update_one({"_id": "list_keys"}, {"$set": {"version": LIST_KEYS_VERSION}}, upsert=True)
        self._keys_current = True

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self._col,
            [
                IndexModel([("lead_id", ASCENDING), ("status", ASCENDING)]),
                *[IndexModel([(f"ix_{name}", ASCENDING)], name=f"ix_{name}_1") for name in (*TASK_LISTS, "due")],
            ]
        )
        await drop_indexes(self._col, _UNUSED_INDEXES)
        await ensure_indexes(self._notices, [IndexModel([("settled", ASCENDING), ("at", ASCENDING)])])

    async def get(self, task_id: str) -> StoredTask | None:
        doc = await self._col.find_one({"_id": task_id})
        return _stored_from(doc) if doc else None

    async def get_many(self, task_ids: Iterable[str]) -> dict[str, StoredTask]:
        """The stored tasks among ``task_ids``, in one read."""
        ids = sorted(set(task_ids))
        if not ids:
            return {}
        return {doc["_id"]: _stored_from(doc) for doc in await find_by_ids(self._col, ids)}

    async def save_many(self, new: Sequence[StoredTask], changed: Sequence[tuple[StoredTask, Task]]) -> set[str]:
        """Insert the new tasks and replace the changed ones (each `(as it is now, as it was read)`), one request
        each; the ids of the tasks someone else stored or changed meanwhile (read them again)."""
        lost = {new[i].task.task_id for i in await insert_new(self._col, [self._doc(s) for s in new])}
        if not changed:
            return lost
        ops = [ReplaceOne(_expected(expected), self._doc(now)) for now, expected in changed]
        result = await self._col.bulk_write(ops, ordered=False)
        if result.matched_count < len(ops):
            # Which ones missed their guard: a task is ours if it holds what this batch wrote.
            stored = await self.get_many(now.task.task_id for now, _ in changed)
            for now, _ in changed:
                found = stored.get(now.task.task_id)
                ours = found is not None and found.task.version == now.task.version and (
                    found.recent and now.recent and found.recent[-1].message_id == now.recent[-1].message_id
                )
                if not ours:
                    lost.add(now.task.task_id)
        return lost

    async def insert_follow_ups(self, calls: Sequence[Task]) -> list[Task]:
        """Store the calls `no_answer`s scheduled, those not stored yet; each call as it is stored now
        (a replay finds the earlier ones there, maybe changed since)."""
        there = await insert_new(self._col, [task_document(c, []) for c in calls])
        stored = await self.get_many(calls[i].task_id for i in there)
        return [stored[c.task_id].task if i in there and c.task_id in stored else c for i, c in enumerate(calls)]

    def _doc(self, stored: StoredTask) -> dict[str, Any]:
        return task_document(stored.task, kept(stored.recent, self._recent_kept))

    async def view(self, task_id: str) -> Task | None:
        doc = await self._col.find_one({"_id": task_id}, _NO_APPLIED)
        return _task_from(doc) if doc else None

    async def insert(self, task: Task, recent: Sequence[Recent]) -> bool:
        """Store a new task; False when a task with this id exists already."""
        try:
            await self._col.insert_one(task_document(task, kept(recent, self._recent_kept)))
        except DuplicateKeyError:
            return False
        return True

    async def replace(self, task: Task, expected: Task, recent: Sequence[Recent]) -> bool:
        """Store a change of `expected`; False when anyone (a command, the due pass) changed it since it was read."""
        result = await self._col.replace_one(_expected(expected), task_document(task, kept(recent, self._recent_kept)))
        return result.matched_count == 1

    async def applied(self, message_id: str, lead_id: str) -> list[StoredTask]:
        """Tasks of a lead that a message already changed."""
        query = {"lead_id": lead_id, "$or": [{"recent_ids": message_id}, {"_recent.id": message_id}]}  # _recent: written before
        return [_stored_from(d) async for d in self._col.find(query)]

    async def of_lead(self, lead_id: str, status: str, *, cancelled_with_lead: bool | None = None) -> list[StoredTask]:
        query: dict[str, Any] = {"lead_id": lead_id, "status": status}
        if cancelled_with_lead is not None:
            query["cancelled_with_lead"] = cancelled_with_lead
        return [_stored_from(d) async for d in self._col.find(query)]

    async def open_of_leads(self, lead_ids: Iterable[str]) -> list[Task]:
        ids = sorted(set(lead_ids))
        if not ids:
            return []
        found: list[Task] = []
        for start in range(0, len(ids), IDS_PER_QUERY):  # each an `$in` the patched FerretDB serves from its index
            query = {"lead_id": {"$in": ids[start:start + IDS_PER_QUERY]}, "status": "open"}
            found.extend([_task_from(d) async for d in self._col.find(query, _NO_APPLIED)])
        return found

    async def search(
        self,
        *,
        lead_id: str | None = None,
        assignee_id: str | None = None,
        status: str | None = None,
        due_before: datetime | None = None,
        due_from: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Task], str | None]:
        """Tasks matching every filter given, soonest due first, and the cursor of the next page.

        One range of one list key (the most selective filter given), the due bounds and the cursor
        being ends of that range; the other filters are checked on its rows.
        """
        given = {"lead_id": lead_id, "assignee_id": assignee_id, "status": status}
        plain = {k: v for k, v in given.items() if v}
        values = {
            "assignee_status": (assignee_id, status) if assignee_id and status else None,
            "assignee": (assignee_id,) if assignee_id else None,
            "lead": (lead_id,) if lead_id else None,
            "status": (status,) if status else None,
        }
        name, keyed = next(((n, values[n]) for n in TASK_LISTS[:-1] if values[n]), ("all", ()))
        after = listkeys.check_cursor(cursor) if cursor else None
        field_name = f"ix_{name}"
        query: dict[str, Any] = {
            field_name: listkeys.bounds(
                keyed, above=after, at_least=listkeys.millis(due_from, ceil=True) if due_from else None,
                below=listkeys.millis(due_before, ceil=True) if due_before else None,
            ),
            **{k: v for k, v in plain.items() if k not in _KEYED[name]},
        }
        docs = [d async for d in self._col.find(query, _NO_APPLIED).sort(field_name, ASCENDING).limit(limit + 1)]
        page = docs[:limit]
        next_cursor = listkeys.tail(page[-1][field_name]) if len(docs) > limit else None
        # A hash shared by two values would let a stranger into the range: checked here.
        return [_task_from(d) for d in page if all(d.get(k) == v for k, v in plain.items())], next_cursor

    async def migrate_list_keys(self, batch: int = 500) -> int:
        """Write the list keys of tasks stored without them; guarded by the version read. Run once."""
        done = 0
        ops: list[Any] = []
        async for doc in self._col.find({"ixv": {"$ne": LIST_KEYS_VERSION}}, _NO_APPLIED):
            task = _task_from(doc)
            ops.append(UpdateOne({"_id": doc["_id"], "version": doc["version"]}, {"$set": _list_keys(task)}))
            if len(ops) >= batch:
                done += (await self._col.bulk_write(ops, ordered=False)).modified_count
                ops = []
        if ops:
            done += (await self._col.bulk_write(ops, ordered=False)).modified_count
        return done

    # --- the due pass -------------------------------------------------------------------------

    async def due_candidates(self, now: datetime, soon: datetime, limit: int) -> list[Task]:
        """Open tasks with an unannounced moment: due before `soon` and not flagged, or past due and not flagged.

        One range of ``ix_due`` up to now, in its index's order, with the limit in SQL; until every stored
        task has that key (the start-up migration), the scan of every open task it replaces.
        """
        if self._keys_current or not await self.list_keys_stale():
            bound = listkeys.bounds((), below=listkeys.millis(now, ceil=True))
            cursor = self._col.find({"ix_due": bound}, _NO_APPLIED).sort("ix_due", ASCENDING).limit(limit)
            return [_task_from(d) async for d in cursor]
        query = {
            "status": "open",
            "overdue_notified": False,
            "$or": [{"due_soon_notified": False, "due_at": {"$lt": soon}}, {"due_at": {"$lt": now}}],
        }
        cursor = self._col.find(query, _NO_APPLIED).sort([("due_at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
        return [_task_from(d) async for d in cursor]

    async def claim_notice(
        self, task: Task, due_soon_notified: bool, overdue_notified: bool, notice_id: str, message: str, at: datetime
    ) -> bool:
        """Claim a due-time notice for this instance (one winner), owing it until settled; then flag the task.

        The claim is an insert under the notice's deterministic id, not a conditional update of the task:
        a unique key is one winner on every backend (upstream FerretDB matched a filtered update outside
        its write transaction, so two writers could both win; the local build's write patches closed
        that, crmctl/ferretdb_writes.py, but the claim does not depend on them). The flags on the task
        only keep the next passes from looking at it again.
        """
        try:
            await self._notices.insert_one(
                {"_id": notice_id, "task_id": task.task_id, "message": message, "at": at, "settled": False}
            )
            claimed = True
        except DuplicateKeyError:
            claimed = False  # another instance (or an earlier pass) has it; the flags may still lag behind
        flagged = task.model_copy(update={"due_soon_notified": due_soon_notified, "overdue_notified": overdue_notified})
        await self._col.update_one(
            {**_expected(task), "status": "open", "due_at": task.due_at},
            {"$set": {"due_soon_notified": due_soon_notified, "overdue_notified": overdue_notified, "ix_due": _due_key(flagged)}},
        )
        return claimed

    async def settle_notices(self, owed: Sequence[Owed]) -> None:
        """Mark notices published once the broker acknowledged them."""
        if owed:
            await self._notices.update_many({"_id": {"$in": [o.notice_id for o in owed]}}, {"$set": {"settled": True}})

    async def stale_notices(self, owed_before: datetime, limit: int = 500) -> list[Owed]:
        """Notices claimed long ago and never settled: their instance died between claim and publish."""
        cursor = self._notices.find({"settled": False, "at": {"$lt": owed_before}}).limit(limit)
        return [Owed(doc["task_id"], doc["_id"], doc["message"]) async for doc in cursor]


class TaskTypeRepository:
    """Custom task types administrators added."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["task_types"]

    async def all(self) -> dict[str, str]:
        return {d["_id"]: d["name"] async for d in self._col.find({})}

    async def added_by(self, type_id: str) -> str | None:
        doc = await self._col.find_one({"_id": type_id}, {"message_id": 1})
        return doc.get("message_id") if doc else None

    async def add(self, type_id: str, name: str, message_id: str) -> bool:
        try:
            await self._col.insert_one({"_id": type_id, "name": name, "message_id": message_id})
        except DuplicateKeyError:
            return False
        return True
