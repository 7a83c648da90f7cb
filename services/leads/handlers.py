"""Translate contract messages into domain calls and domain events back into contract messages.

A batch goes: ``on_batch`` screens each message, runs pipeline commands here, hands the lead messages
to ``batch.LeadBatch`` (group by lead, load, apply, save), which asks ``decide`` (below: which domain
rule each message type invokes) and serialises events through ``messages``; upstream directory
records are stored here and turned into refresh commands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Mapping
from datetime import UTC, datetime

import contracts.leads as ev
from contracts import TOPIC_TYPES, Envelope, build_message
from contracts.actions import RunStageAction
from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit import access
from crmkit.conflicts import retry_on_conflict
from crmkit.ids import uuid5
from crmkit.followups import PublishThen
from crmkit.messaging import Inbound, Outbound, Published
from crmkit.principals import PrincipalRepository
from services.leads import domain as d
from services.leads.batch import BatchContext, LeadBatch, LeadState, LeadStores
from services.leads.bulk.handlers import BULK_COMMANDS, BulkHandlers, BulkTracker
from services.leads.capture.handlers import FORM_COMMANDS, CaptureFormHandlers, form_actor_refusal
from services.leads.counters import LeadCounters, Positions
from services.leads.index import LeadIndex
from services.leads.messages import (
    ID_NAMESPACE,
    actor_of,
    directory_target,
    pipeline_key,
    refresh_payload,
    rejection,
    to_messages,
    _value,
)
from services.leads.repository import DirectoryRepository, LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings

PIPELINE_COMMANDS = frozenset({"crm.pipeline.create", "crm.pipeline.update", "crm.pipeline.delete"})
LEAD_SCOPED = frozenset({
    "crm.lead.create", "crm.lead.update", "crm.lead.assign", "crm.lead.move", "crm.lead.change-pipeline",
    "crm.lead.delete", "crm.lead.restore", "crm.lead.reopen", "crm.lead.mark-duplicate", "crm.lead.merge",
    "crm.lead.dismiss-duplicate", "crm.lead.refresh-snapshot", "crm.lead.qualified", "crm.lead.disqualified", "crm.lead.activity-summary",
    "crm.lead.run-stage-action",
})
DIRECTORY_RECORDS = frozenset({"crm.contact.upserted", "crm.company.upserted", "crm.product.upserted"})
# Upstream events the write path never acts on (a qualification's company and deal, every task event): passed
# over unparsed (crmkit's ``select``), two of the three records a qualification brings here and the task
# event of each task. A type any other consumed topic carries, or one unknown, is still parsed.
PASSED_OVER = frozenset(
    (set(TOPIC_TYPES[QUALIFICATION_EVENTS]) | set(TOPIC_TYPES[ACTIVITY_EVENTS]))
    - LEAD_SCOPED - DIRECTORY_RECORDS - set(TOPIC_TYPES[LEADS_COMMANDS]) - set(TOPIC_TYPES[DIRECTORY_EVENTS])
)


class _Parsed(Container[str]):
    """The message types worth parsing on the write path: all but those passed over."""

    def __contains__(self, kind: object) -> bool:
        return kind not in PASSED_OVER


_PARSED = _Parsed()
# Commands sent on a user's behalf: screened and licence-checked before anything else happens.
USER_COMMANDS = PIPELINE_COMMANDS | {
    "crm.lead.create", "crm.lead.update", "crm.lead.assign", "crm.lead.move", "crm.lead.change-pipeline",
    "crm.lead.delete", "crm.lead.restore", "crm.lead.reopen", "crm.lead.mark-duplicate", "crm.lead.merge",
    "crm.lead.dismiss-duplicate",
}


class LeadsHandlers:
    """The leads service's message handling: one batch in, the events to publish out."""

    def __init__(
        self,
        settings: LeadsSettings,
        leads: LeadRepository,
        pipelines: PipelineRepository,
        directory: DirectoryRepository,
        principals: PrincipalRepository,
        index: LeadIndex,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        counters: LeadCounters | None = None,
    ) -> None:
        self.index = index
        self.settings = settings
        self.leads = leads
        self.pipelines = pipelines
        self.directory = directory
        self.principals = principals
        self.source = source
        self.clock = clock
        self.stores = LeadStores(leads, pipelines, directory, principals, index, counters)
        # Capture forms and mass actions (issue 20), wired by app.py; without them their commands are ignored.
        self.capture_forms: CaptureFormHandlers | None = None
        self.bulk: BulkHandlers | None = None
        self.bulk_tracker: BulkTracker | None = None
        # Stage actions (app.py): told which run-stage-action commands were applied, once their answers are published.
        self.runs_applied: Callable[[list[str]], Awaitable[None]] | None = None

    async def wanted_types(self) -> Container[str]:
        """The types the next batch is parsed for (crmkit's ``select``)."""
        return _PARSED

    async def on_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Lead commands, upstream facts (qualification, activity, directory) in; lead events out."""
        messages = [item.message for item in batch]
        self.index.clear()  # holds what this batch writes (services/leads/index.py)
        await self.principals.apply([m for m in messages if PrincipalRepository.handles(m.type)])
        out: list[Published] = []
        # A command with no actor, or with a field out of bounds, is answered before anything is read.
        screened = []
        for message in messages:
            refusal = _screen(message)
            if refusal is None:
                screened.append(message)
            else:
                out.append(rejection(message, refusal, self.source, getattr(message.data, "lead_id", None)))
                if message.type in BULK_COMMANDS and self.bulk is not None:
                    await self.bulk.on_screened_out(message, refusal)
        for message in screened:
            if message.type in PIPELINE_COMMANDS:
                out.extend(await self._pipeline_command(message))
        reach = await self._forms_and_bulk(screened)
        leads = LeadBatch(self.settings, self.stores, self.source, self.clock(), decide, frozenset(USER_COMMANDS),
                          positions=Positions.of((i.topic, i.partition, i.offset, i.message.id) for i in batch))
        lead_messages = [m for m in screened if m.type in LEAD_SCOPED]
        tracked: dict[str, tuple[str, str]] = {}
        if self.bulk_tracker is not None:  # a cancelled job's leads are left out; the others' answers recorded
            lead_messages, tracked = await self.bulk_tracker.screen(lead_messages)
        if lead_messages:
            out.extend(await leads.run(lead_messages))
        wire = leads.wire.events
        outbound = [Outbound(LEADS_EVENTS, m, key=m.subject or pipeline_key(m), value=wire.get(m.id)) for m in out]
        outbound.extend(reach)
        records = [m for m in screened if m.type in DIRECTORY_RECORDS]
        if records:
            outbound.extend(await self._directory_records(records))
        then: list[Callable[[], Awaitable[None]]] = []
        if tracked and self.bulk_tracker is not None:
            # A job's answers are recorded once the leads' events are on the bus: its report never goes before them.
            tracker = self.bulk_tracker
            then.append(lambda: tracker.record(tracked, out))
        applied = _runs_applied(screened, out)
        if applied and self.runs_applied is not None:
            runs_applied = self.runs_applied
            then.append(lambda: runs_applied(applied))
        if then:
            return PublishThen(outbound, then=lambda: _in_turn(then))
        return outbound

    async def _forms_and_bulk(self, messages: list[Envelope]) -> list[Outbound]:
        out: list[Outbound] = []
        for message in messages:
            if message.type in FORM_COMMANDS and self.capture_forms is not None:
                out.extend(await self.capture_forms.on_command(message))
            elif message.type in BULK_COMMANDS and self.bulk is not None:
                out.extend(await self.bulk.on_command(message))
        return out

    # --- pipelines ----------------------------------------------------------------------------

    async def announce_default_pipeline(self) -> list[Outbound]:
        """Create the default pipeline on first start and owe its crm.pipeline.created until published."""
        now = self.clock()
        pipeline = d.default_pipeline(now)
        created = build_message(
            ev.PipelineCreated.model_validate(pipeline.model_dump()),
            source=self.source,
            id=uuid5(ID_NAMESPACE, "default-pipeline-created"),
            time=now,
        )
        owed = await self.pipelines.ensure_default(pipeline, created.to_json_bytes().decode())
        if owed is None:
            return []
        return [Outbound(LEADS_EVENTS, Envelope.model_validate_json(owed), key=pipeline.pipeline_id)]

    async def _pipeline_command(self, message: Envelope) -> list[Envelope]:
        pipeline_id = getattr(message.data, "pipeline_id", None) or uuid5(ID_NAMESPACE, f"pipeline\x1f{message.id}")
        for _attempt in retry_on_conflict(f"pipeline {pipeline_id} under command {message.id}"):
            owed = await self.pipelines.recent_events(pipeline_id, message.id)
            if owed is not None:
                return [Envelope.model_validate_json(e) for e in owed]
            principal = await self.principals.get(message.actorid)
            refused = access.licence_refusal(message, {principal.user_id: principal})
            if refused is not None:  # before the pipeline is read: nothing is learnt of it
                return [rejection(message, refused, self.source, None)]
            existing = await self.pipelines.get(pipeline_id)
            actor = actor_of(principal)
            now = self.clock()
            try:
                outcome = await self._pipeline_outcome(message, actor, pipeline_id, existing, now)
            except d.Rejected as exc:
                return [rejection(message, exc, self.source, None)]
            if not outcome.changed:
                return []
            events = to_messages(outcome.events, message, self.source, None, now)
            if await self.pipelines.save(
                outcome.pipeline, existing.version if existing else None, message.id,
                [e.to_json_bytes().decode() for e in events], self.settings.recent_messages_kept,
            ):
                return events
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    async def _pipeline_outcome(
        self, message: Envelope, actor: d.Actor, pipeline_id: str, existing: d.Pipeline | None, now: datetime
    ) -> d.PipelineOutcome:
        data = message.data
        if message.type == "crm.pipeline.create":
            return d.create_pipeline(
                actor, pipeline_id, data.name,
                [s.model_dump() for s in data.stages] if data.stages else None,
                _value(data.transition_mode) or "manual", now, existing=existing,
                visible_to=data.visible_to, private_hosts=self.settings.private_webhook_hosts(),
            )
        existing = d.require_pipeline(pipeline_id, existing)
        if message.type == "crm.pipeline.update":
            return d.update_pipeline(
                actor, existing, name=data.name,
                stages=[s.model_dump() for s in data.stages] if data.stages is not None else None,
                transition_mode=_value(data.transition_mode), now=now,
                visible_to=data.visible_to, private_hosts=self.settings.private_webhook_hosts(),
                leads_per_stage=await self.leads.count_by_stage(pipeline_id, [s.stage_id for s in existing.stages]),
            )
        return d.delete_pipeline(actor, existing, lead_count=await self.leads.count_in_pipeline(pipeline_id), now=now)

    # --- directory ----------------------------------------------------------------------------

    async def _directory_records(self, messages: list[Envelope]) -> list[Outbound]:
        """Keep the newest upstream record; ask the owner of each linked lead to refresh its snapshot.

        The refresh goes through the leads commands topic keyed by lead id, so it is applied by the
        instance that owns the lead's partition, in order with the lead's other messages.
        """
        out: list[Outbound] = []
        for message in messages:
            data = message.data
            kind, record_id = directory_target(data)
            fresh = await self.directory.upsert(kind, record_id, data.version, data.model_dump(mode="json"))
            if not fresh:
                continue  # stale: a newer version is stored, and was fanned out
            for lead_id in await self.leads.linked(kind, record_id):
                refresh = build_message(
                    refresh_payload(lead_id, data),
                    source=self.source,
                    subject=lead_id,
                    id=uuid5(ID_NAMESPACE, f"{message.id}\x1frefresh\x1f{lead_id}"),
                    correlationid=message.correlationid or message.id,
                    causationid=message.id,
                    actorid="svc-leads",
                )
                out.append(Outbound(LEADS_COMMANDS, refresh, key=lead_id))
        return out


def _runs_applied(messages: list[Envelope], out: list[Published]) -> list[str]:
    """The run-stage-action commands of a batch that were not refused: no refusal of them is to come.

    A redelivered one (applied before) counts again, so a crash before its run was closed closes it now."""
    runs = [m.id for m in messages if m.type == RunStageAction.TYPE]
    if not runs:
        return []
    refused = {m.data.command_id for m in out if m.type == "crm.command.rejected"}
    return [run for run in runs if run not in refused]


async def _in_turn(steps: list[Callable[[], Awaitable[None]]]) -> None:
    for step in steps:
        await step()


# --- which domain rule each lead message invokes --------------------------------------------


def decide(message: Envelope, lead_id: str, states: Mapping[str, LeadState], ctx: BatchContext) -> list[tuple[str, d.Outcome]]:
    """The domain rule a lead message invokes, given the state it needs: (lead id, outcome) per lead changed."""
    data = message.data
    lead = states[lead_id].lead
    now = ctx.now
    actor = ctx.actor(message.actorid)
    if message.type == "crm.lead.create":
        return [(lead_id, _created(data, lead_id, lead, actor, ctx))]
    if message.type in USER_COMMANDS:
        d.require_visible(actor, lead, lead_id, ctx.pipelines)
    lead = d.require_exists(lead_id, lead)
    pipeline = d.pipeline_for(ctx.pipelines, lead.pipeline_id, allow_deleted=True)
    match message.type:
        case "crm.lead.update":
            changes = data.model_dump(exclude_unset=True, exclude={"lead_id", "clear"})
            changes = d.with_snapshots(changes, ctx.contacts, ctx.companies, ctx.products)
            return [(lead_id, d.update_lead(actor, lead, changes, list(data.clear or []), now))]
        case "crm.lead.assign":
            return [(lead_id, d.assign_lead(actor, lead, pipeline, data.responsible_id, now))]
        case "crm.lead.move":
            return [(lead_id, d.move_lead(actor, lead, pipeline, data.stage_id, now))]
        case "crm.lead.change-pipeline":
            target = d.visible_pipeline(ctx.pipelines, data.pipeline_id, actor)
            return [(lead_id, d.change_pipeline(actor, lead, target, data.stage_id, now))]
        case "crm.lead.delete":
            return [(lead_id, d.delete_lead(actor, lead, now))]
        case "crm.lead.restore":
            default = d.pipeline_for(ctx.pipelines, d.DEFAULT_PIPELINE_ID)
            return [(lead_id, d.restore_lead(actor, lead, pipeline, default, now))]
        case "crm.lead.reopen":
            return [(lead_id, d.reopen_lead(actor, lead, pipeline, data.stage_id, now))]
        case "crm.lead.qualified":
            return [(lead_id, d.apply_qualified(lead, pipeline, data.deal_id, data.company_id, now))]
        case "crm.lead.disqualified":
            return [(lead_id, d.apply_disqualified(lead, pipeline, data.reason_id, data.reason, data.comment, now))]
        case "crm.lead.activity-summary":
            summary = d.ActivitySummaryView.model_validate(data.model_dump(exclude={"lead_id"}))
            return [(lead_id, d.apply_activity_summary(lead, summary, now))]
        case "crm.lead.refresh-snapshot":
            kind, records, record_id = _snapshot_named(data, ctx)
            return [(lead_id, d.refresh_snapshot(lead, kind, records.get(record_id or ""), now))]
        case "crm.lead.dismiss-duplicate":
            return [(lead_id, d.dismiss_duplicate(actor, lead, data.duplicate_lead_id, now))]
        case "crm.lead.run-stage-action":
            action = d.field_action(d.pipeline_for(ctx.pipelines, data.pipeline_id), data.stage_id, data.action_id)
            return [(lead_id, d.update_lead(d.STAGE_ACTIONS_ACTOR, lead, d.action_changes(action), [], now))]
        case "crm.lead.mark-duplicate":
            d.require_visible(actor, _lead_of(states, data.original_lead_id), data.original_lead_id, ctx.pipelines)
            original = d.require_exists(data.original_lead_id, _lead_of(states, data.original_lead_id))
            return [(lead_id, d.mark_duplicate(actor, lead, original, now))]
        case "crm.lead.merge":
            return _merged(message, actor, lead, states, ctx)
    raise AssertionError(f"unrouted message type {message.type}")


def _merged(message: Envelope, actor: d.Actor, lead: d.Lead, states: Mapping[str, LeadState], ctx: BatchContext) -> list[tuple[str, d.Outcome]]:
    """``crm.lead.merge``: the other lead folded into this one and merged away, both written by this batch."""
    data = message.data
    d.require_visible(actor, _lead_of(states, data.other_lead_id), data.other_lead_id, ctx.pipelines)
    other = d.require_exists(data.other_lead_id, _lead_of(states, data.other_lead_id))
    partner = states.get(other.lead_id)
    if partner is not None and partner.seen(message.id) is not None and other.merged_into == lead.lead_id:
        # An earlier attempt stored the other side and lost this one to another writer (the other lead
        # may live on another instance's partition): this side is folded in again from the other as it
        # stood before, which stays as stored.
        survivor, _ = d.merge_leads(actor, lead, d.before_merge(other), dict(data.fields or {}), ctx.now)
        return [(lead.lead_id, survivor)]
    survivor, merged = d.merge_leads(actor, lead, other, dict(data.fields or {}), ctx.now)
    return [(lead.lead_id, survivor), (other.lead_id, merged)]


def _created(data: ev.CreateLead, lead_id: str, lead: d.Lead | None, actor: d.Actor, ctx: BatchContext) -> d.Outcome:
    """``crm.lead.create``: a new lead in a pipeline the actor sees, with the snapshots of what it names."""
    d.require_new(lead_id, lead)  # the same answer whether or not the actor may see the lead holding the id
    pipeline = d.visible_pipeline(ctx.pipelines, data.pipeline_id or d.DEFAULT_PIPELINE_ID, actor)
    fields = d.with_snapshots(data.model_dump(exclude_none=True), ctx.contacts, ctx.companies, ctx.products)
    return d.create_lead(actor, lead_id, fields, pipeline, ctx.now)


def _lead_of(states: Mapping[str, LeadState], lead_id: str) -> d.Lead | None:
    state = states.get(lead_id)
    return state.lead if state is not None else None


def _snapshot_named(data: ev.RefreshLeadSnapshot, ctx: BatchContext) -> tuple[str, Mapping[str, Mapping], str | None]:
    """Which upstream record a refresh names; only its id is read from the command."""
    if data.contact is not None:
        return "contact", ctx.contacts, data.contact.contact_id
    if data.company is not None:
        return "company", ctx.companies, data.company.company_id
    return "product", ctx.products, data.product_id


def _screen(message: Envelope) -> access.Refusal | None:
    if message.type in USER_COMMANDS or message.type in FORM_COMMANDS or message.type in BULK_COMMANDS:
        return form_actor_refusal(message) or access.screen(message)
    if message.type in ("crm.lead.refresh-snapshot", "crm.lead.run-stage-action"):  # internal, acts for no user: its ids are still bounded
        return access.bounds_refusal(message)
    return None
