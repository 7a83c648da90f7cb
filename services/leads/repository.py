"""Where leads, pipelines and directory snapshots live in MongoDB: the queries (a lead's document shape: documents.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crmkit.mongo import IDS_PER_QUERY, ensure_indexes, find_by_ids
from services.leads import readmodel
from services.leads.counters import Change
from services.leads.documents import LeadWrite, Recent, StoredLead, lead_document, stored_card, stored_lead
from services.leads.pipelines import PipelineRepository
from services.leads.domain import Lead

log = logging.getLogger("services.leads.repository")

# The document codec's names and the pipelines' repository, importable from here as before they had modules of their own.
__all__ = [
    "DirectoryRepository", "LeadRepository", "LeadWrite", "LeadsMeta", "PipelineRepository", "Recent", "StoredLead",
    "lead_document", "stored_lead",
]


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

    async def get_many(self, lead_ids: Iterable[str], changes: dict[str, list[Change]] | None = None) -> dict[str, StoredLead]:
        """Load leads by id (``_id $in`` chunks, served from the ``_id`` index on both backends); ``changes``
        gets each lead's stored board changes (services/leads/counters.py)."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        docs = await find_by_ids(self._col, ids, _STORED_FIELDS)
        if changes is not None:
            changes.update({doc["_id"]: [Change.from_doc(c) for c in orjson.loads(doc[_CHANGES])] for doc in docs if doc.get(_CHANGES)})
        return {doc["_id"]: stored_lead(doc) for doc in docs}

    async def empty(self) -> bool:
        return await self._col.find_one({}, {"_id": 1}) is None

    async def get(self, lead_id: str) -> Lead | None:
        """The card of one lead: a ``find`` command of one batch, without the cursor ``find_one`` makes and closes
        (~40 of the ~800 µs of the leads process's CPU a ``GET /leads/{id}`` costs); the same query, options and document."""
        col = self._col
        command: dict[str, Any] = {"find": col.name, "filter": {"_id": lead_id}, "projection": _CARD_FIELDS, "limit": 1, "singleBatch": True}
        if col.read_concern.document:
            command["readConcern"] = col.read_concern.document
        reply = await col.database.command(command, read_preference=col.read_preference, codec_options=col.codec_options)
        found = reply["cursor"]["firstBatch"]
        return stored_card(found[0]) if found else None

    async def save(self, writes: Sequence[LeadWrite], changes: Mapping[str, list[Change]] | None = None) -> set[str]:
        """Store all writes in one bulk call; return the ids that lost a race (to be re-applied).

        New leads are inserted blind: a duplicate id means the lead exists after all (a redelivered
        create), and the caller re-reads it. Changes replace the document by id; with
        ``strict_versions`` the replace also names the version read, so a concurrent writer is
        detected (on MongoDB, and on the local FerretDB build, whose write patches apply the guard and
        the write in one transaction); which write landed is told by ``_written_by``.

        ``changes``: per lead, the board changes its document carries (written with it, so a crash
        before the counters are written loses none of them).
        """
        if not writes:
            return set()
        ops: list[Any] = []
        for w in writes:
            doc = lead_document(w)
            if changes and (found := changes.get(w.lead.lead_id)):
                doc[_CHANGES] = orjson.dumps([c.to_doc() for c in found]).decode()
            if w.expected_version is None:
                ops.append(InsertOne(doc))
            elif self.strict_versions:
                ops.append(ReplaceOne({"_id": w.lead.lead_id, "version": w.expected_version}, doc))
            else:
                ops.append(ReplaceOne({"_id": w.lead.lead_id}, doc))
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
            conflicted |= {w.lead.lead_id for w in replaces if not _written_by(current.get(w.lead.lead_id), w)}
        return conflicted

    async def duplicate_candidates(self, keys: Iterable[Mapping[str, str]]) -> dict[str, dict[str, str]]:
        """Live stored leads sharing any normalised key with these, with the keys they share: one indexed
        ``$or`` lookup of every key kind (an ``$in`` of at most 500 values a branch) for a whole chunk of creates.

        Only the shared keys: a stored lead's other keys equal none of these leads' (else that kind's
        branch would have found it), so they cannot count in a score. One ``$or`` instead of one find
        per kind: each find costs the client ~0.4 ms of CPU whatever it returns (two of the three
        usually return nothing), and the patched FerretDB reads each branch from its own index
        (crmctl/ferretdb_go/pushdown.go.txt, crmOrCondition). As the ``ix_`` branches select exactly,
        it neither filters the rows again nor decodes more of each than the keys asked for
        (crmctl/ferretdb_reads.py): 41 -> 23 µs of its CPU a create that finds a stored duplicate.
        The first batch big enough for every match spares the driver a getMore (2 µs a match).
        """
        wanted: dict[str, set[str]] = defaultdict(set)
        for lead_keys in keys:
            for kind, value in lead_keys.items():
                wanted[kind].add(value)
        fields = {f"ix_{kind}": 1 for kind in wanted}
        found: dict[str, dict[str, str]] = defaultdict(dict)
        for branches in _or_lookups(wanted):
            query = branches[0] if len(branches) == 1 else {"$or": branches}
            async for doc in self._col.find(query, fields, batch_size=_CANDIDATES_BATCH):
                for kind, values in wanted.items():
                    if (value := doc.get(f"ix_{kind}")) in values:
                        found[doc["_id"]][kind] = value
        return dict(found)

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
        pipeline_ids: Sequence[str] | None = None,
    ) -> tuple[list[Lead], str | None]:
        """A page of leads, newest change first, with an opaque cursor for the next page.

        ``pipeline_ids`` (the pipelines a user may see, when some are hidden) limits a list that names
        no pipeline: read as one range per pipeline, merged, when no other filter keys the list.

        One range of one list key (the most selective filter given), read in the key's order from its
        index; other filters and the search words are checked on the rows of that range. A later page
        starts where the last one ended (keyset), so it costs what the first costs.
        """
        plain = {
            "pipeline_id": pipeline_id, "stage_id": stage_id, "status": status,
            "responsible_id": responsible_id, "source": source,
        }
        plain = {k: v for k, v in plain.items() if v}
        keyed = _keyed_range(plain)
        after = _decode_cursor(cursor) if cursor else None
        # The keyed filter's own fields are in its key; the others are checked row by row.
        query: dict[str, Any] = {k: v for k, v in plain.items() if k not in _KEYED_FIELDS[keyed[0]]}
        if text and text.strip():
            query["$and"] = [{"ix_terms": {"$regex": f" {word}"}} for word in readmodel.query_words(text)]
        ranges = [keyed]
        seen = None if pipeline_ids is None or pipeline_id else set(pipeline_ids)
        if seen is not None and keyed[0] == "all":
            ranges = [("pipeline", (p,)) for p in sorted(seen)]  # the visible pipelines' own ranges
        elif seen is not None:
            query["pipeline_id"] = {"$in": sorted(seen)}
        pages = []
        for (filter_name, value), deleted in ((r, x) for r in ranges for x in ((False, True) if include_deleted else (False,))):
            field_name = f"ix_{filter_name}"
            start = readmodel.prefix(filter_name, value, deleted=deleted)
            bounds = {"$gt": start, "$lt": start + after if after else start[:-1] + ";"}
            docs = self._col.find({field_name: bounds, **query}, {**_PAGE_FIELDS, field_name: 1})
            docs = docs.sort(field_name, DESCENDING).limit(limit + 1)
            pages += [(d[field_name][len(start):], d) async for d in docs]
        # Deleted and live leads are two ranges: merged here by their key's tail (the last change).
        pages.sort(key=lambda item: item[0], reverse=True)
        page = pages[:limit]
        next_cursor = page[-1][0] if len(pages) > limit else None
        # A hash shared by two filter values would put a stranger in the range: checked here.
        leads = [stored_card(d) for _, d in page if all(d.get(k) == v for k, v in plain.items())
                 and (seen is None or d.get("pipeline_id") in seen)]
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


# What the read side takes of a lead document: the card is in the blob; a page also checks its rows'
# plain fields and reads its key's tail for the cursor. The rest of the document (~25 fields, half its
# size) is neither encoded by the server nor decoded here.
_CARD_FIELDS = {"blob": 1}
_CANDIDATES_BATCH = 1000  # a duplicate lookup's first batch: every match of a chunk, as a rule, in one reply
_CANDIDATE_VALUES = 3 * IDS_PER_QUERY  # keys one duplicate lookup asks for: a chunk of 500 creates' three kinds


def _or_lookups(wanted: Mapping[str, set[str]]) -> list[list[dict[str, Any]]]:
    """The branches of each duplicate lookup: ``$in`` of at most IDS_PER_QUERY values of one kind (the
    longest the patched FerretDB serves from the index), at most _CANDIDATE_VALUES values a lookup."""
    lookups: list[list[dict[str, Any]]] = [[]]
    size = 0
    for kind, values in sorted(wanted.items()):
        ordered = sorted(values)
        for start in range(0, len(ordered), IDS_PER_QUERY):
            part = ordered[start:start + IDS_PER_QUERY]
            if size and size + len(part) > _CANDIDATE_VALUES:
                lookups.append([])
                size = 0
            lookups[-1].append({f"ix_{kind}": {"$in": part}})
            size += len(part)
    return [branches for branches in lookups if branches]


_PAGE_FIELDS = {"blob": 1, "pipeline_id": 1, "stage_id": 1, "status": 1, "responsible_id": 1, "source": 1}

# The field of a lead document holding its board changes not known to be counted (counters.Change.to_doc),
# as one JSON string: FerretDB converts each nested field on every write and read (an array of documents
# here cost 40-60 µs of its CPU per create, measured with bench_leads), a string it stores as it is.
_CHANGES = "board_changes"
# What the write path reads back of a lead it changes: the lead and its applied messages are in the blob,
# its uncounted board changes beside it; the read fields are made again from the new card on every write.
# The rest not sent: 50 -> 35 µs of FerretDB's CPU and 13 -> 5 µs of this process's a lead (1,000 stored
# leads read by _id $in of 333, scratch run).
_STORED_FIELDS = {"blob": 1, _CHANGES: 1}

_KEYED_FIELDS = {
    "all": (), "stage": ("pipeline_id", "stage_id"), "responsible": ("responsible_id",),
    "source": ("source",), "status": ("status",), "pipeline": ("pipeline_id",),
}


def _range(filter_name: str, value: tuple[str, ...], *, deleted: bool) -> dict[str, Any]:
    start = readmodel.prefix(filter_name, value, deleted=deleted)
    return {f"ix_{filter_name}": {"$gt": start, "$lt": start[:-1] + ";"}}


_CURSOR = re.compile(r"[0-9]{13}[0-9a-f]*")


def _keyed_range(plain: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """The list key a search reads (the most selective of the filters given) and its value."""
    pipeline_id, stage_id = plain.get("pipeline_id"), plain.get("stage_id")
    values: dict[str, tuple[str, ...] | None] = {
        "stage": (pipeline_id, stage_id) if pipeline_id and stage_id else None,
        "responsible": (plain["responsible_id"],) if "responsible_id" in plain else None,
        "source": (plain["source"],) if "source" in plain else None,
        "status": (plain["status"],) if "status" in plain else None,
        "pipeline": (pipeline_id,) if pipeline_id else None,
    }
    return next(((name, values[name]) for name in readmodel.KEYED_FILTERS if values[name]), ("all", ()))


def _decode_cursor(cursor: str) -> str:
    """The key tail a page ended at; cursors of the earlier format (JSON of time and id) still work."""
    if _CURSOR.fullmatch(cursor):
        return cursor
    try:
        at, lead_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return readmodel.key_tail(datetime.fromisoformat(at), str(lead_id))
    except Exception as exc:
        raise ValueError("the cursor is not one this service issued; start again without it") from exc


def _written_by(stored: StoredLead | None, write: LeadWrite) -> bool:
    """Whether ``stored`` is what ``write`` wrote. The version alone cannot tell: another writer that read the
    same version (a merge writing the other lead, that lead's own instance) stores the same number, and
    taking its change for ours lost one of the two (and miscounted the board). The last applied message
    tells them apart."""
    if stored is None or stored.version != write.lead.version:
        return False
    return [r.message_id for r in stored.recent[-1:]] == [r.message_id for r in write.recent[-1:]]


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
