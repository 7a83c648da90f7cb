"""Composition root of the leads service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.leads import api
from crmkit.mongo import is_ferretdb
from services.leads.handlers import LeadsHandlers
from services.leads.index import LeadEventsFeed, LeadIndex
from services.leads.repository import DirectoryRepository, LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings

CONSUMES = (LEADS_COMMANDS, DIRECTORY_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS)
PUBLISHES = (LEADS_EVENTS,)


def create_app(settings: LeadsSettings) -> Service:
    service = Service(
        settings,
        name="leads",
        description="Pipelines, stages and the lead lifecycle; lead cards kept current from upstream facts.",
        publishes=PUBLISHES,
    )
    leads = LeadRepository(service.db)
    index = LeadIndex()
    feed = LeadEventsFeed(settings.kafka_client_options(), settings.topic(LEADS_EVENTS), index, service.bus.instance_id)
    pipelines = PipelineRepository(service.db)
    directory = DirectoryRepository(service.db)
    principals = PrincipalRepository(service.db, settings.service_principals)
    handlers = LeadsHandlers(settings, leads, pipelines, directory, principals, index, source=service.source)
    service.handlers = handlers  # type: ignore[attr-defined]  # tests reach the seams through it

    async def start_up() -> None:
        ferretdb = await is_ferretdb(service.db)
        await leads.ensure_indexes(secondary=not ferretdb)
        leads.strict_versions = not ferretdb
        await feed.mark()
        for lead_id, keys, links in await leads.all_keys():
            index.put(lead_id, keys, links)
        await feed.start()
        owed = await handlers.announce_default_pipeline()
        if owed:
            await service.bus.publish(owed)
            await pipelines.mark_announced("default")

    service.on_startup(start_up)
    service.on_shutdown(feed.stop)
    service.consume(CONSUMES, handlers.on_batch, title="leads")
    service.add_routes(api.routes(settings, leads, pipelines, principals))
    return service
