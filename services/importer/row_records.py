"""Where an import's row outcomes and the values saved for its revert live: a page per batch, a record per chunk.

Both used to be one document per row, which made the importer write as many documents as the leads
service itself (two per imported row with the lead projection). Now the consumer stores each
consumed batch's outcomes of one import as one page, and the worker each chunk's saved previous
values as one record, so the bookkeeping is O(batches + chunks) documents, not O(rows).

A page is stored once per content (a redelivered batch finds its page there and counts nothing);
a replayed outcome that lands in another page is counted again by the fast counters (and two
consumers racing on FerretDB can lose an addition), so the worker completes a job only after
``exact_counts`` has counted each row once from the pages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crmkit.ids import uuid5
from crmkit.mongo import ensure_indexes

_PAGE_NAMESPACE = uuid.UUID("9a4c2e71-0b3d-4f58-8c16-5e7d3b2a9f04")
# The order in which a row's outcome is taken when (after a replay) it has several: a row is one of them.
KINDS = ("created", "updated", "rejected")


@dataclass(frozen=True)
class Outcome:
    """What the leads service answered to one row's command."""

    import_id: str
    row: int
    outcome: str  # created | updated | rejected
    lead_id: str | None = None


class RowSet:
    """A set of row numbers as a bit per row: a million rows in 125 kB, so counting stays flat in memory."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, row: int) -> bool:
        """Add ``row``; False when it was there already."""
        byte, bit = divmod(row, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte + 1 - len(self._bits) + 1024))
        if self._bits[byte] >> bit & 1:
            return False
        self._bits[byte] |= 1 << bit
        return True


class RowRecords:
    """Outcome pages with their fast counters (``import_counts``), and the chunks' saved previous values."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._pages = db["import_outcomes"]
        self._counts = db["import_counts"]
        self._revert = db["import_revert"]
        # One document per row, as imports before the pages stored them: still read for their revert.
        self._legacy_rows = db["import_rows"]
        self._legacy_previous = db["import_previous"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self._pages, [IndexModel([("import_id", ASCENDING)], name="import_id_1")])
        await ensure_indexes(self._revert, [IndexModel([("import_id", ASCENDING)], name="import_id_1")])

    # --- outcomes (written by the consumer) ----------------------------------------------------

    async def record_outcomes(self, outcomes: Sequence[Outcome], duplicates: Iterable[tuple[str, int]], now: datetime) -> None:
        """One page per import in the batch; the counters grow by the page's outcomes unless it was stored already."""
        pages: dict[str, dict[str, list]] = {}
        for o in outcomes:
            page = pages.setdefault(o.import_id, {kind: [] for kind in (*KINDS, "duplicates")})
            page[o.outcome].append([o.row, o.lead_id] if o.outcome != "rejected" else o.row)
        for import_id, row in duplicates:
            pages.setdefault(import_id, {kind: [] for kind in (*KINDS, "duplicates")})["duplicates"].append(row)
        for import_id, page in pages.items():
            # A JSON string: FerretDB stores a nested document field by field, an array of arrays slowly.
            content = json.dumps(page, separators=(",", ":"), sort_keys=True)
            try:
                await self._pages.insert_one({"_id": uuid5(_PAGE_NAMESPACE, import_id + "\x1f" + content),
                                              "import_id": import_id, "outcomes": content})
            except DuplicateKeyError:
                continue  # the same batch again: counted the first time
            inc = {f"confirmed.{kind}": len(rows) for kind, rows in page.items() if rows}
            await self._counts.update_one({"_id": import_id}, {"$inc": inc, "$set": {"last_outcome_at": now}}, upsert=True)

    async def fast_counts(self, import_id: str) -> tuple[dict[str, int], datetime | None]:
        """The counters as the consumer added them up (a replayed outcome counted twice) and the last outcome's time."""
        doc = await self._counts.find_one({"_id": import_id}) or {}
        return dict(doc.get("confirmed") or {}), doc.get("last_outcome_at")

    async def exact_counts(self, import_id: str) -> dict[str, int]:
        """Each row counted once, from the pages (and per-row documents of older imports); the counters set to it."""
        seen, duplicate = RowSet(), RowSet()
        counts = dict.fromkeys((*KINDS, "duplicates"), 0)
        async for kind, row, _ in self._entries(import_id):
            if kind == "duplicates":
                counts["duplicates"] += duplicate.add(row)
            elif seen.add(row):
                counts[kind] += 1
        await self._counts.update_one({"_id": import_id}, {"$set": {"confirmed": counts}}, upsert=True)
        return counts

    async def rows_with(self, import_id: str, outcome: str) -> AsyncIterator[tuple[int, str]]:
        """Each row with this outcome once, with its lead id (for a revert)."""
        seen = RowSet()
        async for kind, row, lead_id in self._entries(import_id):
            if kind == outcome and seen.add(row):
                yield row, lead_id

    async def _entries(self, import_id: str) -> AsyncIterator[tuple[str, int, str | None]]:
        """(outcome, row, lead id) of every stored outcome, in the order of ``KINDS`` within a page."""
        async for doc in self._pages.find({"import_id": import_id}, {"outcomes": 1}):
            page = json.loads(doc["outcomes"])
            for kind in (*KINDS, "duplicates"):
                for entry in page.get(kind, ()):
                    row, lead_id = (entry[0], entry[1]) if isinstance(entry, list) else (entry, None)
                    yield kind, row, lead_id
        async for doc in self._legacy_rows.find({"import_id": import_id}, {"row": 1, "outcome": 1, "lead_id": 1, "duplicate": 1}):
            yield doc["outcome"], doc["row"], doc.get("lead_id")
            if doc.get("duplicate"):
                yield "duplicates", doc["row"], None

    # --- saved previous values (written by the worker, one record per chunk) ------------------

    async def save_previous(self, import_id: str, first_row: int, previous: dict[int, tuple[str, dict[str, Any]]]) -> None:
        """Keep the chunk's updated leads' values from before the import, before its commands go out."""
        if not previous:
            return
        rows = [[row, lead_id, values] for row, (lead_id, values) in sorted(previous.items())]
        await self._revert.insert_one({
            # Per attempt: a chunk resent after a crash keeps the first attempt's record and adds its own rows.
            "_id": f"{import_id}:{first_row}:{uuid.uuid4().hex}", "import_id": import_id, "first_row": first_row,
            "last_row": rows[-1][0], "rows": json.dumps(rows, separators=(",", ":"), default=str),
        })

    async def saved_after(self, import_id: str, row: int) -> dict[int, dict[str, Any]]:
        """Previous values saved for rows after ``row`` (the checkpoint): the rows an earlier attempt sent already."""
        saved: dict[int, dict[str, Any]] = {}
        async for doc in self._revert.find({"import_id": import_id, "last_row": {"$gt": row}}):
            for r, _, values in json.loads(doc["rows"]):
                if r > row:
                    saved.setdefault(r, values)
        async for doc in self._legacy_previous.find({"import_id": import_id, "row": {"$gt": row}}):
            saved.setdefault(doc["row"], doc["previous"])
        return saved

    async def previous_values(self, import_id: str) -> dict[int, tuple[str, dict[str, Any]]]:
        """Every updated row's lead id and saved values (the first attempt's where a chunk was resent)."""
        found: dict[int, tuple[str, dict[str, Any]]] = {}
        async for doc in self._revert.find({"import_id": import_id}):
            for row, lead_id, values in json.loads(doc["rows"]):
                found.setdefault(row, (lead_id, values))
        async for doc in self._legacy_previous.find({"import_id": import_id}):
            found.setdefault(doc["row"], (doc["lead_id"], doc["previous"]))
        return found
