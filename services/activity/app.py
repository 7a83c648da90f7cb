"""Composition root of the activity service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from contracts.topics import ACTIVITY_COMMANDS, ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.activity.settings import ActivitySettings

CONSUMES = (ACTIVITY_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS, DIRECTORY_EVENTS)
PUBLISHES = (ACTIVITY_EVENTS, QUALIFICATION_COMMANDS,)


def create_app(settings: ActivitySettings) -> Service:
    service = Service(settings, name="activity", description="CRM tasks on leads and each lead's next activity.", publishes=PUBLISHES)
    principals = PrincipalRepository(service.db, settings.service_principals)

    async def on_batch(batch: list[Inbound]) -> list[Outbound]:
        """Skeleton: keeps the licence registry current; the service's own handling comes next."""
        await principals.apply([i.message for i in batch if PrincipalRepository.handles(i.message.type)])
        return []

    service.consume(CONSUMES, on_batch, title="activity")
    return service
