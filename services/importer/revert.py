"""What undoing an import sends: a delete for each lead it created, the saved values back on each it updated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from contracts import build_message
from contracts.leads import DeleteLead, UpdateLead
from contracts.topics import LEADS_COMMANDS
from crmkit.messaging import Outbound
from services.importer import domain as d
from services.importer.row_records import RowRecords


async def revert_commands(
    rows: RowRecords, job: d.ImportJob, source: str, event_id: Any
) -> AsyncIterator[tuple[str, Outbound]]:
    """The commands of a revert, each with what it does (``removed`` or ``restored``); ids fixed by the row."""
    correlation = f"crm-import-revert:{job.import_id}"
    actor = job.revert_actor_id or job.actor_id
    async for row, lead_id in rows.rows_with(job.import_id, "created"):
        message = build_message(DeleteLead(lead_id=lead_id), source=source, actorid=actor,
                                id=event_id(job.import_id, "revert-delete", row), correlationid=correlation,
                                traceparent=job.traceparent)
        yield "removed", Outbound(LEADS_COMMANDS, message, key=lead_id)
    updated = [row async for row, _ in rows.rows_with(job.import_id, "updated")]
    saved = await rows.previous_values(job.import_id)
    # Latest row first, so a lead updated by several rows ends with the values from before the first.
    for row in sorted(updated, reverse=True):
        if row not in saved:
            continue
        lead_id, values = saved[row]
        set_values, clear = d.revert_of(values)
        message = build_message(
            UpdateLead.model_validate({**set_values, "lead_id": lead_id, "clear": clear}),
            source=source, actorid=actor, id=event_id(job.import_id, "revert-update", row), correlationid=correlation,
            traceparent=job.traceparent,
        )
        yield "restored", Outbound(LEADS_COMMANDS, message, key=lead_id)
