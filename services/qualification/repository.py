"""Where the qualification service keeps its data in MongoDB: the queries (a closing's and a deal's shape: documents.py)."""

from __future__ import annotations

import contextlib

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmkit import listkeys
from crmkit.mongo import drop_indexes, find_by_ids, insert_new
from crmkit.mongo import ensure_indexes as create_missing_indexes
from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.qualification.documents import (
    StoredClosing, blob, closing_document, closing_from, deal_document, deal_from, deal_list_keys, done_id, unblob,
)
from services.qualification.domain import FINAL_STATUSES, Closing, Company, Deal, Lead, Reason, default_reasons

_DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class LeadChange:
    """A lead fact from the leads topic: the whole card (``whole``) or some fields, at a version."""

    lead_id: str
    version: int
    fields: dict[str, Any]
    whole: bool


@dataclass(frozen=True)
class _Upsert:
    """One version-guarded write of a projection."""

    filter: dict[str, Any]
    update: dict[str, Any]
    upsert: bool = True


async def _bulk_ignoring_duplicates(col: Any, ops: list[_Upsert]) -> None:
    """Run upserts guarded by version; a guard that fails on an existing document is a stale fact."""
    if not ops:
        return
    try:
        await col.bulk_write([UpdateOne(o.filter, o.update, upsert=o.upsert) for o in ops], ordered=False)
    except BulkWriteError as exc:
        # A stale fact's upsert collides with the newer document: E11000 of its statement alone (the local
        # FerretDB build answers as MongoDB does; upstream 1.24 left `n` out and pymongo raised KeyError).
        if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


def folded(changes: Sequence[LeadChange]) -> list[LeadChange]:
    """One write per lead and version: the events of one change (a stage change and the card's update share a
    version) pass the same version guard, so their fields merged, later ones winning, make the same write."""
    merged: dict[tuple[str, int], LeadChange] = {}
    for change in changes:
        key = (change.lead_id, change.version)
        if (before := merged.get(key)) is not None:
            change = LeadChange(change.lead_id, change.version, {**before.fields, **change.fields}, before.whole or change.whole)
        merged[key] = change
    return list(merged.values())


# The card fields of a lead's copy that are nested documents: read only to plan a deal, kept in the blob.
_NESTED_CARD_FIELDS = ("contact", "products")


def copy_values(change: LeadChange) -> dict[str, Any]:
    """The fields a lead change sets on the copy: the plain ones as they are, the nested ones (``contact``,
    ``products``, which a whole card carries) in one blob (``documents.blob``). FerretDB CPU per copy updated
    after a qualification (a whole card's ``$set``) 135-155 -> 80-95 µs, per copy read 115-125 -> 75-85, for a
    lead with a contact and two product lines; 100-120 -> 90-95 and 85-100 -> 80-85 for bench_flow's leads (a
    contact, no products). Measured by bench/bench_qualification_docs.py. A copy written
    before keeps its nested fields until its next card; the blob, newer, wins over them."""
    values = {k: v for k, v in change.fields.items() if k not in _NESTED_CARD_FIELDS}
    nested = {k: change.fields[k] for k in _NESTED_CARD_FIELDS if k in change.fields}
    if nested:
        values["blob"] = blob(nested)
    return {**values, "version": change.version}


class LeadProjection:
    """The newest known version of each lead, from crm.leads.events.v1."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["leads"]

    async def apply(self, changes: Sequence[LeadChange]) -> None:
        ops: list[_Upsert] = []
        for change in folded(changes):
            values = copy_values(change)
            if change.fields.get("status") in FINAL_STATUSES:
                values["closed_version"] = change.version  # so a later open status shows a reopen
            # Equal versions are let through: a card and its stage-changed event share one version.
            guard = {"_id": change.lead_id, "version": {"$lte": change.version}}
            if change.whole:
                ops.append(_Upsert(guard, {"$set": values}, upsert=True))
            else:  # a partial fact about a lead whose card we have not seen cannot make a card
                ops.append(_Upsert(guard, {"$set": values}, upsert=False))
        await _bulk_ignoring_duplicates(self._col, ops)

    async def get(self, lead_id: str) -> Lead | None:
        return (await self.get_many([lead_id])).get(lead_id)

    async def get_many(self, lead_ids: Iterable[str]) -> dict[str, Lead]:
        """The known leads among ``lead_ids``, in one read (a lead seen only in partial facts is not known)."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        found = await find_by_ids(self._col, ids)
        return {
            doc["_id"]: Lead.model_validate({**doc, **(unblob(doc) if "blob" in doc else {}), "lead_id": doc["_id"]})
            for doc in found if "title" in doc
        }


class PipelineProjection:
    """Which lead pipelines exist, from crm.leads.events.v1."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["pipelines"]

    async def apply(self, changes: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        ops = [
            _Upsert(
                {"_id": pipeline_id, "version": {"$lte": version}},
                {"$set": {**values, "version": version}},
                upsert=True,
            )
            for pipeline_id, version, values in changes
        ]
        await _bulk_ignoring_duplicates(self._col, ops)

    async def exists(self, pipeline_id: str) -> bool:
        return await self._col.find_one({"_id": pipeline_id, "deleted": {"$ne": True}}, {"_id": 1}) is not None


@dataclass
class ReasonList:
    pipeline_id: str
    reasons: list[Reason]
    version: int
    recent: list[str] = field(default_factory=list)  # ids of the commands recently applied


class ReasonRepository:
    """Disqualification reasons per pipeline, seeded with the defaults when a pipeline appears."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["disqualification_reasons"]

    async def seed(self, pipeline_ids: Iterable[str]) -> None:
        defaults = [r.model_dump() for r in default_reasons()]
        ops = [
            _Upsert(
                {"_id": pipeline_id},
                {"$setOnInsert": {"reasons": defaults, "version": 0, "_recent": []}},
                upsert=True,
            )
            for pipeline_id in sorted(set(pipeline_ids))
        ]
        await _bulk_ignoring_duplicates(self._col, ops)

    async def get(self, pipeline_id: str) -> ReasonList:
        """The pipeline's list; the defaults are stored first if the pipeline has none yet."""
        doc = await self._col.find_one({"_id": pipeline_id})
        if doc is None:
            await self.seed([pipeline_id])
            doc = await self._col.find_one({"_id": pipeline_id})
        return ReasonList(
            pipeline_id,
            [Reason.model_validate(r) for r in doc.get("reasons") or []],
            int(doc.get("version", 0)),
            list(doc.get("_recent") or []),
        )

    async def peek(self, pipeline_id: str) -> list[Reason] | None:
        doc = await self._col.find_one({"_id": pipeline_id})
        return None if doc is None else [Reason.model_validate(r) for r in doc.get("reasons") or []]

    async def save(self, current: ReasonList, reasons: list[Reason], message_id: str, keep: int) -> bool:
        """Replace the list if nobody changed it since ``current`` was read; False when someone did."""
        result = await self._col.update_one(
            {"_id": current.pipeline_id, "version": current.version},
            {
                "$set": {
                    "reasons": [r.model_dump() for r in reasons],
                    "version": current.version + 1,
                    "_recent": [*current.recent, message_id][-keep:],
                }
            },
        )
        return result.matched_count == 1


class ClosingRepository:
    """One document per lead: the process that closes it, its state, and the events it owes."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["closings"]
        self._history = db["closings_history"]  # earlier processes of reopened leads
        self._done = db["closings_done"]  # one document per process that finished: its lead and command

    async def get(self, lead_id: str) -> StoredClosing | None:
        return (await self.get_many([lead_id])).get(lead_id)

    async def get_many(self, lead_ids: Iterable[str]) -> dict[str, StoredClosing]:
        """The process of each lead that has one, in one read (and one of the done marks of those still running)."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        found = {doc["_id"]: closing_from(doc) for doc in await find_by_ids(self._col, ids)}
        running = {done_id(s.closing): lid for lid, s in found.items() if s.closing.state != "done"}
        for doc in await find_by_ids(self._done, list(running), {"_id": 1}):
            stored = found[running[doc["_id"]]]
            found[running[doc["_id"]]] = StoredClosing(stored.closing.model_copy(update={"state": "done"}), stored.outbox)
        return found

    async def start_many(self, stored: Sequence[StoredClosing]) -> set[str]:
        """Store new processes in one request; the leads that had one already (read them again)."""
        docs = [closing_document(s) for s in stored]
        return {stored[i].closing.lead_id for i in await insert_new(self._col, docs)}

    async def finish_many(self, closings: Iterable[Closing]) -> None:
        """Mark processes done, once everything they create is stored: a small document each, inserted in one
        request (rewriting every process document cost fifty times as much on FerretDB)."""
        await insert_new(self._done, [{"_id": done_id(c)} for c in closings])

    async def start(self, closing: Closing, outbox: list[str], *, replacing: Closing | None = None) -> bool:
        """Store a new process; False if the lead already has one (then read it again).

        ``replacing`` is the finished process of a lead that was reopened: it moves to
        ``closings_history`` and the new one takes its place, unless another got there first."""
        doc = closing_document(StoredClosing(closing, outbox))
        if replacing is not None:
            old = (await self.get_many([closing.lead_id])).get(closing.lead_id)
            if old is None or old.closing.command_id != replacing.command_id or old.closing.state != "done":
                return False
            with contextlib.suppress(DuplicateKeyError):
                await self._history.insert_one(
                    {**closing_document(old), "_id": f"{closing.lead_id}\x1f{replacing.command_id}"}
                )
            result = await self._col.replace_one({"_id": closing.lead_id, "command_id": replacing.command_id}, doc)
            return result.matched_count == 1
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True


class CompanyRepository:
    """Companies: those qualification created, and those the directory announced (to check ids)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["companies"]

    async def create(self, company: Company) -> None:
        """Insert once; a repeat of the same step finds it there."""
        await self.create_many([company])

    async def create_many(self, companies: Sequence[Company]) -> None:
        """Insert those not stored yet, in one request (a repeated step finds the others there)."""
        await insert_new(self._col, [{**c.model_dump(), "_id": c.company_id, "origin": "qualification"} for c in companies])

    async def upsert_known(self, records: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        ops = [
            _Upsert(
                {"_id": company_id, "version": {"$lt": version}},
                {"$set": {**values, "company_id": company_id, "version": version, "origin": "directory"}},
                upsert=True,
            )
            for company_id, version, values in records
        ]
        await _bulk_ignoring_duplicates(self._col, ops)

    async def exists(self, company_id: str) -> bool:
        return bool(await self.known([company_id]))

    async def known(self, company_ids: Iterable[str]) -> set[str]:
        """Which of these company ids are stored, in one read."""
        ids = sorted(set(company_ids))
        if not ids:
            return set()
        return {doc["_id"] for doc in await find_by_ids(self._col, ids, {"_id": 1})}

    async def get(self, company_id: str) -> Company | None:
        doc = await self._col.find_one({"_id": company_id, "origin": "qualification"})
        return Company.model_validate(doc) if doc else None


class DealRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["deals"]

    async def create(self, deal: Deal) -> None:
        """Insert once; a repeat of the same step finds it there."""
        await self.create_many([deal])

    async def create_many(self, deals: Sequence[Deal]) -> None:
        """Insert those not stored yet, in one request (a repeated step finds the others there)."""
        await insert_new(self._col, [deal_document(d) for d in deals])

    async def get(self, deal_id: str) -> Deal | None:
        doc = await self._col.find_one({"_id": deal_id})
        return deal_from(doc) if doc else None

    async def list(self, *, lead_id: str | None = None, cursor: str | None = None, limit: int = 50) -> tuple[list[Deal], str | None]:
        """Deals, newest first, and the cursor of the next page: one range of one list key."""
        name, values = ("ix_lead", (lead_id,)) if lead_id else ("ix_all", ())
        below = listkeys.check_cursor(cursor) if cursor else None
        found = self._col.find({name: listkeys.bounds(values, below=below)}).sort(name, DESCENDING).limit(limit + 1)
        docs = [doc async for doc in found]
        page = docs[:limit]
        next_cursor = listkeys.tail(page[-1][name]) if len(docs) > limit else None
        # A hash shared by two lead ids would let a stranger into the range: checked here.
        return [deal_from(d) for d in page if not lead_id or d["lead_id"] == lead_id], next_cursor

    async def migrate_list_keys(self) -> int:
        """Deals stored before their list keys get them, once per database (deals never change: no
        version to guard)."""
        meta = self._col.database["qualification_meta"]
        if await meta.find_one({"_id": "deal_list_keys"}):
            return 0
        done = 0
        async for doc in self._col.find({"ix_all": None}):
            deal = deal_from(doc)
            done += (await self._col.update_one({"_id": doc["_id"]}, {"$set": deal_list_keys(deal)})).modified_count
        await meta.update_one({"_id": "deal_list_keys"}, {"$set": {"version": 1}}, upsert=True)
        return done

    async def count(self, **query: Any) -> int:
        return await self._col.count_documents(query)


# Indexes earlier versions made that no query uses (each cost FerretDB ~2 µs a document written): GET /deals
# reads one list key (ix_all, ix_lead), companies and leads are read by _id only. Dropped where they exist.
UNUSED_INDEXES = {
    "deals": ["lead_id_1", "created_at_-1__id_-1"],
    "companies": ["lead_id_1"],
    "leads": ["pipeline_id_1"],
}


async def ensure_indexes(db: AsyncDatabase) -> None:
    indexes = [
        ("deals", IndexModel([("ix_all", ASCENDING)], name="ix_all_1")),
        ("deals", IndexModel([("ix_lead", ASCENDING)], name="ix_lead_1")),
    ]
    for collection, index in indexes:
        await create_missing_indexes(db[collection], [index])
    for collection, names in UNUSED_INDEXES.items():
        await drop_indexes(db[collection], names)
