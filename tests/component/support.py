"""What the component tests share: a service built by its own ``create_app`` on the real database, fed batches without Kafka."""

from __future__ import annotations

import contextlib
import copy
import json
import uuid

from contracts import Envelope, parse_message
from contracts.examples import EXAMPLES
from contracts.topics import LEADS_EVENTS
from crmkit.messaging import Inbound, Outbound
from crmkit.service import Service


@contextlib.asynccontextmanager
async def built(service: Service):
    """The service as its composition root wired it; its database is dropped afterwards."""
    try:
        yield service
    finally:
        await service.mongo.drop_database(service.settings.database)
        await service.mongo.close()


def inbound(messages: list[tuple[str, Envelope]]) -> list[Inbound]:
    """A consumed batch, as the consumer hands it to the handler."""
    return [Inbound(topic, 0, offset, message) for offset, (topic, message) in enumerate(messages)]


def lead_card(lead_id: str, *, version: int = 1, event: str = "crm.lead.created", **data) -> tuple[str, Envelope]:
    """A lead card event of the leads service (the contract's example, made this lead's)."""
    record = copy.deepcopy(EXAMPLES["crm.lead.created"])
    record.update(id=str(uuid.uuid4()), subject=lead_id, type=event)
    record["data"].update(lead_id=lead_id, version=version, **data)
    return LEADS_EVENTS, parse_message(LEADS_EVENTS, json.dumps(record))


def lead_fact(event: str, lead_id: str, version: int) -> tuple[str, Envelope]:
    """A lead event that carries no card (``crm.lead.deleted``, ``crm.lead.restored``)."""
    record = copy.deepcopy(EXAMPLES[event])
    record.update(id=str(uuid.uuid4()), subject=lead_id)
    record["data"].update(lead_id=lead_id, version=version)
    return LEADS_EVENTS, parse_message(LEADS_EVENTS, json.dumps(record))


def wire(out: list[Outbound]) -> list[tuple[str, bytes]]:
    """What a batch publishes, record by record: comparable between a delivery and its redelivery."""
    return [(o.topic, o.value or o.message.to_json_bytes()) for o in out]
