"""What the importer knows of leads with an external id, so a re-import updates them: a segment per batch and bucket.

A numbered external id (``CRM-00123``, ``bench-9``) shares a bucket with the 999 numbers beside it
(``domain.external_id_bucket``); the consumer writes each batch's cards of one bucket as one segment
document, and a chunk's lookup reads the segments of its few buckets by an indexed scalar field.
One document per lead, as before, cost FerretDB a write per imported row. An array of ids with an
index would not do: FerretDB 1.24 reads every document for ``$in`` on an array field (a re-import
of 100,000 rows measured 3,440 µs of FerretDB CPU a row that way against 24 µs a row by ``_id``;
bench/bench_import_index.py). Other external ids keep a document each, keyed by the id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from bson import Binary
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from crmkit.mongo import ensure_indexes, find_by_ids
from services.importer.domain import KnownLead, external_id_bucket

_DUPLICATE_KEY = 11000
# A bucket read with more segments than this is written back as one (its readers decode every segment).
COMPACT_AFTER = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Projected:
    """What the importer keeps of a lead card with an external id."""

    external_id: str
    fields: dict[str, Any]  # the card's ROW_FIELDS as JSON values
    version: int = 0


def _bucket_key(bucket: str) -> str:
    # A hex digest: the ``ix_`` convention (characters JSON never escapes) lets FerretDB serve `$in` from the index.
    return hashlib.blake2b(bucket.encode(), digest_size=12).hexdigest()


@dataclasses.dataclass
class _Entry:
    lead_id: str
    fields: dict[str, Any]
    created_by_import: str | None
    version: int
    at: datetime | None  # when its segment was written; None for a document of its own

    def newer_than(self, other: _Entry) -> bool:
        # One lead's cards come in order of version; when two leads share an external id the latest written wins.
        if self.lead_id == other.lead_id:
            return self.version >= other.version
        return other.at is None or (self.at is not None and self.at >= other.at)


class ExternalIdProjection:
    """Leads with an external id, by external id: numbered ids in bucket segments, others a document each."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["lead_index"]  # one document per external id (every id before the segments)
        self._segments = db["lead_index_segments"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self._segments, [IndexModel([("ix_bucket", ASCENDING)], name="ix_bucket_1")])

    async def apply(self, cards: dict[str, Projected], created_by: dict[str, str], now: datetime) -> None:
        """Cards are the latest per lead in a batch (events of one lead arrive in order)."""
        segments: dict[str, dict[str, list]] = {}
        new, changed = [], []
        for lead_id, card in cards.items():
            bucket = external_id_bucket(card.external_id)
            if bucket is not None:
                segments.setdefault(bucket, {})[card.external_id] = [lead_id, card.fields, created_by.get(lead_id), card.version]
                continue
            # The fields are one JSON string: FerretDB stores a nested document field by field.
            doc = {"_id": card.external_id, "lead_id": lead_id, "fields": orjson.dumps(card.fields).decode(), "version": card.version}
            if lead_id in created_by:
                new.append({**doc, "created_by_import": created_by[lead_id]})
            else:
                changed.append(doc)
        if segments:
            await self._segments.insert_many([_segment(bucket, entries, now) for bucket, entries in segments.items()])
        await self._apply_documents(new, changed)

    async def _apply_documents(self, new: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        # Creations are most of an import: one batched insert; a replay falls back to updates.
        if new:
            try:
                await self._col.insert_many(new, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise
                changed.extend(new[e["index"]] for e in exc.details["writeErrors"])
        if changed:
            await self._col.bulk_write([UpdateOne({"_id": doc.pop("_id")}, {"$set": doc}, upsert=True) for doc in changed],
                                       ordered=True)

    async def by_external_ids(self, external_ids: Iterable[str]) -> dict[str, KnownLead]:
        """What is known of each of these external ids: one lookup per 500 ids, and one for the chunk's buckets."""
        ids = sorted(set(external_ids))
        if not ids:
            return {}
        found: dict[str, _Entry] = {
            doc["_id"]: _Entry(doc["lead_id"], _fields_of(doc), doc.get("created_by_import"), doc.get("version", -1), None)
            for doc in await find_by_ids(self._col, ids)
        }
        buckets = {_bucket_key(b) for b in map(external_id_bucket, ids) if b is not None}
        if buckets:
            wanted = set(ids)
            for key, docs in (await self._segments_of(buckets)).items():
                for external_id, entry in _merged(docs).items():
                    if external_id in wanted:
                        _keep_newer(found, external_id, entry)
                if len(docs) > COMPACT_AFTER:
                    await self._compact(key, docs)
        return {e: KnownLead(entry.lead_id, entry.fields, entry.created_by_import) for e, entry in found.items()}

    async def _segments_of(self, buckets: set[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        async for doc in self._segments.find({"ix_bucket": {"$in": sorted(buckets)}}):
            found.setdefault(doc["ix_bucket"], []).append(doc)
        return found

    async def _compact(self, key: str, docs: list[dict[str, Any]]) -> None:
        """Write a bucket's segments back as one; a segment written meanwhile is newer and stays beside it."""
        entries = {e: [x.lead_id, x.fields, x.created_by_import, x.version, x.at.isoformat() if x.at else None]
                   for e, x in _merged(docs).items()}
        # The merged segment is as old as the newest it comes from; each entry keeps its own time.
        await self._segments.insert_one(_segment(None, entries, max(doc["at"] for doc in docs), key=key))
        await self._segments.delete_many({"_id": {"$in": [doc["_id"] for doc in docs]}})


def _segment(bucket: str | None, entries: dict[str, list], at: datetime, *, key: str | None = None) -> dict[str, Any]:
    return {"_id": uuid.uuid4().hex, "ix_bucket": key or _bucket_key(bucket or ""), "at": at, "entries": _packed(entries)}


def _packed(entries: dict[str, list]) -> Binary:
    """A segment's entries as compressed JSON bytes.

    Not a nested document: FerretDB stores one field by field and decodes it so on every read. Not a
    JSON string either: 500 rows' entries are ~180 kB that FerretDB escapes into its own JSON and
    SQLite spreads over overflow pages; zlib at level 1 makes them ~25 kB, and FerretDB's CPU for
    the insert 2.4 -> 0.9 ms for a 500-row segment; a re-import of 20,000 unchanged rows, which reads them,
    15.5/16.5 -> 10.5/8.5 µs of FerretDB CPU a row (alternating runs, bench_import.py --reimport)."""
    return Binary(zlib.compress(orjson.dumps(entries), 1))


def _unpacked(stored: bytes | str) -> dict[str, list]:
    """A segment's entries: compressed bytes, or the JSON string segments were written as before."""
    return orjson.loads(zlib.decompress(stored) if isinstance(stored, bytes) else stored)


def _merged(docs: list[dict[str, Any]]) -> dict[str, _Entry]:
    """Each external id's newest entry in these segments."""
    merged: dict[str, _Entry] = {}
    for doc in sorted(docs, key=lambda d: (d["at"], d["_id"])):
        for external_id, values in _unpacked(doc["entries"]).items():
            lead_id, fields, created_by, version = values[:4]
            at = datetime.fromisoformat(values[4]) if len(values) > 4 and values[4] else doc["at"]
            _keep_newer(merged, external_id, _Entry(lead_id, fields, created_by, version, at))
    return merged


def _keep_newer(found: dict[str, _Entry], external_id: str, entry: _Entry) -> None:
    known = found.get(external_id)
    if known is not None and not entry.newer_than(known):
        return
    if known is not None and known.lead_id == entry.lead_id and entry.created_by_import is None:
        entry.created_by_import = known.created_by_import  # a later card of the lead the import created
    found[external_id] = entry


def _fields_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A document's fields: a JSON string, or a document as written before it was one."""
    fields = doc.get("fields")
    if isinstance(fields, str):
        return json.loads(fields)
    return fields or {}
