"""Where mass-action jobs, their lists of leads and the leads' answers are kept (the only code knowing their documents).

Measured on FerretDB 1.24: an update costs about 500 µs of its CPU per document, an insert 20 µs.
So nothing here updates per lead: a job's leads are stored once in pages (`bulk_pages`), what was
sent is one number on the job (`sent`, a position in that list), and each lead's answer is a
document inserted once (`bulk_answers`, keyed by the lead's command id: a second answer for the same
command, from a redelivery, is a duplicate key and ignored).

Each answer carries a list key (crmkit/listkeys.py) of its job and state in the order answers came,
``ix_state``: a job's counts are four index-range counts and its refusals are read a page at a time
from that index, whatever the job's size (the patched FerretDB does both in SQLite). Each job carries
two, by the time it was asked for: ``ix_owner`` (its requester's jobs) and ``ix_all`` (everyone's, for
administrators), so GET /bulk reads one page of one index, newest first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crmkit import listkeys
from crmkit.mongo import ensure_indexes as create_missing_indexes
from services.leads.domain import bulk as rules

PAGE = 1_000  # leads per stored page of a job's list
ANSWER_KEY = "ix_state"  # an answer's list key: its job and state, then the time it came and the lead
OWNER_KEY, ALL_KEY = "ix_owner", "ix_all"  # a job's list keys: its requester's jobs, everyone's; by creation


def answer_key(bulk_id: str, state: str, at: datetime, lead_id: str) -> str:
    return listkeys.key((bulk_id, state), at, lead_id)


def job_keys(requested_by: str, created_at: datetime, bulk_id: str) -> dict[str, str]:
    return {OWNER_KEY: listkeys.key((requested_by,), created_at, bulk_id), ALL_KEY: listkeys.key((), created_at, bulk_id)}


@dataclass(frozen=True)
class BulkJob:
    """One mass action as stored."""

    bulk_id: str
    action: str
    params: dict[str, str]
    requested_by: str
    command_id: str
    correlation_id: str
    state: str  # expanding, running, completed, cancelled; refused: the command was refused, nothing started
    total: int
    sent: int  # the first `sent` leads of the list were sent their command
    cancel_requested: bool
    cancel_command_id: str | None
    created_at: datetime
    finished_at: datetime | None
    refused_code: str | None = None  # why the command was refused (state `refused`)
    refused_message: str | None = None
    refused_errors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Answer:
    """How one lead of a job answered its command (or that it was left alone: `cancelled`)."""

    command_id: str
    lead_id: str
    state: str
    reason_code: str | None = None
    message: str | None = None


class BulkRepository:
    """Jobs (``bulk_jobs``), their lead lists (``bulk_pages``) and the leads' answers (``bulk_answers``)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._jobs = db["bulk_jobs"]
        self._pages = db["bulk_pages"]
        self._answers = db["bulk_answers"]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._jobs, [IndexModel([(k, ASCENDING)], name=f"{k}_1") for k in ("state", OWNER_KEY, ALL_KEY)])
        await create_missing_indexes(self._pages, [IndexModel([("job_id", ASCENDING)], name="job_id_1")])
        # Answers are read by id and by their list key only (the job_id/state index of before serves no query).
        await create_missing_indexes(self._answers, [IndexModel([(ANSWER_KEY, ASCENDING)], name=f"{ANSWER_KEY}_1")])
        await self.migrate_answer_keys()
        await self.migrate_job_keys()

    async def migrate_answer_keys(self) -> int:
        """Answers stored before they had a list key get one, once per database (keyed at their job's start)."""
        meta = self._jobs.database["bulk_meta"]
        if await meta.find_one({"_id": "answer_keys"}):
            return 0
        started: dict[str, datetime] = {}
        done = 0
        async for doc in self._answers.find({ANSWER_KEY: None}):
            job_id = doc["job_id"]
            if job_id not in started:
                job = await self.get(job_id)
                started[job_id] = job.created_at if job else datetime(1970, 1, 1, tzinfo=UTC)
            key = answer_key(job_id, doc["state"], started[job_id], doc["lead_id"])
            done += (await self._answers.update_one({"_id": doc["_id"]}, {"$set": {ANSWER_KEY: key}})).modified_count
        await meta.update_one({"_id": "answer_keys"}, {"$set": {"version": 1}}, upsert=True)
        return done

    async def migrate_job_keys(self) -> int:
        """Jobs stored before they had list keys get them, once per database."""
        meta = self._jobs.database["bulk_meta"]
        if await meta.find_one({"_id": "job_keys"}):
            return 0
        done = 0
        async for doc in self._jobs.find({ALL_KEY: None}, {"requested_by": 1, "created_at": 1}):
            keys = job_keys(doc["requested_by"], doc["created_at"], doc["_id"])
            done += (await self._jobs.update_one({"_id": doc["_id"]}, {"$set": keys})).modified_count
        await meta.update_one({"_id": "job_keys"}, {"$set": {"version": 1}}, upsert=True)
        return done

    # --- jobs ---------------------------------------------------------------------------------

    async def get(self, bulk_id: str) -> BulkJob | None:
        doc = await self._jobs.find_one({"_id": bulk_id})
        return _job_from(doc) if doc else None

    async def start(self, request: rules.BulkRequest, command_id: str, correlation_id: str, now: datetime) -> BulkJob:
        """Record the job as expanding (its leads being stored); an existing job is returned as it is."""
        doc = {
            "_id": request.bulk_id, "action": request.action, "params": dict(request.params),
            "requested_by": request.requested_by, "command_id": command_id, "correlation_id": correlation_id,
            "state": "expanding", "total": 0, "sent": 0, "cancel_requested": False, "cancel_command_id": None,
            "created_at": now, "finished_at": None, "lease_owner": None, "lease_until": None,
            **job_keys(request.requested_by, now, request.bulk_id),
        }
        # A refused command's record gives its id back: a new command may take it.
        await self._jobs.delete_one({"_id": request.bulk_id, "state": "refused"})
        try:
            await self._jobs.insert_one(doc)
        except DuplicateKeyError:
            pass
        found = await self.get(request.bulk_id)
        assert found is not None
        return found

    async def refuse(self, bulk_id: str, command_id: str, requested_by: str, code: str, message: str,
                     errors: Iterable[tuple[str, str]], now: datetime) -> None:
        """Record that a job's command was refused, so its requester can read why; a job that exists is left as it is."""
        doc = {
            "_id": bulk_id, "action": "", "params": {}, "requested_by": requested_by, "command_id": command_id,
            "correlation_id": command_id, "state": "refused", "total": 0, "sent": 0, "cancel_requested": False,
            "cancel_command_id": None, "created_at": now, "finished_at": now, "refused_code": code, "refused_message": message,
            "refused_errors": [{"field": f, "message": m} for f, m in errors],  # FerretDB stores no nested arrays
            **job_keys(requested_by, now, bulk_id),
        }
        try:
            await self._jobs.insert_one(doc)
        except DuplicateKeyError:
            pass

    async def list(self, requested_by: str | None, limit: int, cursor: str | None = None) -> tuple[list[BulkJob], str | None]:
        """A page of jobs, newest first: ``requested_by``'s, or everyone's when None; and the next page's cursor (None at the end).

        ValueError for a cursor this service did not issue."""
        name, values = (OWNER_KEY, (requested_by,)) if requested_by is not None else (ALL_KEY, ())
        below = listkeys.check_cursor(cursor) if cursor else None
        found = self._jobs.find({name: listkeys.bounds(values, below=below)})
        docs = [d async for d in found.sort(name, DESCENDING).limit(limit + 1)]
        page = docs[:limit]
        next_cursor = listkeys.tail(page[-1][name]) if len(docs) > limit else None
        # Two users whose hashes meet would share a range: each job is checked for its requester.
        return [_job_from(d) for d in page if requested_by is None or d["requested_by"] == requested_by], next_cursor

    async def store_leads(self, bulk_id: str, lead_ids: Sequence[str]) -> None:
        """The job's list of leads, in pages; a retried expansion replaces what an interrupted one stored."""
        await self._pages.delete_many({"job_id": bulk_id})
        pages = [{"_id": f"{bulk_id}\x1f{n}", "job_id": bulk_id, "lead_ids": list(lead_ids[start:start + PAGE])}
                 for n, start in enumerate(range(0, len(lead_ids), PAGE))]
        if pages:
            await self._pages.insert_many(pages)
        await self._jobs.update_one({"_id": bulk_id, "state": "expanding"}, {"$set": {"state": "running", "total": len(lead_ids)}})

    async def leads_between(self, bulk_id: str, start: int, end: int) -> list[str]:
        """The job's leads at positions start..end-1 (one page read per page they span)."""
        found: list[str] = []
        for n in range(start // PAGE, (max(end, start + 1) - 1) // PAGE + 1):
            page = await self._pages.find_one({"_id": f"{bulk_id}\x1f{n}"})
            ids = page["lead_ids"] if page else []
            found += ids[max(start - n * PAGE, 0):max(end - n * PAGE, 0)]
        return found

    async def mark_sent(self, bulk_id: str, upto: int) -> None:
        await self._jobs.update_one({"_id": bulk_id, "sent": {"$lt": upto}}, {"$set": {"sent": upto}})

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

    # --- answers ------------------------------------------------------------------------------

    async def record(self, bulk_id_of: dict[str, str], answers: Sequence[Answer], now: datetime) -> None:
        """Store answers (command id -> job in ``bulk_id_of``) as come ``now``; a command answered already keeps its first answer."""
        docs = [{"_id": a.command_id, "job_id": bulk_id_of[a.command_id], "lead_id": a.lead_id, "state": a.state,
                 "reason_code": a.reason_code, "message": a.message,
                 ANSWER_KEY: answer_key(bulk_id_of[a.command_id], a.state, now, a.lead_id)} for a in answers]
        if not docs:
            return
        try:
            await self._answers.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    async def answers(self, command_ids: Iterable[str]) -> dict[str, str]:
        """The state each of these commands was answered with, for those answered."""
        ids = sorted(set(command_ids))
        if not ids:
            return {}
        return {d["_id"]: d["state"] async for d in self._answers.find({"_id": {"$in": ids}}, {"state": 1})}

    async def answered(self, bulk_id: str) -> int:
        return sum((await self.counts(bulk_id)).values())

    async def counts(self, bulk_id: str) -> dict[str, int]:
        """Answers per state: one count of an index range each, done by the database without reading the answers."""
        states = rules.FINAL_STATES
        found = await asyncio.gather(*(self._count({ANSWER_KEY: listkeys.bounds((bulk_id, s))}) for s in states))
        return dict(zip(states, found, strict=True))

    async def _count(self, query: dict[str, Any]) -> int:
        # The `count` command, not count_documents: an aggregation is not pushed down to SQLite by FerretDB.
        reply = await self._answers.database.command({"count": self._answers.name, "query": query})
        return int(reply["n"])

    async def refusals(self, bulk_id: str, limit: int, cursor: str | None = None) -> tuple[list[Answer], str | None]:
        """A page of the job's refused leads in the order they were refused, and the cursor of the next page (None at the end).

        ValueError for a cursor this service did not issue."""
        above = listkeys.check_cursor(cursor) if cursor else None
        found = self._answers.find({ANSWER_KEY: listkeys.bounds((bulk_id, rules.REFUSED), above=above)})
        docs = [d async for d in found.sort(ANSWER_KEY, ASCENDING).limit(limit + 1)]
        page = docs[:limit]
        next_cursor = listkeys.tail(page[-1][ANSWER_KEY]) if len(docs) > limit else None
        # Two jobs whose hashes meet would share a range: each answer is checked for its job.
        return [Answer(d["_id"], d["lead_id"], d["state"], d.get("reason_code"), d.get("message"))
                for d in page if d["job_id"] == bulk_id], next_cursor


def _job_from(doc: dict[str, Any]) -> BulkJob:
    return BulkJob(
        bulk_id=doc["_id"], action=doc["action"], params=dict(doc.get("params") or {}), requested_by=doc["requested_by"],
        command_id=doc["command_id"], correlation_id=doc.get("correlation_id") or doc["command_id"], state=doc["state"],
        total=int(doc.get("total") or 0), sent=int(doc.get("sent") or 0), cancel_requested=bool(doc.get("cancel_requested")),
        cancel_command_id=doc.get("cancel_command_id"), created_at=doc["created_at"], finished_at=doc.get("finished_at"),
        refused_code=doc.get("refused_code"), refused_message=doc.get("refused_message"),
        refused_errors=tuple((e["field"], e["message"]) for e in doc.get("refused_errors") or ()),
    )
