"""Composition root of the qualification service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from contracts.topics import DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.qualification.settings import QualificationSettings

CONSUMES = (QUALIFICATION_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS)
PUBLISHES = (QUALIFICATION_EVENTS,)


def create_app(settings: QualificationSettings) -> Service:
    service = Service(settings, name="qualification", description="Qualifies leads into deals and companies; disqualifies them with a reason.", publishes=PUBLISHES)
    principals = PrincipalRepository(service.db, settings.service_principals)

    async def on_batch(batch: list[Inbound]) -> list[Outbound]:
        """Skeleton: keeps the licence registry current; the service's own handling comes next."""
        await principals.apply([i.message for i in batch if PrincipalRepository.handles(i.message.type)])
        return []

    service.consume(CONSUMES, on_batch, title="qualification")
    return service
