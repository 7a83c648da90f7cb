"""Composition root of the activity service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.topics import ACTIVITY_COMMANDS, ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmkit.errors import is_transient
from crmkit.mongo import until_available
from crmkit.principals import PrincipalRepository
from crmkit.service import Service, stop_if_cancelled
from services.activity import api, openapi
from services.activity.handlers import ActivityHandlers
from services.activity.messages import parse_record
from services.activity.projection import LeadProjection
from services.activity.repository import TaskRepository, TaskTypeRepository
from services.activity.settings import ActivitySettings

CONSUMES = (ACTIVITY_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS, DIRECTORY_EVENTS)
PUBLISHES = (ACTIVITY_EVENTS, QUALIFICATION_COMMANDS)

log = logging.getLogger("services.activity")


@dataclass(frozen=True)
class Overrides:
    """What a test may replace when it builds the service; production passes none."""

    clock: Callable[[], datetime] | None = None  # the time the rules, the due pass and the day plan go by


def create_app(settings: ActivitySettings, *, overrides: Overrides | None = None) -> Service:
    overrides = overrides or Overrides()
    clock: Callable[[], datetime] = overrides.clock or (lambda: datetime.now(UTC))
    service = Service(
        settings,
        name="activity",
        description="CRM tasks on leads and each lead's next activity.",
        publishes=PUBLISHES,
    )
    tasks = TaskRepository(service.db, settings.recent_messages_kept)
    leads = LeadProjection(service.db)
    types = TaskTypeRepository(service.db)
    principals = PrincipalRepository(service.db, settings.service_principals)
    handlers = ActivityHandlers(
        settings, tasks, leads, types, principals, source=service.source, publish=service.bus.publish, clock=clock
    )
    service.handlers = handlers  # type: ignore[attr-defined]  # tests run the due pass through it

    async def due_passes() -> None:
        """Every interval, announce tasks that became due soon or overdue."""
        while True:
            try:
                await handlers.run_due_pass()
            except Exception as exc:  # the next pass tries again; an outage must not end the loop
                log.log(logging.WARNING if is_transient(exc) else logging.ERROR, "due pass failed: %s", exc, exc_info=not is_transient(exc))
            stop_if_cancelled()
            await asyncio.sleep(settings.due_pass_interval_s)

    async def migrate_list_keys() -> None:
        """Tasks stored before their list keys get them once, in the background."""
        if await tasks.list_keys_stale():
            changed = await tasks.migrate_list_keys()
            await tasks.mark_list_keys_done()
            if changed:
                log.info("list keys written for %d stored tasks", changed)

    service.on_startup(tasks.ensure_indexes)
    service.background(lambda: until_available(migrate_list_keys, "activity: list keys"))
    service.consume(CONSUMES, handlers.on_batch, title="activity", select=handlers.wanted_types, parse=parse_record)
    if settings.due_pass_interval_s > 0:
        service.background(due_passes)
    service.add_routes(api.routes(settings, tasks, principals, clock))
    service.describe_http(openapi.OPERATIONS)
    return service
