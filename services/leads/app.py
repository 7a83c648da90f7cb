"""Composition root of the leads service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.leads import api
from services.leads.handlers import LeadsHandlers
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
    pipelines = PipelineRepository(service.db)
    directory = DirectoryRepository(service.db)
    principals = PrincipalRepository(service.db, settings.service_principals)
    handlers = LeadsHandlers(settings, leads, pipelines, directory, principals, source=service.source)
    service.handlers = handlers  # type: ignore[attr-defined]  # tests reach the seams through it

    async def start_up() -> None:
        await leads.ensure_indexes()
        owed = await handlers.announce_default_pipeline()
        if owed:
            await service.bus.publish(owed)
            await pipelines.mark_announced("default")

    service.on_startup(start_up)
    service.consume(CONSUMES, handlers.on_batch, title="leads")
    service.add_routes(api.routes(settings, leads, pipelines, principals))
    return service
