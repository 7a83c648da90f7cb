"""Translate contract messages into domain calls and the outcomes back into contract messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from contracts import Envelope, build_message
from contracts.base import Payload
from contracts.qualification import (
    CompanyCreated,
    DealCreated,
    LeadDisqualified,
    LeadQualified,
    QualificationRejected,
    RejectionReason,
)
from contracts.topics import QUALIFICATION_EVENTS
from crmkit import access
from crmkit.conflicts import retry_on_conflict
from crmkit.ids import uuid5
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import Principal, PrincipalRepository
from services.qualification import domain as d
from services.qualification.repository import (
    ClosingRepository,
    CompanyRepository,
    DealRepository,
    LeadChange,
    LeadProjection,
    PipelineProjection,
    ReasonRepository,
    StoredClosing,
)
from services.qualification.settings import QualificationSettings

# What the projection keeps of a lead card: what the checks and the deal need.
_CARD_FIELDS = {
    "pipeline_id", "stage_id", "status", "deleted", "title", "responsible_id", "created_by", "contact",
    "products", "source", "utm_source", "utm_medium", "utm_campaign",
}
COMMANDS = {
    "crm.lead.qualify", "crm.lead.disqualify", "crm.disqualification-reason.add", "crm.disqualification-reason.remove",
}


def actor_of(principal: Principal) -> d.Actor:
    return d.Actor(user_id=principal.user_id, licensed=principal.licensed, is_admin=principal.is_admin)


def _message(payload: Payload, cause: Envelope, source: str, message_id: str, time: datetime | None = None) -> Envelope:
    return build_message(
        payload,
        source=source,
        id=message_id,
        time=time,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        actorid=cause.actorid,
    )


def qualification_events(closing: d.Closing, cause: Envelope, source: str) -> list[Envelope]:
    """The events a qualification owes, with ids and time fixed by its process, so any replay is identical
    (and a requalification after a reopen publishes events of its own, not the first one's again)."""
    lead_id = closing.lead_id
    payloads: list[Payload] = []
    if closing.new_company is not None:
        company = closing.new_company
        payloads.append(
            CompanyCreated(
                company_id=company.company_id, lead_id=lead_id, name=company.name, inn=company.inn,
                industry=company.industry, segment=company.segment,
            )
        )
    if closing.deal is not None:
        payloads.append(DealCreated.model_validate(closing.deal.model_dump(exclude={"created_at"})))
    payloads.append(
        LeadQualified(
            lead_id=lead_id,
            qualification_type=closing.qualification_type,
            company_id=closing.company_id,
            deal_id=closing.deal.deal_id if closing.deal else None,
        )
    )
    return [_message(p, cause, source, d.event_id(closing, p.TYPE), closing.started_at) for p in payloads]


def disqualification_events(closing: d.Closing, cause: Envelope, source: str) -> list[Envelope]:
    payload = LeadDisqualified(
        lead_id=closing.lead_id, reason_id=closing.reason_id, reason=closing.reason, comment=closing.comment
    )
    return [_message(payload, cause, source, d.event_id(closing, payload.TYPE), closing.started_at)]


def qualification_rejected(cause: Envelope, problems: Sequence[d.Problem], source: str) -> Envelope:
    payload = QualificationRejected(
        lead_id=cause.data.lead_id,
        command_id=cause.id,
        reasons=[RejectionReason(code=p.code, field=p.field, message=p.message) for p in problems],
    )
    return _message(payload, cause, source, uuid5(d.ID_NAMESPACE, f"{cause.id}\x1frejected"))


def command_rejected(
    cause: Envelope, problems: Sequence[d.Problem] | access.Refusal, source: str, message_id: str | None = None
) -> Envelope:
    if isinstance(problems, access.Refusal):
        refusal = problems
    else:
        refusal = access.Refusal(
            problems[0].code, d.summary(problems), tuple((p.field or "command", p.message) for p in problems)
        )
    # Keyed by the lead when there is one, else by the command id.
    return access.rejection(
        cause, refusal, source=source, namespace=d.ID_NAMESPACE, lead_id=getattr(cause.data, "lead_id", None),
        message_id=message_id,
    )


def refused(cause: Envelope, refusal: access.Refusal, source: str) -> list[Envelope]:
    """The answer to a command refused before anything was read: ``crm.command.rejected``, and for a
    qualify also ``crm.qualification.rejected``, the outcome its sender waits for on the public topic."""
    if cause.type != "crm.lead.qualify":
        return [command_rejected(cause, refusal, source)]
    # Its own id: the qualification.rejected keeps the id it always had for this command.
    out = [command_rejected(cause, refusal, source, uuid5(d.ID_NAMESPACE, f"{cause.id}\x1fcommand-rejected"))]
    if access.text_error("lead_id", cause.data.lead_id) is None:
        field = refusal.errors[0][0] if len(refusal.errors) == 1 else None
        out.append(qualification_rejected(cause, [d.Problem(refusal.code, refusal.message, field)], source))
    return out


def lead_change(message: Envelope) -> LeadChange | None:
    data = message.data
    match message.type:
        case "crm.lead.created" | "crm.lead.updated":
            return LeadChange(data.lead_id, data.version, data.model_dump(mode="json", include=_CARD_FIELDS), True)
        case "crm.lead.stage-changed":
            fields = {"pipeline_id": data.pipeline_id, "stage_id": data.to_stage_id, "status": d.plain(data.to_status)}
            return LeadChange(data.lead_id, data.version, fields, False)
        case "crm.lead.deleted" | "crm.lead.restored":
            return LeadChange(data.lead_id, data.version, {"deleted": message.type == "crm.lead.deleted"}, False)
        case "crm.lead.assigned":
            return LeadChange(data.lead_id, data.version, {"responsible_id": data.responsible_id}, False)
    return None


def qualify_request(data: Any) -> d.QualifyRequest:
    return d.QualifyRequest(
        lead_id=data.lead_id,
        qualification_type=d.plain(data.qualification_type),
        company_id=data.company_id,
        has_new_company=data.new_company is not None,
        new_company_name=data.new_company.name if data.new_company else None,
        new_company_inn=data.new_company.inn if data.new_company else None,
        industry=data.industry,
        segment=data.segment,
        deal_pipeline_id=data.deal_pipeline_id,
    )


class QualificationHandlers:
    """The qualification service's message handling: one batch in, the events to publish out."""

    def __init__(
        self,
        settings: QualificationSettings,
        leads: LeadProjection,
        pipelines: PipelineProjection,
        reasons: ReasonRepository,
        closings: ClosingRepository,
        companies: CompanyRepository,
        deals: DealRepository,
        principals: PrincipalRepository,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.leads = leads
        self.pipelines = pipelines
        self.reasons = reasons
        self.closings = closings
        self.companies = companies
        self.deals = deals
        self.principals = principals
        self.source = source
        self.clock = clock
        # Called after each stored step of a qualification with the new state; tests crash here.
        self.after_step: Callable[[str], None] = lambda state: None

    async def on_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Lead and pipeline facts, licences and qualification commands in; public qualification events out."""
        messages = [item.message for item in batch]
        await self.principals.apply([m for m in messages if PrincipalRepository.handles(m.type)])
        await self._project(messages)
        out: list[Envelope] = []
        for message in messages:
            if message.type in COMMANDS:
                # A command with no actor, or with a field out of bounds, is answered before anything is read.
                refusal = access.screen(message)
                out.extend(refused(message, refusal, self.source) if refusal else await self._command(message))
        return [Outbound(QUALIFICATION_EVENTS, m, key=m.subject or m.id) for m in out]

    # --- projections --------------------------------------------------------------------------

    async def _project(self, messages: list[Envelope]) -> None:
        changes = [c for m in messages if (c := lead_change(m)) is not None]
        await self.leads.apply(changes)
        pipelines = []
        for m in messages:
            if m.type in ("crm.pipeline.created", "crm.pipeline.updated"):
                pipelines.append((m.data.pipeline_id, m.data.version, {"name": m.data.name, "deleted": False}))
            elif m.type == "crm.pipeline.deleted":
                pipelines.append((m.data.pipeline_id, m.data.version, {"deleted": True}))
        await self.pipelines.apply(pipelines)
        await self.reasons.seed(p[0] for p in pipelines if not p[2]["deleted"])
        companies = [
            (m.data.company_id, m.data.version, {"name": m.data.name, "inn": m.data.inn})
            for m in messages
            if m.type == "crm.company.upserted"
        ]
        await self.companies.upsert_known(companies)

    # --- commands -----------------------------------------------------------------------------

    async def _command(self, message: Envelope) -> list[Envelope]:
        match message.type:
            case "crm.lead.qualify":
                return await self._qualify(message)
            case "crm.lead.disqualify":
                return await self._disqualify(message)
        return await self._edit_reasons(message)

    async def _actor(self, message: Envelope) -> d.Actor:
        return actor_of(await self.principals.get(message.actorid))

    async def _licence(self, message: Envelope) -> access.Refusal | None:
        principal = await self.principals.get(message.actorid)
        return access.licence_refusal(message, {principal.user_id: principal})

    async def _qualify(self, message: Envelope) -> list[Envelope]:
        request = qualify_request(message.data)
        for _attempt in retry_on_conflict(f"lead {request.lead_id} under command {message.id}"):
            stored = await self.closings.get(request.lead_id)
            if stored is not None and stored.closing.command_id == message.id:
                return await self._run(stored)  # a redelivery: finish what is left, publish the same events
            if (refusal := await self._licence(message)) is not None:  # before the lead or company is read
                return refused(message, refusal, self.source)
            lead = await self.leads.get(request.lead_id)
            actor = await self._actor(message)
            company_known = await self.companies.exists(request.company_id) if request.company_id else None
            problems = d.check_qualification(
                request, lead, actor, stored.closing if stored else None, message.id,
                self.settings.deal_pipelines, company_known,
            )
            if problems:
                return [qualification_rejected(message, problems, self.source)]
            previous = stored.closing if stored else None  # the process of a lead since reopened
            closing = d.plan_qualification(request, lead, actor, message.id, self.clock(), previous=previous)
            outbox = qualification_events(closing, message, self.source)
            stored = StoredClosing(closing, [e.to_json_bytes().decode() for e in outbox])
            if await self.closings.start(closing, stored.outbox, replacing=previous):
                return await self._run(stored)
            # Another command got to this lead first: decide again against what it stored.
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    async def _run(self, stored: StoredClosing) -> list[Envelope]:
        """Take the process from its stored state to done, one idempotent step at a time."""
        closing = stored.closing
        while (step := d.next_step(closing)) is not None:
            if step.create == "company":
                await self.companies.create(closing.new_company)
            elif step.create == "deal":
                await self.deals.create(closing.deal)
            await self.closings.advance(closing.lead_id, closing.command_id, closing.state, step.to_state)
            closing = d.advanced(closing, step.to_state)
            self.after_step(closing.state)
        return [Envelope.model_validate_json(e) for e in stored.outbox]

    async def _disqualify(self, message: Envelope) -> list[Envelope]:
        data = message.data
        for _attempt in retry_on_conflict(f"lead {data.lead_id} under command {message.id}"):
            stored = await self.closings.get(data.lead_id)
            if stored is not None and stored.closing.command_id == message.id:
                return [Envelope.model_validate_json(e) for e in stored.outbox]
            if (refusal := await self._licence(message)) is not None:  # before the lead is read
                return refused(message, refusal, self.source)
            lead = await self.leads.get(data.lead_id)
            reasons = (await self.reasons.get(lead.pipeline_id)).reasons if lead else []
            problems = d.check_disqualification(
                data.lead_id, data.reason_id, lead, await self._actor(message),
                stored.closing if stored else None, message.id, reasons,
            )
            if problems:
                return [command_rejected(message, problems, self.source)]
            replacing = stored.closing if stored else None  # the process of a lead since reopened
            closing = d.plan_disqualification(
                lead, d.reason_of(reasons, data.reason_id), data.comment, message.id, self.clock(), previous=replacing
            )
            outbox = disqualification_events(closing, message, self.source)
            if await self.closings.start(closing, [e.to_json_bytes().decode() for e in outbox], replacing=replacing):
                return outbox
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    async def _edit_reasons(self, message: Envelope) -> list[Envelope]:
        data = message.data
        pipeline_id = data.pipeline_id
        if (refusal := await self._licence(message)) is not None:  # before the pipeline is read
            return refused(message, refusal, self.source)
        exists = await self.pipelines.exists(pipeline_id)
        actor = await self._actor(message)
        for _attempt in retry_on_conflict(f"reasons of pipeline {pipeline_id} under command {message.id}"):
            current = await self.reasons.get(pipeline_id) if exists else None
            if current is not None and message.id in current.recent:
                return []  # a redelivery of a change already made
            reasons = current.reasons if current else []
            if message.type == "crm.disqualification-reason.add":
                reason = d.Reason(
                    reason_id=data.reason_id or d.reason_id_for(message.id), text=data.text.strip(), text_ru=data.text_ru
                )
                changed, problems = d.add_reason(actor, pipeline_id, exists, reasons, reason)
            else:
                changed, problems = d.remove_reason(actor, pipeline_id, exists, reasons, data.reason_id)
            if problems:
                return [command_rejected(message, problems, self.source)]
            if await self.reasons.save(current, changed, message.id, self.settings.recent_messages_kept):
                return []
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")
