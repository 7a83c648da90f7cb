"""Qualification's contract messages: the events a process owes, its refusals, and lead facts read off the leads topic."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
from crmkit import access
from crmkit.ids import uuid5
from crmkit.principals import Principal
from crmkit.views import card_view, view_parser
from services.qualification import domain as d
from services.qualification.repository import LeadChange

# What the projection keeps of a lead card: what the checks and the deal need.
_CARD_FIELDS = {
    "pipeline_id", "stage_id", "status", "deleted", "title", "responsible_id", "created_by", "contact",
    "products", "source", "utm_source", "utm_medium", "utm_campaign",
}
# The consumer reads only these of a card event (crmkit/views.py): 17-21 µs an event against 29-36 for the
# whole card, two card events a qualification.
CardFacts = card_view(
    "QualificationCardFacts", sorted(_CARD_FIELDS), doc="A lead card event with only what qualification projects of the card read.",
)
parse_record = view_parser(CardFacts)
COMMANDS = {
    "crm.lead.qualify", "crm.lead.disqualify", "crm.disqualification-reason.add", "crm.disqualification-reason.remove",
}


def actor_of(principal: Principal) -> d.Actor:
    return d.Actor(user_id=principal.user_id, licensed=principal.licensed, is_admin=principal.is_admin)


def message_for(payload: Payload, cause: Envelope, source: str, message_id: str, time: datetime | None = None) -> Envelope:
    """An event caused by ``cause``, in its trace (as crmkit would carry it), so that it is serialized once."""
    return build_message(
        payload,
        source=source,
        id=message_id,
        time=time,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        actorid=cause.actorid,
        traceparent=cause.traceparent,
        tracestate=cause.tracestate,
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
    return [message_for(p, cause, source, d.event_id(closing, p.TYPE), closing.started_at) for p in payloads]


def disqualification_events(closing: d.Closing, cause: Envelope, source: str) -> list[Envelope]:
    payload = LeadDisqualified(
        lead_id=closing.lead_id, reason_id=closing.reason_id, reason=closing.reason, comment=closing.comment
    )
    return [message_for(payload, cause, source, d.event_id(closing, payload.TYPE), closing.started_at)]


def qualification_rejected(cause: Envelope, problems: Sequence[d.Problem], source: str) -> Envelope:
    payload = QualificationRejected(
        lead_id=cause.data.lead_id,
        command_id=cause.id,
        reasons=[RejectionReason(code=p.code, field=p.field, message=p.message) for p in problems],
    )
    return message_for(payload, cause, source, uuid5(d.ID_NAMESPACE, f"{cause.id}\x1frejected"))


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
    """What a lead event changes in the projection; None when nothing it keeps (a card update of fields outside it,
    such as the activity summary: its version left behind is what the version guard allows)."""
    data = message.data
    match message.type:
        case "crm.lead.updated" if data.changed_fields and _CARD_FIELDS.isdisjoint(data.changed_fields):
            return None
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
