"""A first lead on the real stack: created, stored, announced."""

from __future__ import annotations

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from services.leads.app import create_app
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import grant, payload
from tests.support import Collector, Producer, command, wait_until


async def test_create_lead_end_to_end(settings_for, run_service, endpoints, isolation):
    service = await run_service(create_app(settings_for(LeadsSettings, "leads")))
    repo = LeadRepository(service.db)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(endpoints.kafka, isolation.prefix, LEADS_EVENTS) as events:
        await grant(producer, "alice")
        await wait_until(lambda: events.got.of_type("crm.pipeline.created"), what="default pipeline announced")
        cmd = command(payload("crm.lead.create", lead_id="L1", title="Website request", contact={"name": "Ivan", "phone": "+79123456789"}))
        await producer.send(LEADS_COMMANDS, cmd)
        created = await wait_until(lambda: events.got.of_type("crm.lead.created"), what="lead created")
        assert created[0].data.lead_id == "L1"
        assert created[0].data.responsible_id == "alice"
        lead = await repo.get("L1")
        assert lead.title == "Website request" and lead.version == 1 and lead.status == "new"
