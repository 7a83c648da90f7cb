"""Composition root of the leads service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.leads import api, openapi
from crmkit.mongo import is_ferretdb, until_available
from services.leads.handlers import LeadsHandlers
from services.leads.index import LeadIndex
from services.leads import readmodel
from services.leads.repository import DirectoryRepository, LeadRepository, LeadsMeta, PipelineRepository
from services.leads.settings import LeadsSettings

log = logging.getLogger("services.leads.app")

CONSUMES = (LEADS_COMMANDS, DIRECTORY_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS)
PUBLISHES = (LEADS_EVENTS,)


@dataclass(frozen=True)
class Overrides:
    """What a test may replace when it builds the service; production passes none."""

    clock: Callable[[], datetime] | None = None  # the time the rules and the events are stamped with


def create_app(settings: LeadsSettings, *, overrides: Overrides | None = None) -> Service:
    overrides = overrides or Overrides()
    service = Service(
        settings,
        name="leads",
        description="Pipelines, stages and the lead lifecycle; lead cards kept current from upstream facts.",
        publishes=PUBLISHES,
    )
    leads = LeadRepository(service.db)
    index = LeadIndex()
    pipelines = PipelineRepository(service.db)
    directory = DirectoryRepository(service.db)
    principals = PrincipalRepository(service.db, settings.service_principals)
    handlers = LeadsHandlers(settings, leads, pipelines, directory, principals, index, source=service.source)
    if overrides.clock is not None:
        handlers.clock = overrides.clock
    service.handlers = handlers  # type: ignore[attr-defined]  # tests reach the seams through it

    async def start_up() -> None:
        ferretdb = await is_ferretdb(service.db)
        await leads.ensure_indexes(ferretdb=ferretdb)
        # Version-guarded replaces on FerretDB too: it applies the guard as read-then-write inside one
        # statement, not atomically, but that window is microseconds, where an unguarded replace let
        # an instance still finishing a batch after a rebalance overwrite the new owner's newer
        # version (15 of 5,000 leads left a version behind in the scale-out scenario under load).
        leads.strict_versions = True
        leads.ferretdb = ferretdb
        owed = await handlers.announce_default_pipeline()
        if owed:
            await service.bus.publish(owed)
            await pipelines.mark_announced("default")
        # What start-up made (modules, pydantic schemas, clients) lives as long as the process: moved
        # out of the collector's reach, so its full collections stop walking it (~15% of the CPU of a
        # create, measured on 20,000 creates; bench/bench_leads.py).
        gc.freeze()

    async def migrate_read_fields() -> None:
        """Leads stored before the read fields (or with older ones) get them once, in the background."""
        meta = LeadsMeta(service.db)
        if await meta.read_fields_version() >= readmodel.READ_FIELDS_VERSION:
            return
        changed = await leads.migrate_read_fields()
        await meta.set_read_fields_version(readmodel.READ_FIELDS_VERSION)
        if changed:
            log.info("read fields written for %d stored leads", changed)

    service.on_startup(start_up)
    service.background(lambda: until_available(migrate_read_fields, "leads: read fields"))
    service.consume(CONSUMES, handlers.on_batch, title="leads")
    service.add_routes(api.routes(settings, leads, pipelines, principals))
    service.describe_http(openapi.OPERATIONS)
    return service
