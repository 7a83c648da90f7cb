"""Translate records of the leads, qualification, activity and directory topics into read-model changes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from contracts.topics import DIRECTORY_EVENTS
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import PrincipalRepository
from services.analytics import domain as d
from services.analytics.repository import AnalyticsStore, Changes, changes_offsets

_CARDS = frozenset({"crm.lead.created", "crm.lead.updated"})
_PIPELINES = frozenset({"crm.pipeline.created", "crm.pipeline.updated"})
_TASKS = frozenset({"crm.task.created", "crm.task.updated", "crm.task.completed", "crm.task.cancelled"})


class AnalyticsHandlers:
    """Applies batches to the store; records at offsets already applied are skipped (a redelivery counts once)."""

    def __init__(self, store: AnalyticsStore, principals: PrincipalRepository) -> None:
        self._store = store
        self._principals = principals
        self.positions: dict[tuple[str, int], int] = store.positions()

    def reload_positions(self) -> None:
        self.positions = self._store.positions()

    def changes(self, batch: Sequence[Inbound]) -> Changes:
        """What a batch adds, from the records past this replica's checkpoint only."""
        fresh = [i for i in batch if i.offset >= self.positions.get((i.topic, i.partition), 0)]
        leads, pipelines, tasks, deals = [], [], [], []
        for item in fresh:
            kind, data = item.message.type, item.message.data
            if kind in _CARDS:
                leads.append(d.lead_facts(data))
            elif kind in _PIPELINES:
                pipelines.append(d.pipeline_facts(data))
            elif kind == "crm.pipeline.deleted":
                pipelines.append(d.PipelineFacts(data.pipeline_id, data.version, "", True, ()))
            elif kind in _TASKS:
                tasks.append(d.task_row(data))
            elif kind == "crm.deal.created":
                deals.append(d.DealRow(data.deal_id, data.lead_id))
        return Changes(
            leads=d.newest(leads, lambda f: f.lead.lead_id, lambda f: f.lead.version),
            pipelines=d.newest(pipelines, lambda p: p.pipeline_id, lambda p: p.version),
            tasks=d.newest(tasks, lambda t: t.task_id, lambda t: t.version),
            deals=deals,
            offsets=self._advanced(changes_offsets((i.topic, i.partition, i.offset) for i in batch)),
        )

    def _advanced(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Only the partitions whose checkpoint moves forward (a stale redelivery must not move it back)."""
        return {k: v for k, v in offsets.items() if v > self.positions.get(k, 0)}

    async def advance(self, records: Sequence[tuple[str, int, int]]) -> None:
        """Checkpoint records the handler never saw (dead-lettered), so a restart does not park them again."""
        offsets = self._advanced(changes_offsets(records))
        if offsets:
            await asyncio.to_thread(self._store.apply, Changes(offsets=offsets))
            self.positions.update(offsets)

    async def on_batch(self, batch: list[Inbound]) -> Sequence[Outbound]:
        """Licences and roles to MongoDB (set semantics, replay-safe), everything else to the read model."""
        grants = [i.message for i in batch if i.topic == DIRECTORY_EVENTS and PrincipalRepository.handles(i.message.type)]
        if grants:
            await self._principals.apply(grants)
        changes = self.changes(batch)
        await asyncio.to_thread(self._store.apply, changes)
        for key, offset in changes.offsets.items():
            self.positions[key] = max(self.positions.get(key, 0), offset)
        return ()
