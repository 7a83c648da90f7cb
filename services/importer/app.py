"""Composition root of the importer service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from contracts.topics import DIRECTORY_EVENTS, IMPORTS_COMMANDS, IMPORTS_EVENTS, LEADS_COMMANDS, LEADS_EVENTS
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.importer import api, jobs_api, openapi
from services.importer.handlers import ImporterHandlers
from services.importer.ops import ImportMetrics
from services.importer.external_ids import ExternalIdProjection
from services.importer.repository import ImportRepository
from services.importer.scheduler import JobScheduler
from services.importer.settings import ImporterSettings
from services.importer.views import parse_record
from services.importer.worker import JobRunner

CONSUMES = (IMPORTS_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS)
PUBLISHES = (IMPORTS_EVENTS, LEADS_COMMANDS,)


def create_app(settings: ImporterSettings) -> Service:
    service = Service(settings, name="importer", description="Streams CSV and XLSX files into leads.", publishes=PUBLISHES)
    imports = ImportRepository(service.db)
    index = ExternalIdProjection(service.db)
    principals = PrincipalRepository(service.db, settings.service_principals)
    runner = JobRunner(settings, imports, index, service.bus, source=service.source)
    scheduler = JobScheduler(settings, imports, runner, service.metrics.registry)
    handlers = ImporterHandlers(imports, index, principals, runner, source=service.source)
    service.runner = runner  # type: ignore[attr-defined]  # tests and the benchmark reach the seams through it
    service.scheduler = scheduler  # type: ignore[attr-defined]
    service.handlers = handlers  # type: ignore[attr-defined]  # the component tests feed it batches

    async def start_up() -> None:
        await imports.ensure_indexes()
        await index.ensure_indexes()

    service.on_startup(start_up)
    service.consume(CONSUMES, handlers.on_batch, title="importer", select=handlers.wanted_types, parse=parse_record)
    service.background(scheduler.run_forever)
    import_metrics = ImportMetrics(imports, service.metrics.registry)
    service.background(lambda: import_metrics.run_forever(settings.lag_interval_s))
    service.readiness_detail(scheduler.readiness)
    service.add_routes(api.routes(settings, imports, runner, principals))
    service.describe_http(openapi.OPERATIONS)
    service.add_routes(jobs_api.routes(settings, imports, runner, principals))
    return service
