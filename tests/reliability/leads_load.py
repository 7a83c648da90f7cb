"""Lead commands for the reliability scenarios, built once and sent as raw records."""

from __future__ import annotations

import uuid

from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from tests.integration.leads_helpers import payload
from tests.reliability.harness import LOADGEN, Outgoing, envelope_record
from tests.support import command

# What the leads service consumes (and so has a DLQ for) and publishes.
LEADS_CONSUMES = [LEADS_COMMANDS, DIRECTORY_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS]
LEADS_TOPICS = [*LEADS_CONSUMES, LEADS_EVENTS]


def lead_ids(count: int, tag: str = "L") -> list[str]:
    return [f"{tag}{i:06d}" for i in range(count)]


def create(lead_id: str, **fields) -> Outgoing:
    return envelope_record(
        LEADS_COMMANDS, command(payload("crm.lead.create", lead_id=lead_id, title=f"Lead {lead_id}", **fields), actor=LOADGEN)
    )


def move(lead_id: str, stage_id: str) -> Outgoing:
    return envelope_record(
        LEADS_COMMANDS, command(payload("crm.lead.move", lead_id=lead_id, stage_id=stage_id), actor=LOADGEN, id=str(uuid.uuid4()))
    )


def creates(ids: list[str]) -> list[Outgoing]:
    return [create(lead_id) for lead_id in ids]
