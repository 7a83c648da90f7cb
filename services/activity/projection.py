"""Where the activity service keeps its projection of leads in MongoDB: facts, agendas, reactions (document shapes)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmkit.applied import Applied, kept
from crmkit.mongo import find_by_ids, upsert_ignoring_stale
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.activity.domain import LeadInfo


@dataclass(frozen=True)
class ProjectedLead:
    """A projected lead, with how far its tasks follow it: whether they were last brought in line with it
    deleted or live, and the reactions of the last facts that did so (replayed on redelivery)."""

    lead: LeadInfo
    tasks_deleted: bool
    reactions: list[Applied[dict[str, str]]]


def folded(facts: Sequence[tuple[str, int, dict[str, Any]]]) -> list[tuple[str, int, dict[str, Any]]]:
    """One write per lead and version: the events of one change (a stage change and the card's update share a
    version) pass the same version guard, so their facts merged, later ones winning, make the same write."""
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for lead_id, version, values in facts:
        merged.setdefault((lead_id, version), {}).update(values)
    return [(lead_id, version, values) for (lead_id, version), values in merged.items()]


def _agenda_key(task_id: str) -> str:
    # A task id is the sender's string: hashed, so that no dot or dollar sign can become a field path.
    return hashlib.sha1(task_id.encode()).hexdigest()[:20]


class LeadProjection:
    """The projection of leads from crm.leads.events.v1, newest version wins.

    Each lead also keeps its agenda, the due time of each of its open tasks, so that its summary is one
    small read instead of reading every open task of the lead. The agenda is a document of its own
    (``agendas``), beside the lead's facts: FerretDB reads and rewrites a whole document for each update,
    and a lead's facts written beside ten agenda entries cost 180-210 µs of its CPU against 50-60 alone
    (a qualification writes every qualified lead's facts; its tasks' agendas are not touched then)."""

    def __init__(self, db: AsyncDatabase, reactions_kept: int = 8) -> None:
        self._col = db["leads"]
        self._agendas = db["agendas"]
        self._kept = reactions_kept

    async def apply_many(self, facts: Sequence[tuple[str, int, dict[str, Any]]]) -> dict[str, ProjectedLead]:
        """Apply lead events' facts (id, version, facts) unless a newer version is known, in one request; then
        every lead they name as it is now."""
        # A lead first projected here has had every change of its tasks kept in ``agendas``: no agenda there
        # means none open (``_APART``), and its first task needs no read of its tasks to rebuild one.
        await upsert_ignoring_stale(
            self._col,
            [({"_id": lid, "version": {"$lte": v}}, {"$set": {**f, "version": v}, "$setOnInsert": {_APART: True}})
             for lid, v, f in folded(facts)],
        )
        docs = await find_by_ids(self._col, [lid for lid, _, _ in facts])
        return {
            doc["_id"]: ProjectedLead(
                _lead_from(doc), bool(doc.get("_tasks_deleted", False)),
                [Applied.from_doc(r) for r in doc.get("_reactions") or []],
            )
            for doc in docs
        }

    async def reacted(self, projected: ProjectedLead, applied: Applied[dict[str, str]]) -> ProjectedLead:
        """Record that the lead's tasks follow its current deleted state, with what the fact that did it published."""
        reactions = kept([*projected.reactions, applied], self._kept)
        deleted = projected.lead.deleted
        await self._col.update_one(
            {"_id": projected.lead.lead_id},
            {"$set": {"_tasks_deleted": deleted, "_reactions": [r.to_doc() for r in reactions]}},
        )
        return ProjectedLead(projected.lead, deleted, reactions)

    async def agendas(self, lead_ids: Iterable[str]) -> dict[str, dict[str, datetime] | None]:
        """Each known lead's agenda; None where it is not known here: to be rebuilt from the lead's open tasks."""
        return (await self.read_many(lead_ids))[1]

    async def old_agendas(self, lead_ids: Sequence[str]) -> dict[str, Any]:
        """The agendas an older version kept in these leads' documents (``_open``), as stored, by lead."""
        if not lead_ids:
            return {}
        docs = await self._col.find({"_id": {"$in": sorted(lead_ids)}, "_open": {"$exists": True}}, {"_open": 1}).to_list(None)
        return {doc["_id"]: doc["_open"] for doc in docs}

    async def keep_agendas(
        self, changes: Mapping[str, Mapping[str, datetime | None]], rebuilt: Mapping[str, Mapping[str, datetime]],
        old: Mapping[str, Any] | None = None,
    ) -> None:
        """Apply task changes to the leads' agendas (a due time, or None for a task no longer open) and store the
        agendas rebuilt whole, in one request.

        ``old`` holds the agendas kept the old way as they were read before the rebuild read the open tasks:
        each is dropped only if still as read. An older instance's write to it since (a rolling upgrade: its
        task may be missing from the rebuild) keeps it, so the next batch rebuilds the agenda again."""
        ops = []
        for lead_id, entries in changes.items():
            update: dict[str, Any] = {}
            for task_id, due in entries.items():
                if due is None:
                    update.setdefault("$unset", {})[f"open.{_agenda_key(task_id)}"] = ""
                else:
                    update.setdefault("$set", {})[f"open.{_agenda_key(task_id)}"] = {"id": task_id, "due": due}
            if update:  # the first entries of a lead's agenda make its document
                ops.append(UpdateOne({"_id": lead_id}, update, upsert=True))
        for lead_id, agenda in rebuilt.items():
            whole = {_agenda_key(tid): {"id": tid, "due": due} for tid, due in agenda.items()}
            ops.append(UpdateOne({"_id": lead_id}, {"$set": {"open": whole}}, upsert=True))
        if ops:
            await self._agendas.bulk_write(ops, ordered=False)
        stale = [UpdateOne({"_id": lead_id, "_open": value}, {"$unset": {"_open": ""}}) for lead_id, value in (old or {}).items()
                 if lead_id in rebuilt]
        if stale:  # stored apart now: a copy kept the old way is no longer the lead's agenda
            await self._col.bulk_write(stale, ordered=False)

    async def get(self, lead_id: str) -> LeadInfo | None:
        doc = await self._col.find_one({"_id": lead_id})
        return _lead_from(doc) if doc else None

    async def get_many(self, lead_ids: Iterable[str]) -> dict[str, LeadInfo]:
        """The projected leads among ``lead_ids``, in one read."""
        return (await self.read_many(lead_ids))[0]

    async def read_many(self, lead_ids: Iterable[str]) -> tuple[dict[str, LeadInfo], dict[str, dict[str, datetime] | None]]:
        """The projected leads among ``lead_ids`` and their agendas (as ``agendas`` gives them), in one read."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}, {}
        docs = await find_by_ids(self._col, ids)
        kept = {doc["_id"]: doc for doc in await find_by_ids(self._agendas, [doc["_id"] for doc in docs])} if docs else {}
        return {doc["_id"]: _lead_from(doc) for doc in docs}, {doc["_id"]: _agenda_of(doc, kept.get(doc["_id"])) for doc in docs}


# Set on a lead's document when this version first projects it (see apply_many).
_APART = "_agendas_apart"


def _agenda_of(lead: dict[str, Any], kept: dict[str, Any] | None) -> dict[str, datetime] | None:
    """A lead's agenda, or None where it must be rebuilt from its open tasks.

    An older version kept the agenda in the lead's document (``_open``): one there was written by it (the lead
    not touched here since, or an instance of that version worked its tasks during a rolling upgrade), and
    neither it nor the one kept apart can be trusted to hold every change. The rebuild drops it."""
    if "_open" in lead:
        return None
    if kept is not None:
        return {e["id"]: e["due"] for e in (kept.get("open") or {}).values()}
    return {} if lead.get(_APART) else None


def _lead_from(doc: dict[str, Any]) -> LeadInfo:
    return LeadInfo.model_validate({**{k: v for k, v in doc.items() if not k.startswith("_")}, "lead_id": doc["_id"]})
