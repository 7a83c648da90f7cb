"""Composition root of the leads service: ``create_app(settings)`` wires broker, database and handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
import asyncio
from datetime import UTC, datetime

from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.leads import api, openapi
from services.leads.bulk import api as bulk_api
from services.leads.bulk.handlers import BulkHandlers, BulkTracker
from services.leads.bulk.repository import BulkRepository
from services.leads.bulk.runner import BulkRunner
from services.leads.capture import api as capture_api
from services.leads.capture.handlers import CaptureFormHandlers
from services.leads.capture.principals import FormAwarePrincipals
from services.leads.capture.repository import CaptureFormRepository, SubmissionCounts
from services.leads.actions.delivery import WebhookSender
from services.leads.actions.outbox import Outbox
from services.leads.actions.runner import StageActionRunner
from services.leads.actions.sealing import Sealer
from crmkit.errors import is_transient
from crmkit.mongo import is_ferretdb, until_available
from services.leads.counters import LeadCounters
from services.leads.handlers import LeadsHandlers
from services.leads.index import LeadIndex
from services.leads import readmodel
from services.leads.repository import DirectoryRepository, LeadRepository, LeadsMeta, PipelineRepository
from services.leads.settings import LeadsSettings

log = logging.getLogger("services.leads.app")

WRITE_PATH_CONSUMES = (LEADS_COMMANDS, DIRECTORY_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS)
STAGE_ACTIONS_CONSUME = (LEADS_EVENTS,)  # its own events, in the group <group_id>-actions
CONSUMES = WRITE_PATH_CONSUMES + STAGE_ACTIONS_CONSUME
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
    sealer = Sealer(settings.secrets_keys)
    pipelines = PipelineRepository(service.db, sealer)
    counters = LeadCounters(service.db, keeping=settings.board_counters, grace_s=settings.board_counters_grace_s,
                            lease_s=settings.board_counters_lease_s)
    forms = CaptureFormRepository(service.db)
    # A capture form is the actor of its submissions, licensed while it exists (services/leads/capture/principals.py).
    principals = FormAwarePrincipals(PrincipalRepository(service.db, settings.service_principals), forms)
    handlers = LeadsHandlers(
        settings, leads, pipelines, DirectoryRepository(service.db), principals, LeadIndex(), source=service.source,
        counters=counters,
    )
    if overrides.clock is not None:
        handlers.clock = overrides.clock
    service.handlers = handlers  # type: ignore[attr-defined]  # tests reach the seams through it
    clock = overrides.clock or (lambda: datetime.now(UTC))
    service.counters = counters  # type: ignore[attr-defined]  # tests reach the seams through it
    service.background(lambda: until_available(lambda: _migrate_read_fields(service, leads, pipelines, counters), "leads: read fields"))
    service.consume(WRITE_PATH_CONSUMES, handlers.on_batch, title="leads", select=handlers.wanted_types)
    service.add_routes(api.routes(settings, leads, pipelines, principals, counters=counters))
    service.describe_http(openapi.OPERATIONS)
    _wire_stage_actions(service, settings, handlers, leads, pipelines, sealer)
    _wire_capture_and_bulk(service, settings, handlers, leads, pipelines, forms, principals, clock)
    # Registered last: it freezes what the start-ups before it made.
    service.on_startup(lambda: _start_up(service, handlers, leads, pipelines, counters))
    return service


def _wire_capture_and_bulk(
    service: Service, settings: LeadsSettings, handlers: LeadsHandlers, leads: LeadRepository, pipelines: PipelineRepository,
    forms: CaptureFormRepository, principals: FormAwarePrincipals, clock: Callable[[], datetime],
) -> None:
    """Web capture forms and mass actions: their handlers on the write path, their endpoints and their loops."""
    submissions = SubmissionCounts(service.db)
    jobs = BulkRepository(service.db)
    bulk_runner = BulkRunner(settings, jobs, service.bus.publish, service.source, clock)
    handlers.capture_forms = CaptureFormHandlers(forms, pipelines, principals, service.source, clock, settings.recent_messages_kept)
    handlers.bulk = BulkHandlers(settings, jobs, leads, principals, service.source, clock, bulk_runner.wake, pipelines)
    handlers.bulk_tracker = BulkTracker(jobs, service.source, bulk_runner.wake, clock, leads)

    async def start_up() -> None:
        await submissions.ensure_indexes()
        await jobs.ensure_indexes()
        await forms.seal_plain_keys()  # forms an older version stored with the key as given

    service.on_startup(start_up)
    service.add_routes(capture_api.routes(settings, forms, submissions, leads, service.bus.publish, service.source, clock))
    service.add_routes(bulk_api.routes(settings, jobs, principals, service.bus.publish, service.source))
    service.background(bulk_runner.run_forever)
    service.background(lambda: prune_windows(submissions, clock))
    service.describe_http({**capture_api.OPERATIONS, **bulk_api.OPERATIONS})


def _wire_stage_actions(
    service: Service, settings: LeadsSettings, handlers: LeadsHandlers, leads: LeadRepository, pipelines: PipelineRepository,
    sealer: Sealer,
) -> None:
    """Stage-entry actions: a consumer of the service's own events and the webhook sender's outbox."""
    outbox = Outbox(service.db, sealer)
    sender = WebhookSender(settings, outbox, service.bus, service.metrics, service.source)
    stage_actions = StageActionRunner(pipelines, leads, outbox, service.source, wake=sender.wake)
    service.stage_actions = stage_actions  # type: ignore[attr-defined]
    service.on_startup(outbox.ensure_indexes)

    async def seal_secrets() -> None:
        if not sealer.sealing:
            log.warning("LEADS_SECRETS_KEYS is empty: webhook signing secrets are stored as given (README, Stage actions)")
            return
        # A secret no key opens stops the start here, with what to do, before anything is rewritten.
        sealed = (await pipelines.reseal(), await outbox.reseal())
        if any(sealed):
            log.info("webhook secrets sealed with the first key: %d pipelines, %d owed deliveries", *sealed)

    service.on_startup(seal_secrets)
    # Every write path closes the runs it applies, also where this instance runs no actions (LEADS_STAGE_ACTIONS=false):
    # a run left open keeps the actions group reading.
    handlers.runs_applied = outbox.close_runs
    if settings.stage_actions:
        # A group of its own on the events topic: actions follow the write path, never hold it up. It fetches
        # nothing while no stage has an action (StageActionRunner.may_idle); a pipeline stored here wakes it.
        idling = service.consume(
            STAGE_ACTIONS_CONSUME, stage_actions.on_batch, group_suffix="-actions", title="leads:stage-actions",
            select=stage_actions.wanted_types, parse=stage_actions.parse,
            may_idle=stage_actions.may_idle, idle_check_s=settings.stage_actions_idle_check_s,
        )
        if idling is not None:
            pipelines.written.append(idling.wake)
        service.background(sender.run_forever)


async def _start_up(
    service: Service, handlers: LeadsHandlers, leads: LeadRepository, pipelines: PipelineRepository, counters: LeadCounters,
) -> None:
    ferretdb = await is_ferretdb(service.db)
    await leads.ensure_indexes(ferretdb=ferretdb)
    await counters.ensure_indexes()
    # Version-guarded replaces on FerretDB too (the local build applies a statement's read and write in
    # one transaction, crmctl/ferretdb_writes.py): an unguarded replace let an instance still finishing
    # a batch after a rebalance overwrite the new owner's newer version (15 of 5,000 leads left a
    # version behind in the scale-out scenario under load).
    leads.strict_versions = True
    leads.ferretdb = ferretdb
    owed = await handlers.announce_default_pipeline()
    if owed:
        await service.bus.publish(owed)
        await pipelines.mark_announced("default")
    if await leads.empty() or await LeadsMeta(service.db).read_fields_version() >= readmodel.READ_FIELDS_VERSION:
        # First start with counters (or after they went stale): counted before this instance consumes,
        # from the index ranges (which need the read fields; else the migration counts after it is done).
        await _count_board(counters, leads, pipelines)
    # What start-up made (modules, pydantic schemas, clients) lives as long as the process: moved
    # out of the collector's reach, so its full collections stop walking it (~15% of the CPU of a
    # create, measured on 20,000 creates; bench/bench_leads.py).
    gc.freeze()


async def _migrate_read_fields(service: Service, leads: LeadRepository, pipelines: PipelineRepository, counters: LeadCounters) -> None:
    """Leads stored before the read fields (or with older ones) get them once, in the background; then the board is counted."""
    meta = LeadsMeta(service.db)
    if await meta.read_fields_version() >= readmodel.READ_FIELDS_VERSION:
        return
    changed = await leads.migrate_read_fields()
    await meta.set_read_fields_version(readmodel.READ_FIELDS_VERSION)
    if changed:
        log.info("read fields written for %d stored leads", changed)
    await _count_board(counters, leads, pipelines)


async def _count_board(counters: LeadCounters, leads: LeadRepository, pipelines: PipelineRepository) -> None:
    try:
        counted = await counters.ensure(leads, pipelines)
    except Exception as exc:
        if is_transient(exc):
            raise  # retried with the start-up
        # Boards count index ranges until a recount (crm leads recount): the service runs on.
        log.exception("board counts not rebuilt")
        return
    if counted is not None:
        log.info("board counts rebuilt: %d leads in %d pipelines (epoch %d)", counted["leads"], counted["pipelines"], counted["epoch"])


async def prune_windows(submissions: SubmissionCounts, clock: Callable[[], datetime]) -> None:
    """Forget ended rate-limit windows once a minute (FerretDB has no TTL index)."""
    while True:
        try:
            await submissions.prune(clock())
        except Exception:  # an outage: the next pass prunes what this one could not
            log.warning("pruning capture rate windows failed; retrying", exc_info=True)
        await asyncio.sleep(60)
