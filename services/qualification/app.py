"""Composition root of the qualification service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from contracts.topics import DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmkit.mongo import until_available
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.qualification import api, openapi
from services.qualification.handlers import QualificationHandlers
from services.qualification.messages import parse_record
from services.qualification.repository import (
    ClosingRepository,
    CompanyRepository,
    DealRepository,
    LeadProjection,
    PipelineProjection,
    ReasonRepository,
    ensure_indexes,
)
from services.qualification.settings import QualificationSettings

CONSUMES = (QUALIFICATION_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS)
PUBLISHES = (QUALIFICATION_EVENTS,)


@dataclass(frozen=True)
class Overrides:
    """What a test may replace when it builds the service; production passes none."""

    clock: Callable[[], datetime] | None = None  # the time processes are stamped with
    after_step: Callable[[str], None] | None = None  # called after each bulk write of a batch's processes


def create_app(settings: QualificationSettings, *, overrides: Overrides | None = None) -> Service:
    overrides = overrides or Overrides()
    service = Service(
        settings,
        name="qualification",
        description=(
            "Qualifies leads into deals and companies; disqualifies them with a reason from the pipeline's list. "
            "crm.qualification.events.v1 is public: every message is keyed by the lead id, and a replay "
            "republishes identical events (same ids), so consumers dedupe on the event id."
        ),
        publishes=PUBLISHES,
    )
    db = service.db
    deals = DealRepository(db)
    pipelines = PipelineProjection(db)
    reasons = ReasonRepository(db)
    principals = PrincipalRepository(db, settings.service_principals)
    handlers = QualificationHandlers(
        settings, LeadProjection(db), pipelines, reasons, ClosingRepository(db), CompanyRepository(db), deals,
        principals, source=service.source,
    )
    if overrides.clock is not None:
        handlers.clock = overrides.clock
    if overrides.after_step is not None:
        handlers.after_step = overrides.after_step

    async def start_up() -> None:
        await ensure_indexes(db)

    service.on_startup(start_up)
    service.background(lambda: until_available(deals.migrate_list_keys, "qualification: deal list keys"))
    service.consume(CONSUMES, handlers.on_batch, title="qualification", parse=parse_record)
    service.add_routes(api.routes(settings, deals, pipelines, reasons, principals))
    service.describe_http(openapi.OPERATIONS)
    return service
