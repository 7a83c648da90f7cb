"""The plan of a closing with every id fixed up front, and the steps a qualification goes through."""

from __future__ import annotations

from datetime import datetime

from typing import Literal

from crmkit.ids import uuid5
from services.qualification.domain.model import (
    ID_NAMESPACE, Closing, Company, Deal, Lead, Actor, ProcessState, QualifyRequest, Reason, Step, check_now,
)


# --- ids --------------------------------------------------------------------------------------


def stable_id(lead_id: str, what: str) -> str:
    return uuid5(ID_NAMESPACE, f"{lead_id}\x1f{what}")


def company_id_for(lead_id: str, command_id: str | None = None) -> str:
    """The company a lead's qualification creates; a later qualification (after a reopen) gets another."""
    return stable_id(lead_id if command_id is None else f"{lead_id}\x1f{command_id}", "company")


def deal_id_for(lead_id: str, command_id: str | None = None) -> str:
    """The deal of a lead's first qualification; a requalification after a reopen makes a new deal."""
    return stable_id(lead_id if command_id is None else f"{lead_id}\x1f{command_id}", "deal")


def event_id(closing: Closing, event_type: str) -> str:
    """An event of a process: fixed by the lead for its first closing, by the command for a later one."""
    key = closing.lead_id if closing.previous_command_id is None else f"{closing.lead_id}\x1f{closing.command_id}"
    return stable_id(key, event_type)


def reason_id_for(command_id: str) -> str:
    return stable_id(command_id, "reason")


# --- plans ------------------------------------------------------------------------------------


def plan_qualification(
    request: QualifyRequest, lead: Lead, actor: Actor, command_id: str, now: datetime, *, previous: Closing | None = None
) -> Closing:
    """The process to run, with every id fixed up front so each step can be repeated.

    ``previous`` is the process that closed the lead before it was reopened: the first deal and
    company keep their ids (and their history); this one gets ids of its own."""
    check_now(now)
    again = command_id if previous is not None else None
    company_id = request.company_id or company_id_for(lead.lead_id, again)
    new_company = None
    if not request.company_id:
        new_company = Company(
            company_id=company_id,
            lead_id=lead.lead_id,
            name=(request.new_company_name or "").strip(),
            inn=request.new_company_inn,
            industry=request.industry,
            segment=request.segment,
            created_at=now,
        )
    deal = None
    if request.qualification_type == "deal_and_company":
        deal = Deal(
            deal_id=deal_id_for(lead.lead_id, again),
            lead_id=lead.lead_id,
            company_id=company_id,
            contact=lead.contact,
            products=lead.products,
            title=lead.title,
            # A deal always has someone responsible; the lead's creator or the qualifier stands in.
            responsible_id=lead.responsible_id or lead.created_by or actor.user_id,
            source=lead.source,
            utm_source=lead.utm_source,
            utm_medium=lead.utm_medium,
            utm_campaign=lead.utm_campaign,
            deal_pipeline_id=request.deal_pipeline_id or "",
            created_at=now,
        )
    return Closing(
        lead_id=lead.lead_id,
        kind="qualify",
        command_id=command_id,
        state="started",
        qualification_type=request.qualification_type,
        company_id=company_id,
        new_company=new_company,
        deal=deal,
        started_at=now,
        lead_version=lead.version,
        previous_command_id=previous.command_id if previous else None,
    )


def plan_disqualification(
    lead: Lead, reason: Reason, comment: str | None, command_id: str, now: datetime, *, previous: Closing | None = None
) -> Closing:
    check_now(now)
    return Closing(
        lead_id=lead.lead_id,
        kind="disqualify",
        command_id=command_id,
        state="done",  # one step: the event is the whole effect
        reason_id=reason.reason_id,
        reason=reason.text,
        comment=(comment or "").strip() or None,
        started_at=now,
        lead_version=lead.version,
        previous_command_id=previous.command_id if previous else None,
    )


def next_step(closing: Closing) -> Step | None:
    """started → company_created → deal_created → done; None once done."""
    return _step_from(closing, closing.state)


def _step_from(closing: Closing, state: ProcessState) -> Step | None:
    """The step a process would take next once in ``state``."""
    match state:
        case "started":
            return Step("company" if closing.new_company is not None else None, "company_created")
        case "company_created":
            return Step("deal" if closing.deal is not None else None, "deal_created")
        case "deal_created":
            return Step(None, "done")
    return None


def advanced(closing: Closing, state: ProcessState) -> Closing:
    return closing.model_copy(update={"state": state})


def creates_left(closing: Closing) -> list[Literal["company", "deal"]]:
    """What a process still has to create, in order, from its stored state to done.

    Every create is an insert under an id fixed by the plan, so one left over by a crash is simply
    done again: a batch stores all of a step's records at once and marks its processes done after."""
    left: list[Literal["company", "deal"]] = []
    # Walked over the states, not over copies of the process advanced to each (23 against 4 µs a qualification, in isolation).
    state = closing.state
    while (step := _step_from(closing, state)) is not None:
        if step.create is not None:
            left.append(step.create)
        state = step.to_state
    return left
