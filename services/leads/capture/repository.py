"""Where capture forms and the per-address submission counts are kept (the only code knowing their documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crmkit.applied import Applied, applied_for, kept
from crmkit.mongo import ensure_indexes
from services.leads.capture import keys
from services.leads.domain.capture import CaptureForm, Seal

# Where forms stored before keys were hashed kept the key as given (sealed when read, and at start).
_PLAIN_KEY = "secret_key"


class CaptureFormRepository:
    """Capture forms by id, each with the recent commands applied to it (to dedupe redeliveries)."""

    def __init__(self, db: AsyncDatabase, seal: Seal = keys.seal) -> None:
        self._col = db["capture_forms"]
        self._seal = seal

    async def get(self, form_id: str) -> CaptureForm | None:
        doc = await self._col.find_one({"_id": form_id})
        if doc is not None and _PLAIN_KEY in doc:  # stored by an older instance: sealed now, before it is used
            doc = await self._sealed(doc)
        return _form_from(doc) if doc else None

    async def seal_plain_keys(self) -> int:
        """Replace every key stored as given (by an older version) with its salted hash; how many forms had one."""
        found = [doc async for doc in self._col.find({_PLAIN_KEY: {"$exists": True}}, {_PLAIN_KEY: 1})]
        for doc in found:
            await self._sealed(doc)
        return len(found)

    async def _sealed(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        plain = doc.get(_PLAIN_KEY)
        change: dict[str, Any] = {"$unset": {_PLAIN_KEY: ""}}
        if plain:
            change["$set"] = {"secret_key_hash": self._seal(plain)}
        # Only while that key is still the stored one: another instance may have sealed it, or a newer form replaced it.
        await self._col.update_one({"_id": doc["_id"], _PLAIN_KEY: plain}, change)
        return await self._col.find_one({"_id": doc["_id"]})

    async def live_ids(self, form_ids: list[str]) -> set[str]:
        """Which of these forms exist and are not deleted."""
        if not form_ids:
            return set()
        return {d["_id"] async for d in self._col.find({"_id": {"$in": form_ids}, "deleted": False}, {"_id": 1})}

    async def recent_events(self, form_id: str, message_id: str) -> list[str] | None:
        doc = await self._col.find_one({"_id": form_id, "_recent.id": message_id}, {"_recent": 1})
        if not doc:
            return None
        found = applied_for((Applied.from_doc(r) for r in doc["_recent"]), message_id)
        return found.events if found else []

    async def save(self, form: CaptureForm, expected_version: int | None, message_id: str, events: list[str], keep: int) -> bool:
        """Store a form change; False when another writer got there first."""
        previous = await self._col.find_one({"_id": form.form_id}, {"_recent": 1})
        recent = [Applied.from_doc(r) for r in (previous or {}).get("_recent", [])]
        doc = {**form.model_dump(), "_id": form.form_id}
        doc["_recent"] = [r.to_doc() for r in kept([*recent, Applied(message_id, events)], keep)]
        try:
            if expected_version is None:
                await self._col.insert_one(doc)
                return True
            result = await self._col.replace_one({"_id": form.form_id, "version": expected_version}, doc)
            return result.matched_count == 1
        except DuplicateKeyError:
            return False


def _form_from(doc: dict[str, Any]) -> CaptureForm:
    return CaptureForm.model_validate({k: v for k, v in doc.items() if not k.startswith("_")})


class SubmissionCounts:
    """Submissions per form and client address in fixed one-minute windows, shared by every instance."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["capture_rates"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self._col, [IndexModel([("expires_at", ASCENDING)], name="expires_at_1")])

    async def count(self, form_id: str, client: str, window: int, expires_at: datetime) -> int:
        """Add one submission to the window and return the window's count so far."""
        doc = await self._col.find_one_and_update(
            {"_id": f"{form_id}\x1f{client}\x1f{window}"},
            {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": expires_at}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["count"])

    async def prune(self, now: datetime) -> int:
        """Forget windows that ended (FerretDB has no TTL index: this runs periodically)."""
        return (await self._col.delete_many({"expires_at": {"$lt": now}})).deleted_count
