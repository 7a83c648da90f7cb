"""Where leads, pipelines and directory snapshots live in MongoDB; the only module that knows document shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crmkit.applied import Applied, applied_for, kept
from crmkit.mongo import IDS_PER_QUERY, ensure_indexes, find_by_ids
from services.leads.domain import Lead, Pipeline
from services.leads import readmodel

log = logging.getLogger("services.leads.repository")


# A lead's applied messages, each with the serialized envelopes it produced; the old name stays importable.
Recent = Applied


@dataclass
class StoredLead:
    lead: Lead
    recent: list[Recent]

    @property
    def version(self) -> int:
        return self.lead.version

    def recent_for(self, message_id: str) -> Applied[str] | None:
        return applied_for(self.recent, message_id)


@dataclass
class LeadWrite:
    """A lead to store: new when ``expected_version`` is None, else replacing that version."""

    lead: Lead
    recent: list[Recent]
    expected_version: int | None
    card_json: bytes | None = None  # the card's JSON when the caller has it already


# A lead is stored as the fields the read side filters on, flat, plus the whole card and its recent
# messages as one compressed JSON blob. FerretDB converts every BSON field to JSON and back on each
# write and read, which made a nested card cost ten times a blob of the same data; MongoDB does not
# mind either way. The document:
#
#   _id, version                        the lead id and card version (replaces are guarded by it)
#   pipeline_id, stage_id, status,      where the lead stands, plain, checked row by row when a
#   responsible_id, source, deleted,    list has more than one filter
#   updated_at, title, contact_name, company_name
#   ix_all, ix_pipeline, ix_stage,      one indexed list key per keyed filter, in last-change order
#   ix_status, ix_responsible, ix_source  (services/leads/readmodel.py); None when the lead has no value
#   ix_terms                            the search words, " word word ... "
#   ix_email, ix_phone, ix_name         normalised duplicate keys, only while the lead is live
#   ix_contact, ix_company, product_ids the linked upstream records (snapshot fan-out); ix_products the
#   ix_products                         product ids as " id id ", searched on FerretDB (no array index)
#   ixv                                 the version of these read fields (older ones are rewritten at start)
#   blob                                zlib of {"card": <card JSON>, "recent": [applied messages and their events]}
_BLOB_LEVEL = 1


# In the blob, an event's copy of the card (its `data` is the card plus `changed_fields`) is stored
# as this character instead; JSON text never holds a raw NUL, so it cannot be mistaken.
_CARD_MARK = "\x00"


def lead_document(write: LeadWrite) -> dict[str, Any]:
    """The document a lead is stored as (its shape is described above)."""
    lead = write.lead
    # The card is serialized by pydantic's own (compiled) encoder and spliced in: the same JSON as
    # json.dumps(lead.model_dump(mode="json")), read back by stored_lead, at a fraction of the cost.
    card = write.card_json or lead.model_dump_json().encode()
    body = card[:-1].decode()
    recent = json.dumps(
        [{"id": r.message_id, "events": [e.replace(body, _CARD_MARK, 1) for e in r.events]} for r in write.recent],
        separators=(",", ":"), ensure_ascii=False,
    )
    blob = b'{"card":' + card + b',"recent":' + recent.encode() + b"}"
    return {
        "_id": lead.lead_id,
        "version": lead.version,
        "pipeline_id": lead.pipeline_id,
        "stage_id": lead.stage_id,
        "status": lead.status,
        "responsible_id": lead.responsible_id,
        "source": lead.source,
        "deleted": lead.deleted,
        "updated_at": lead.updated_at,
        "title": lead.title,
        "contact_name": lead.contact.name if lead.contact else None,
        "company_name": lead.company.name if lead.company else None,
        **readmodel.read_fields(lead),
        "blob": Binary(zlib.compress(blob, _BLOB_LEVEL)),
    }


def stored_lead(doc: dict[str, Any]) -> StoredLead:
    """A stored document read back: the lead and its applied messages."""
    raw = zlib.decompress(doc["blob"]).decode()
    blob = json.loads(raw)
    recent = [Applied.from_doc(r) for r in blob.get("recent") or []]
    if any(_CARD_MARK in e for r in recent for e in r.events):
        # The card's own text, as stored. The last `,"recent":` is the blob's own key: the card may hold
        # one too (product options and external ids have keys from outside), the events cannot
        # (they are JSON strings there, their quotes escaped).
        body = raw[len('{"card":'):raw.rindex(',"recent":')][:-1]
        for r in recent:
            r.events = [e.replace(_CARD_MARK, body, 1) for e in r.events]
    return StoredLead(Lead.model_validate(blob["card"]), recent)


def stored_card(doc: dict[str, Any]) -> Lead:
    """Only the card of a stored document, for the read side: its JSON cut from the blob and validated by
    pydantic's compiled parser, the applied messages skipped (22 against 58 µs a lead at 100,000 leads,
    measured on the benchmark's documents; a list page reads 50)."""
    raw = zlib.decompress(doc["blob"])
    # As in stored_lead: the last `,"recent":` is the blob's own key.
    return Lead.model_validate_json(raw[len(b'{"card":'):raw.rindex(b',"recent":')])


class LeadRepository:
    """Lead cards with their per-lead record of recently applied messages (for exactly-once effects)."""

    def __init__(self, db: AsyncDatabase, *, strict_versions: bool = True, ferretdb: bool = False) -> None:
        self._col = db["leads"]
        self.strict_versions = strict_versions
        self.ferretdb = ferretdb

    async def ensure_indexes(self, *, ferretdb: bool = False) -> None:
        """The read side's indexes: one per list key, the duplicate keys and the links (both backends),
        and on FerretDB the full-text table of the search words.

        ``product_ids`` is an array: MongoDB indexes its elements; FerretDB's SQLite cannot, so there
        the product fan-out is a scan in SQL (rare: a catalog change).
        """
        fields = [f"ix_{name}" for name in ("all", *readmodel.KEYED_FILTERS)]
        fields += ["ix_email", "ix_phone", "ix_name", "ix_contact", "ix_company"]
        if not ferretdb:
            fields.append("product_ids")
        indexes = [IndexModel([(f, ASCENDING)], name=f"{f}_1") for f in fields]
        if ferretdb:
            # The patched FerretDB makes an index of this name a full-text table of the words, which
            # answers a word-prefix search without reading every lead (crmctl/ferretdb_patches.py).
            indexes.append(IndexModel([("ix_terms", ASCENDING)], name="ix_terms_fts"))
        await ensure_indexes(self._col, indexes)

    async def get_many(self, lead_ids: Iterable[str]) -> dict[str, StoredLead]:
        """Load leads by id (``_id $in`` chunks, served from the ``_id`` index on both backends)."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        return {doc["_id"]: stored_lead(doc) for doc in await find_by_ids(self._col, ids)}

    async def get(self, lead_id: str) -> Lead | None:
        doc = await self._col.find_one({"_id": lead_id})
        return stored_card(doc) if doc else None

    async def save(self, writes: Sequence[LeadWrite]) -> set[str]:
        """Store all writes in one bulk call; return the ids that lost a race (to be re-applied).

        New leads are inserted blind: a duplicate id means the lead exists after all (a redelivered
        create), and the caller re-reads it. Changes replace the document by id; with
        ``strict_versions`` the replace also names the version read, so a concurrent writer is
        detected (on MongoDB; FerretDB does not apply a conditional write atomically, so there the
        partition ownership of each lead is what keeps one writer per lead).
        """
        if not writes:
            return set()
        ops: list[Any] = []
        for w in writes:
            if w.expected_version is None:
                ops.append(InsertOne(lead_document(w)))
            elif self.strict_versions:
                ops.append(ReplaceOne({"_id": w.lead.lead_id, "version": w.expected_version}, lead_document(w)))
            else:
                ops.append(ReplaceOne({"_id": w.lead.lead_id}, lead_document(w)))
        conflicted: set[str] = set()
        try:
            result = await self._col.bulk_write(ops, ordered=False)
            matched = result.matched_count
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != 11000:
                    raise
                conflicted.add(writes[error["index"]].lead.lead_id)
            matched = exc.details.get("nMatched", 0)
        replaces = [w for w in writes if w.expected_version is not None]
        if matched < len(replaces):
            # Someone else changed (or removed) these leads since we read them: find which.
            current = await self.get_many(w.lead.lead_id for w in replaces)
            conflicted |= {
                w.lead.lead_id for w in replaces
                if w.lead.lead_id not in current or current[w.lead.lead_id].version != w.lead.version
            }
        return conflicted

    async def duplicate_candidates(self, keys: Iterable[Mapping[str, str]]) -> dict[str, dict[str, str]]:
        """Live stored leads sharing any normalised key with these, with their keys: one indexed
        ``$in`` lookup per key kind (and 500 values) for a whole chunk of creates."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for lead_keys in keys:
            for kind, value in lead_keys.items():
                wanted[kind].add(value)
        found: dict[str, dict[str, str]] = {}
        projection = {f"ix_{kind}": 1 for kind in ("email", "phone", "name")}
        for kind, values in wanted.items():
            ordered = sorted(values)
            for start in range(0, len(ordered), IDS_PER_QUERY):
                query = {f"ix_{kind}": {"$in": ordered[start:start + IDS_PER_QUERY]}}
                async for doc in self._col.find(query, projection):
                    found[doc["_id"]] = {k: doc[f"ix_{k}"] for k in ("email", "phone", "name") if doc.get(f"ix_{k}")}
        return found

    async def linked(self, kind: str, record_id: str) -> list[str]:
        """Leads linked to an upstream contact, company or product (for the snapshot fan-out)."""
        if kind == "product":
            # SQLite cannot index an array: there a product is found in a string, in SQL; MongoDB
            # indexes the array's elements.
            plain = self.ferretdb and not re.search(r"[\s\\.+*?()|\[\]{}^$]", record_id)
            query: dict[str, Any] = {"ix_products": {"$regex": f" {record_id} "}} if plain else {"product_ids": record_id}
        else:
            query = {f"ix_{kind}": record_id}
        return sorted([doc["_id"] async for doc in self._col.find(query, {"_id": 1})])

    async def _count(self, query: dict[str, Any]) -> int:
        """A count served from an index (the patched FerretDB counts an ``ix_`` range in SQLite)."""
        reply = await self._col.database.command({"count": self._col.name, "query": query})
        return int(reply["n"])

    async def count_by_stage(self, pipeline_id: str, stage_ids: Iterable[str]) -> dict[str, int]:
        """Live leads in each of these stages of the pipeline: one index range count per stage."""
        ids = list(stage_ids)
        found = await asyncio.gather(*(self._count(_range("stage", (pipeline_id, s), deleted=False)) for s in ids))
        return dict(zip(ids, found, strict=True))

    async def count_in_pipeline(self, pipeline_id: str) -> int:
        return await self._count(_range("pipeline", (pipeline_id,), deleted=False))

    async def search(
        self,
        *,
        pipeline_id: str | None = None,
        stage_id: str | None = None,
        status: str | None = None,
        responsible_id: str | None = None,
        source: str | None = None,
        text: str | None = None,
        include_deleted: bool = False,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Lead], str | None]:
        """A page of leads, newest change first, with an opaque cursor for the next page.

        One range of one list key (the most selective filter given), read in the key's order from its
        index; other filters and the search words are checked on the rows of that range. A later page
        starts where the last one ended (keyset), so it costs what the first costs.
        """
        plain = {
            "pipeline_id": pipeline_id, "stage_id": stage_id, "status": status,
            "responsible_id": responsible_id, "source": source,
        }
        plain = {k: v for k, v in plain.items() if v}
        values: dict[str, tuple[str, ...] | None] = {
            "stage": (pipeline_id, stage_id) if pipeline_id and stage_id else None,
            "responsible": (responsible_id,) if responsible_id else None,
            "source": (source,) if source else None,
            "status": (status,) if status else None,
            "pipeline": (pipeline_id,) if pipeline_id else None,
        }
        keyed = next(((name, values[name]) for name in readmodel.KEYED_FILTERS if values[name]), ("all", ()))
        after = _decode_cursor(cursor) if cursor else None
        # The keyed filter's own fields are in its key; the others are checked row by row.
        query: dict[str, Any] = {k: v for k, v in plain.items() if k not in _KEYED_FIELDS[keyed[0]]}
        if text and text.strip():
            query["$and"] = [{"ix_terms": {"$regex": f" {word}"}} for word in readmodel.query_words(text)]
        pages = []
        for deleted in ((False, True) if include_deleted else (False,)):
            field_name = f"ix_{keyed[0]}"
            start = readmodel.prefix(keyed[0], keyed[1], deleted=deleted)
            bounds = {"$gt": start, "$lt": start + after if after else start[:-1] + ";"}
            docs = self._col.find({field_name: bounds, **query}).sort(field_name, DESCENDING).limit(limit + 1)
            pages += [(d[field_name][len(start):], d) async for d in docs]
        # Deleted and live leads are two ranges: merged here by their key's tail (the last change).
        pages.sort(key=lambda item: item[0], reverse=True)
        page = pages[:limit]
        next_cursor = page[-1][0] if len(pages) > limit else None
        # A hash shared by two filter values would put a stranger in the range: checked here.
        leads = [stored_card(d) for _, d in page if all(d.get(k) == v for k, v in plain.items())]
        return leads, next_cursor

    async def migrate_read_fields(self, batch: int = 500) -> int:
        """Write the read fields of leads stored without them (or by an older version); return how many.

        Guarded by the version read, so a lead changed meanwhile (and so written with its fields) is
        left alone. Run once per database: ``LeadsMeta`` remembers that it is done.
        """
        done = 0
        ops: list[UpdateOne] = []
        async for doc in self._col.find({"ixv": {"$ne": readmodel.READ_FIELDS_VERSION}}):
            lead = stored_lead(doc).lead
            ops.append(UpdateOne({"_id": doc["_id"], "version": doc["version"]}, {"$set": readmodel.read_fields(lead)}))
            if len(ops) >= batch:
                done += (await self._col.bulk_write(ops, ordered=False)).modified_count
                ops = []
        if ops:
            done += (await self._col.bulk_write(ops, ordered=False)).modified_count
        return done


_KEYED_FIELDS = {
    "all": (), "stage": ("pipeline_id", "stage_id"), "responsible": ("responsible_id",),
    "source": ("source",), "status": ("status",), "pipeline": ("pipeline_id",),
}


def _range(filter_name: str, value: tuple[str, ...], *, deleted: bool) -> dict[str, Any]:
    start = readmodel.prefix(filter_name, value, deleted=deleted)
    return {f"ix_{filter_name}": {"$gt": start, "$lt": start[:-1] + ";"}}


_CURSOR = re.compile(r"[0-9]{13}[0-9a-f]*")


def _decode_cursor(cursor: str) -> str:
    """The key tail a page ended at; cursors of the earlier format (JSON of time and id) still work."""
    if _CURSOR.fullmatch(cursor):
        return cursor
    try:
        at, lead_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return readmodel.key_tail(datetime.fromisoformat(at), str(lead_id))
    except Exception as exc:
        raise ValueError("the cursor is not one this service issued; start again without it") from exc


class LeadsMeta:
    """One-off facts about the leads database (which migrations are done)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["leads_meta"]

    async def read_fields_version(self) -> int:
        doc = await self._col.find_one({"_id": "read_fields"})
        return int(doc["version"]) if doc else 0

    async def set_read_fields_version(self, version: int) -> None:
        # Instances started together race to create the document: an upsert that loses the race
        # finds it made by another (FerretDB's upsert is not atomic), which is the same outcome.
        try:
            await self._col.update_one({"_id": "read_fields"}, {"$set": {"version": version}}, upsert=True)
        except DuplicateKeyError:
            await self._col.update_one({"_id": "read_fields"}, {"$set": {"version": version}})


class PipelineRepository:
    """Pipelines with their stages; few, so read whole."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["pipelines"]

    async def all(self, include_deleted: bool = False) -> dict[str, Pipeline]:
        query = {} if include_deleted else {"deleted": False}
        return {d["_id"]: _pipeline_from(d) async for d in self._col.find(query)}

    async def get(self, pipeline_id: str) -> Pipeline | None:
        doc = await self._col.find_one({"_id": pipeline_id})
        return _pipeline_from(doc) if doc else None

    async def recent_events(self, pipeline_id: str, message_id: str) -> list[str] | None:
        doc = await self._col.find_one({"_id": pipeline_id, "_recent.id": message_id}, {"_recent": 1})
        if not doc:
            return None
        found = applied_for((Applied.from_doc(r) for r in doc["_recent"]), message_id)
        return found.events if found else []

    async def save(self, pipeline: Pipeline, expected_version: int | None, message_id: str, events: list[str], keep: int) -> bool:
        """Store a pipeline change; False when another writer got there first."""
        doc = pipeline.model_dump()
        doc["_id"] = pipeline.pipeline_id
        previous = await self._col.find_one({"_id": pipeline.pipeline_id}, {"_recent": 1})
        recent = [Applied.from_doc(r) for r in (previous or {}).get("_recent", [])]
        doc["_recent"] = [r.to_doc() for r in kept([*recent, Applied(message_id, events)], keep)]
        try:
            if expected_version is None:
                await self._col.insert_one(doc)
                return True
            result = await self._col.replace_one({"_id": pipeline.pipeline_id, "version": expected_version}, doc)
            return result.matched_count == 1
        except DuplicateKeyError:
            return False

    async def ensure_default(self, pipeline: Pipeline, announcement: str) -> str | None:
        """Insert the default pipeline once; return its creation event until that is marked announced."""
        try:
            doc = pipeline.model_dump()
            doc.update({"_id": pipeline.pipeline_id, "_recent": [], "_announced": False, "_announcement": announcement})
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            pass
        doc = await self._col.find_one({"_id": pipeline.pipeline_id})
        return None if doc.get("_announced", True) else doc.get("_announcement")

    async def mark_announced(self, pipeline_id: str) -> None:
        await self._col.update_one({"_id": pipeline_id}, {"$set": {"_announced": True}})


def _pipeline_from(doc: dict[str, Any]) -> Pipeline:
    return Pipeline.model_validate({k: v for k, v in doc.items() if not k.startswith("_")})


class DirectoryRepository:
    """Latest known contacts, companies and products from upstream, guarded by their version."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["directory"]

    async def upsert(self, kind: str, record_id: str, version: int, data: dict[str, Any]) -> bool:
        """Keep the record unless a newer version is stored; False only for a stale one.

        A repeated version is True too: a batch retried after its refresh commands failed to go out
        finds its record stored already, and must send them again (their ids repeat, so a lead that
        applied one before dedupes it)."""
        key = f"{kind}:{record_id}"
        try:
            result = await self._col.update_one(
                {"_id": key, "version": {"$lt": version}},
                {"$set": {"kind": kind, "record_id": record_id, "version": version, "data": data}},
                upsert=True,
            )
        except DuplicateKeyError:  # a document with this id and an equal or newer version exists
            return await self._col.find_one({"_id": key, "version": version}, {"_id": 1}) is not None
        return result.modified_count == 1 or result.upserted_id is not None

    async def get_many(self, kind: str, record_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = sorted({f"{kind}:{r}" for r in record_ids if r})
        return {d["record_id"]: d["data"] for d in await find_by_ids(self._col, keys)}
