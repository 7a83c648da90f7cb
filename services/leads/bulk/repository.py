"""Where mass-action jobs and their per-lead items are kept (the only code knowing their documents)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.leads.domain import bulk as rules

_INSERT_CHUNK = 1_000


@dataclass(frozen=True)
class BulkJob:
    """One mass action as stored."""

    bulk_id: str
    action: str
    params: dict[str, str]
    requested_by: str
    command_id: str
    correlation_id: str
    state: str  # expanding, running, completed, cancelled
    total: int
    cancel_requested: bool
    cancel_command_id: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class BulkItem:
    """One lead of a job: the id of the command it gets, and how it answered."""

    command_id: str
    bulk_id: str
    lead_id: str
    state: str
    reason_code: str | None = None
    message: str | None = None


class BulkRepository:
    """Jobs (``bulk_jobs``) and one item per lead of a job (``bulk_items``, keyed by the lead's command id)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._jobs = db["bulk_jobs"]
        self._items = db["bulk_items"]

    async def ensure_indexes(self) -> None:
        await self._jobs.create_index("state")
        await self._items.create_index([("job_id", ASCENDING), ("state", ASCENDING), ("seq", ASCENDING)])

    # --- jobs ---------------------------------------------------------------------------------

    async def get(self, bulk_id: str) -> BulkJob | None:
        doc = await self._jobs.find_one({"_id": bulk_id})
        return _job_from(doc) if doc else None

    async def start(self, request: rules.BulkRequest, command_id: str, correlation_id: str, now: datetime) -> BulkJob:
        """Record the job as expanding (its leads being listed); an existing job is returned as it is."""
        doc = {
            "_id": request.bulk_id, "action": request.action, "params": dict(request.params),
            "requested_by": request.requested_by, "command_id": command_id, "correlation_id": correlation_id,
            "state": "expanding", "total": 0, "cancel_requested": False, "cancel_command_id": None,
            "created_at": now, "finished_at": None, "lease_owner": None, "lease_until": None,
        }
        try:
            await self._jobs.insert_one(doc)
        except DuplicateKeyError:
            pass
        found = await self.get(request.bulk_id)
        assert found is not None
        return found

    async def mark_running(self, bulk_id: str, total: int) -> None:
        await self._jobs.update_one({"_id": bulk_id, "state": "expanding"}, {"$set": {"state": "running", "total": total}})

    async def running(self) -> list[BulkJob]:
        return [_job_from(d) async for d in self._jobs.find({"state": "running"})]

    async def claim(self, bulk_id: str, owner: str, now: datetime, lease: timedelta) -> bool:
        """Whether ``owner`` runs the job for the next ``lease``: it held it, or nobody did, or the holder's lease ran out."""
        # update_one, not find_one_and_update with a projection: FerretDB 1.24 has no `fields` on findAndModify.
        result = await self._jobs.update_one(
            {"_id": bulk_id, "state": "running", "$or": [{"lease_owner": owner}, {"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"$set": {"lease_owner": owner, "lease_until": now + lease}},
        )
        return result.matched_count == 1

    async def request_cancel(self, bulk_id: str, command_id: str) -> None:
        await self._jobs.update_one(
            {"_id": bulk_id, "state": "running"}, {"$set": {"cancel_requested": True, "cancel_command_id": command_id}}
        )

    async def cancelled(self, bulk_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(bulk_ids))
        if not ids:
            return set()
        return {d["_id"] async for d in self._jobs.find({"_id": {"$in": ids}, "cancel_requested": True}, {"_id": 1})}

    async def finish(self, bulk_id: str, state: str, now: datetime) -> None:
        await self._jobs.update_one({"_id": bulk_id, "state": "running"}, {"$set": {"state": state, "finished_at": now}})

    # --- items --------------------------------------------------------------------------------

    async def clear_items(self, bulk_id: str) -> None:
        await self._items.delete_many({"job_id": bulk_id})

    async def add_items(self, bulk_id: str, items: Sequence[tuple[str, str]], first_seq: int) -> None:
        """Add (command id, lead id) items in order; items stored already (a retried expansion) stay."""
        for start in range(0, len(items), _INSERT_CHUNK):
            docs = [
                {"_id": command_id, "job_id": bulk_id, "lead_id": lead_id, "seq": first_seq + start + i, "state": rules.PENDING}
                for i, (command_id, lead_id) in enumerate(items[start:start + _INSERT_CHUNK])
            ]
            try:
                await self._items.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    async def next_pending(self, bulk_id: str, limit: int) -> list[BulkItem]:
        cursor = self._items.find({"job_id": bulk_id, "state": rules.PENDING}).sort("seq", ASCENDING).limit(limit)
        return [_item_from(d) async for d in cursor]

    async def mark(self, command_ids: Sequence[str], state: str, *, only: Sequence[str] = (rules.PENDING,)) -> None:
        if command_ids:
            await self._items.update_many({"_id": {"$in": list(command_ids)}, "state": {"$in": list(only)}}, {"$set": {"state": state}})

    async def cancel_pending(self, bulk_id: str) -> None:
        await self._items.update_many({"job_id": bulk_id, "state": rules.PENDING}, {"$set": {"state": rules.CANCELLED}})

    async def items(self, command_ids: Iterable[str]) -> dict[str, BulkItem]:
        ids = sorted(set(command_ids))
        if not ids:
            return {}
        return {d["_id"]: _item_from(d) async for d in self._items.find({"_id": {"$in": ids}})}

    async def record(self, answers: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        """Store how leads answered: (command id, state, reason code, message); an item answered already keeps its answer."""
        ops = [
            UpdateOne({"_id": cid, "state": {"$in": list(rules.OPEN_STATES)}},
                      {"$set": {"state": state, "reason_code": code, "message": text}})
            for cid, state, code, text in answers
        ]
        if ops:
            await self._items.bulk_write(ops, ordered=False)

    async def counts(self, bulk_id: str) -> dict[str, int]:
        """Items per state, counted by the database ($group with $sum, which FerretDB has)."""
        found = {state: 0 for state in rules.ITEM_STATES}
        pipeline = [{"$match": {"job_id": bulk_id}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        async for row in await self._items.aggregate(pipeline):
            found[row["_id"]] = int(row["n"])
        return found

    async def refusals(self, bulk_id: str, limit: int) -> list[BulkItem]:
        cursor = self._items.find({"job_id": bulk_id, "state": rules.REFUSED}).sort("seq", ASCENDING).limit(limit)
        return [_item_from(d) async for d in cursor]


def _job_from(doc: dict[str, Any]) -> BulkJob:
    return BulkJob(
        bulk_id=doc["_id"], action=doc["action"], params=dict(doc.get("params") or {}), requested_by=doc["requested_by"],
        command_id=doc["command_id"], correlation_id=doc.get("correlation_id") or doc["command_id"], state=doc["state"],
        total=int(doc.get("total") or 0), cancel_requested=bool(doc.get("cancel_requested")),
        cancel_command_id=doc.get("cancel_command_id"), created_at=doc["created_at"], finished_at=doc.get("finished_at"),
    )


def _item_from(doc: dict[str, Any]) -> BulkItem:
    return BulkItem(doc["_id"], doc["job_id"], doc["lead_id"], doc["state"], doc.get("reason_code"), doc.get("message"))
