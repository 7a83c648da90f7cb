"""Composition root of the importer service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from contracts.topics import DIRECTORY_EVENTS, IMPORTS_COMMANDS, IMPORTS_EVENTS, LEADS_COMMANDS, LEADS_EVENTS
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.importer.settings import ImporterSettings

CONSUMES = (IMPORTS_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS)
PUBLISHES = (IMPORTS_EVENTS, LEADS_COMMANDS,)


def create_app(settings: ImporterSettings) -> Service:
    service = Service(settings, name="importer", description="Streams CSV and XLSX files into leads.", publishes=PUBLISHES)
    principals = PrincipalRepository(service.db, settings.service_principals)

    async def on_batch(batch: list[Inbound]) -> list[Outbound]:
        """Skeleton: keeps the licence registry current; the service's own handling comes next."""
        await principals.apply([i.message for i in batch if PrincipalRepository.handles(i.message.type)])
        return []

    service.consume(CONSUMES, on_batch, title="importer")
    return service
