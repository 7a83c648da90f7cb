"""What undoing an import sends: a delete for each lead it created, the saved values back on each it updated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from contracts import build_message
from contracts.leads import DeleteLead, UpdateLead
from contracts.topics import LEADS_COMMANDS
from crmkit.messaging import Outbound
from services.importer import domain as d
from services.importer.repository import ImportRepository


async def revert_commands(
    imports: ImportRepository, job: d.ImportJob, source: str, event_id: Any
) -> AsyncIterator[tuple[str, Outbound]]:
    """The commands of a revert, each with what it does (``removed`` or ``restored``); ids fixed by the row."""
    correlation = f"crm-import-revert:{job.import_id}"
    actor = job.revert_actor_id or job.actor_id
    async for row, lead_id in imports.rows_with(job.import_id, "created"):
        message = build_message(DeleteLead(lead_id=lead_id), source=source, actorid=actor,
                                id=event_id(job.import_id, "revert-delete", row), correlationid=correlation,
                                traceparent=job.traceparent)
        yield "removed", Outbound(LEADS_COMMANDS, message, key=lead_id)
    updated = [row async for row, _ in imports.rows_with(job.import_id, "updated")]
    # Latest row first, so a lead updated by several rows ends with the values from before the first.
    for row in sorted(updated, reverse=True):
        saved = await imports.previous_of(job.import_id, row)
        if saved is None:
            continue
        lead_id, values = saved
        set_values, clear = d.revert_of(values)
        message = build_message(
            UpdateLead.model_validate({**set_values, "lead_id": lead_id, "clear": clear}),
            source=source, actorid=actor, id=event_id(job.import_id, "revert-update", row), correlationid=correlation,
            traceparent=job.traceparent,
        )
        yield "restored", Outbound(LEADS_COMMANDS, message, key=lead_id)
