"""Where import jobs, row outcomes and row errors live (the lead projection: external_ids.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crmkit.mongo import ensure_indexes
from services.importer.domain import ImportJob
from services.importer.row_records import RowRecords

_JOB_FIELDS = {f.name for f in dataclasses.fields(ImportJob)}
_DUPLICATE_KEY = 11000


def _row_key(import_id: str, row: int) -> str:
    return f"{import_id}:{row}"


def _job_from(doc: dict[str, Any]) -> ImportJob:
    return ImportJob(**{k: v for k, v in doc.items() if k in _JOB_FIELDS})


async def _insert_once(collection, docs: list[dict[str, Any]]) -> None:
    """Insert documents with deterministic ids; the ones already there (a replay) are left as they are."""
    if not docs:
        return
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


class ImportRepository:
    """Import jobs with their checkpoint, per-row outcomes, saved previous values and row errors."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._jobs = db["imports"]
        self._errors = db["import_errors"]
        # The consumer writes the outcome pages, their counters and the requests; the job document
        # has one writer, the worker. (FerretDB applies an update as read-modify-write, so two
        # writers of one document lose changes.)
        self.rows = RowRecords(db)
        self._requests = db["import_requests"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self._jobs, [
            IndexModel([("state", ASCENDING)], name="state_1"),
            IndexModel([("created_at", DESCENDING)], name="created_at_-1"),
            IndexModel([("actor_id", ASCENDING), ("created_at", DESCENDING)], name="actor_id_1_created_at_-1"),
        ])
        await ensure_indexes(
            self._errors, [IndexModel([("import_id", ASCENDING), ("row", ASCENDING)], name="import_id_1_row_1")]
        )
        await self.rows.ensure_indexes()

    # --- jobs ---------------------------------------------------------------------------------

    async def create(self, job: ImportJob) -> bool:
        """Store a new job; False when a job with that id exists (a repeated start)."""
        doc = dataclasses.asdict(job)
        doc.update(_id=job.import_id, owner=None, lease_until=None)
        try:
            await self._jobs.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, import_id: str) -> ImportJob | None:
        doc = await self._jobs.find_one({"_id": import_id})
        return _job_from(doc) if doc else None

    async def claim(self, owner: str, now: datetime, lease_s: float, *, exclude: Sequence[str] = (),
                    only: Sequence[str] | None = None) -> ImportJob | None:
        """Take one job that needs the worker (running, reverting, or owing its final event).

        ``exclude`` holds the jobs this instance runs already; ``only`` limits the choice to some ids."""
        ids: dict[str, Any] = {"$nin": list(exclude)}
        if only is not None:
            ids["$in"] = list(only)
        doc = await self._jobs.find_one_and_update(
            {
                "$and": [
                    {"_id": ids},
                    {"$or": [{"state": {"$in": ["running", "reverting"]}},
                             {"state": {"$in": ["completed", "failed", "reverted"]}, "announced": False}]},
                    {"$or": [{"owner": owner}, {"owner": None}, {"lease_until": {"$lte": now}}]},
                ]
            },
            {"$set": {"owner": owner, "lease_until": now + timedelta(seconds=lease_s)}},
            return_document=ReturnDocument.AFTER,
        )
        return _job_from(doc) if doc else None

    async def renew(self, import_id: str, owner: str, now: datetime, lease_s: float) -> ImportJob | None:
        """Extend the lease and read the job back (to see a cancel); None when another owner took it."""
        doc = await self._jobs.find_one_and_update(
            {"_id": import_id, "owner": owner},
            {"$set": {"lease_until": now + timedelta(seconds=lease_s)}},
            return_document=ReturnDocument.AFTER,
        )
        return _job_from(doc) if doc else None

    async def advance(self, import_id: str, owner: str, now: datetime, lease_s: float, fields: dict[str, Any],
                      inc: dict[str, int]) -> ImportJob | None:
        """Move a running job's checkpoint and counters and extend its lease in one write; None when another owner has it."""
        doc = await self._jobs.find_one_and_update(
            {"_id": import_id, "owner": owner, "state": "running"},
            {"$set": {**fields, "lease_until": now + timedelta(seconds=lease_s)}, "$inc": inc},
            return_document=ReturnDocument.AFTER,
        )
        return _job_from(doc) if doc else None

    async def release(self, import_id: str, owner: str) -> None:
        await self._jobs.update_one({"_id": import_id, "owner": owner}, {"$set": {"owner": None, "lease_until": None}})

    async def update(self, import_id: str, fields: dict[str, Any], *, inc: dict[str, int] | None = None,
                     expect_state: str | Sequence[str] | None = None) -> bool:
        """Set fields (and add to counters) in one atomic write; False when the state was not as expected."""
        query: dict[str, Any] = {"_id": import_id}
        if expect_state is not None:
            query["state"] = expect_state if isinstance(expect_state, str) else {"$in": list(expect_state)}
        change: dict[str, Any] = {}
        if fields:
            change["$set"] = fields
        if inc:
            change["$inc"] = inc
        result = await self._jobs.update_one(query, change)
        return result.matched_count == 1

    async def listed(self, actor_id: str | None, *, state: str | None, limit: int, offset: int) -> list[ImportJob]:
        """Jobs newest first: one user's (``actor_id``) or everyone's (None), optionally in one state."""
        query: dict[str, Any] = {}
        if actor_id is not None:
            query["actor_id"] = actor_id
        if state is not None:
            query["state"] = state
        cursor = self._jobs.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).skip(offset).limit(limit)
        return [_job_from(doc) async for doc in cursor]

    async def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (for the jobs-by-state metric)."""
        pipeline = [{"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        return {doc["_id"]: doc["n"] async for doc in await self._jobs.aggregate(pipeline)}

    async def running(self) -> list[ImportJob]:
        return [_job_from(doc) async for doc in self._jobs.find({"state": "running"})]

    async def waiting(self) -> list[ImportJob]:
        return [_job_from(doc) async for doc in self._jobs.find({"state": "waiting"})]

    # --- requests from commands (written by the consumer, acted on by the worker) --------------

    async def request(self, import_id: str, **fields: Any) -> None:
        await self._requests.update_one({"_id": import_id}, {"$set": fields}, upsert=True)

    async def requests(self, import_id: str) -> dict[str, Any]:
        return dict(await self._requests.find_one({"_id": import_id}) or {})

    async def cancelled_running(self, exclude: Sequence[str]) -> list[str]:
        """Running jobs with a cancel request that this instance is not running."""
        asked = [doc["_id"] async for doc in self._requests.find({"cancel": True}, {"_id": 1})]
        if not asked:
            return []
        query = {"_id": {"$in": asked, "$nin": list(exclude)}, "state": "running"}
        return [doc["_id"] async for doc in self._jobs.find(query, {"_id": 1})]

    async def pending_reverts(self) -> list[tuple[str, str | None]]:
        return [(doc["_id"], doc.get("revert_actor_id")) async for doc in self._requests.find({"revert": True, "revert_taken": {"$ne": True}})]

    async def record_errors(self, import_id: str, errors: Sequence[tuple[int, str | None, str, Sequence[str | None]]]) -> None:
        """Row errors for the report, one document per (row, error); a resent chunk writes nothing new."""
        docs, seen = [], {}
        for row, column, reason, cells in errors:
            index = seen[row] = seen.get(row, -1) + 1
            docs.append({"_id": f"{import_id}:{row}:{index}", "import_id": import_id, "row": row, "column": column,
                         "reason": reason, "cells": list(cells)})
        await _insert_once(self._errors, docs)

    async def errors(self, import_id: str) -> AsyncIterator[tuple[int, str | None, str, list[str | None]]]:
        async for doc in self._errors.find({"import_id": import_id}).sort([("row", 1), ("_id", 1)]):
            yield doc["row"], doc.get("column"), doc["reason"], doc.get("cells") or []
