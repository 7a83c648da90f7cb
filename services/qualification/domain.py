"""Rules of qualification as pure functions: the checks, the plan with stable ids, the process steps."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crmkit.ids import uuid5

ReasonCode = Literal[
    "not_licensed", "forbidden", "not_found", "invalid_state", "invalid_transition", "conflict", "validation"
]
QualificationType = Literal["deal_and_company", "company_only"]
ProcessState = Literal["started", "company_created", "deal_created", "done"]
ClosingKind = Literal["qualify", "disqualify"]

FINAL_STATUSES = frozenset({"qualified", "unqualified"})
# Stable ids: the same lead always yields the same company, deal and event ids, so a replay
# (or a second instance resuming a process) publishes identical messages and creates nothing twice.
ID_NAMESPACE = uuid.UUID("2a0f5c7e-8d4b-4b61-9e3a-6c1d7f0b9a42")

# Ids and texts are part of what integrators see; the ids never change once published.
DEFAULT_REASONS: tuple[tuple[str, str, str], ...] = (
    ("no_contact", "Could not reach the client", "Не удалось связаться с клиентом"),
    ("lost_interest", "Client lost interest", "Клиент потерял интерес"),
    ("no_budget", "No budget", "Нет бюджета"),
    ("competitor", "Chose a competitor", "Выбрал конкурента"),
    ("duplicate", "Duplicate", "Дубликат"),
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContactRef(_Model):
    contact_id: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None


class ProductLine(_Model):
    product_id: str
    name: str | None = None
    kind: str | None = None
    quantity: float = 1
    options: dict[str, str] = Field(default_factory=dict)


class Lead(_Model):
    """What the service knows of a lead, projected from the leads service's events."""

    lead_id: str
    version: int
    pipeline_id: str
    stage_id: str | None = None
    status: str
    deleted: bool = False
    title: str
    responsible_id: str | None = None
    created_by: str | None = None
    contact: ContactRef | None = None
    products: list[ProductLine] = Field(default_factory=list)
    source: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    closed_version: int | None = None  # the version at which the lead was last seen qualified or unqualified


class Actor(_Model):
    user_id: str
    licensed: bool
    is_admin: bool = False


class Reason(_Model):
    """A disqualification reason of a pipeline."""

    reason_id: str
    text: str
    text_ru: str | None = None


class Company(_Model):
    company_id: str
    lead_id: str
    name: str
    inn: str | None = None
    industry: str | None = None
    segment: str | None = None
    created_at: AwareDatetime


class Deal(_Model):
    deal_id: str
    lead_id: str
    company_id: str
    contact: ContactRef | None = None
    products: list[ProductLine] = Field(default_factory=list)
    title: str
    responsible_id: str
    source: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    deal_pipeline_id: str
    created_at: AwareDatetime


class QualifyRequest(_Model):
    lead_id: str
    qualification_type: QualificationType
    company_id: str | None = None
    new_company_name: str | None = None
    new_company_inn: str | None = None
    has_new_company: bool = False
    industry: str | None = None
    segment: str | None = None
    deal_pipeline_id: str | None = None


class Closing(_Model):
    """The one process that closes a lead: a qualification (several steps) or a disqualification."""

    lead_id: str
    kind: ClosingKind
    command_id: str
    state: ProcessState
    qualification_type: QualificationType | None = None
    company_id: str | None = None
    new_company: Company | None = None  # set when the process creates the company
    deal: Deal | None = None  # set for deal_and_company
    reason_id: str | None = None
    reason: str | None = None
    comment: str | None = None
    started_at: AwareDatetime
    lead_version: int = 0  # the lead's version when the process was planned
    previous_command_id: str | None = None  # the process this one follows, when the lead was reopened


@dataclass(frozen=True)
class Problem:
    """One reason a command is refused."""

    code: ReasonCode
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Step:
    """The next step of a qualification: what to create (if anything), then the state it leads to."""

    create: Literal["company", "deal"] | None
    to_state: ProcessState


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


def reopened_since(lead: Lead, closing: Closing) -> bool:
    """Whether the lead was closed by this process (or later) and then reopened by an administrator.

    Only then may it be closed again: a lead whose closing the leads service has not applied yet
    still looks open here, so being open alone proves nothing."""
    return (
        lead.status not in FINAL_STATUSES
        and lead.closed_version is not None
        and lead.closed_version >= closing.lead_version
        and lead.version > lead.closed_version
    )


def reason_id_for(command_id: str) -> str:
    return stable_id(command_id, "reason")


# --- checks -----------------------------------------------------------------------------------


def _lead_problems(lead_id: str, lead: Lead | None, closing: Closing | None, command_id: str) -> list[Problem]:
    if lead is None:
        return [Problem("not_found", f"lead {lead_id} is not known to the qualification service", "lead_id")]
    problems: list[Problem] = []
    if lead.deleted:
        problems.append(Problem("invalid_state", f"lead {lead_id} is deleted; restore it first with crm.lead.restore", "lead_id"))
    if lead.status in FINAL_STATUSES:
        problems.append(Problem("invalid_state", f"lead {lead_id} is already {lead.status} and locked", "lead_id"))
    elif closing is not None and closing.command_id != command_id and not reopened_since(lead, closing):
        # The leads service has not told us yet, but this service already closed (or is closing) it.
        if closing.state != "done":
            problems.append(
                Problem("conflict", f"lead {lead_id} is being qualified by command {closing.command_id}", "lead_id")
            )
        else:
            done = "qualified" if closing.kind == "qualify" else "unqualified"
            problems.append(Problem("invalid_state", f"lead {lead_id} is already {done} and locked", "lead_id"))
    return problems


def _actor_problems(actor: Actor) -> list[Problem]:
    if actor.licensed:
        return []
    return [
        Problem(
            "not_licensed",
            f"user {actor.user_id or '(none)'} holds no CRM licence; ask an administrator to grant one, "
            "then send the command again",
        )
    ]


def check_qualification(
    request: QualifyRequest,
    lead: Lead | None,
    actor: Actor,
    closing: Closing | None,
    command_id: str,
    deal_pipelines: Sequence[str],
    company_known: bool | None,
) -> list[Problem]:
    """Every reason the qualification may not go ahead; empty when it may.

    ``company_known`` says whether ``request.company_id`` names a known company (None when not asked).
    """
    problems = _lead_problems(request.lead_id, lead, closing, command_id)
    problems += _actor_problems(actor)
    if request.company_id and request.has_new_company:
        problems.append(Problem("validation", "give either company_id or new_company, not both", "company_id"))
    elif not request.company_id and not request.has_new_company:
        problems.append(
            Problem("validation", "name an existing company with company_id or describe one in new_company", "company_id")
        )
    elif request.company_id and company_known is False:
        problems.append(Problem("not_found", f"company {request.company_id} is not known", "company_id"))
    if request.has_new_company and not (request.new_company_name or "").strip():
        problems.append(Problem("validation", "new_company needs a name", "new_company.name"))
    if request.qualification_type == "deal_and_company":
        if not request.deal_pipeline_id:
            problems.append(
                Problem("validation", "deal_and_company needs deal_pipeline_id, the deal pipeline of the new deal", "deal_pipeline_id")
            )
        elif request.deal_pipeline_id not in deal_pipelines:
            problems.append(
                Problem(
                    "validation",
                    f"unknown deal pipeline {request.deal_pipeline_id!r}; valid: {', '.join(deal_pipelines)}",
                    "deal_pipeline_id",
                )
            )
    return problems


def check_disqualification(
    lead_id: str,
    reason_id: str,
    lead: Lead | None,
    actor: Actor,
    closing: Closing | None,
    command_id: str,
    reasons: Sequence[Reason],
) -> list[Problem]:
    problems = _lead_problems(lead_id, lead, closing, command_id)
    problems += _actor_problems(actor)
    if lead is not None and not any(r.reason_id == reason_id for r in reasons):
        valid = ", ".join(r.reason_id for r in reasons) or "(none)"
        problems.append(
            Problem(
                "validation",
                f"{reason_id!r} is not a disqualification reason of pipeline {lead.pipeline_id}; use one of: {valid} "
                "(free text goes in comment)",
                "reason_id",
            )
        )
    return problems


# --- plans ------------------------------------------------------------------------------------


def plan_qualification(
    request: QualifyRequest, lead: Lead, actor: Actor, command_id: str, now: datetime, *, previous: Closing | None = None
) -> Closing:
    """The process to run, with every id fixed up front so each step can be repeated.

    ``previous`` is the process that closed the lead before it was reopened: the first deal and
    company keep their ids (and their history); this one gets ids of its own."""
    _check_now(now)
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
    _check_now(now)
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
    match closing.state:
        case "started":
            return Step("company" if closing.new_company is not None else None, "company_created")
        case "company_created":
            return Step("deal" if closing.deal is not None else None, "deal_created")
        case "deal_created":
            return Step(None, "done")
    return None


def advanced(closing: Closing, state: ProcessState) -> Closing:
    return closing.model_copy(update={"state": state})


# --- disqualification reasons -----------------------------------------------------------------


def default_reasons() -> list[Reason]:
    return [Reason(reason_id=rid, text=text, text_ru=ru) for rid, text, ru in DEFAULT_REASONS]


def add_reason(
    actor: Actor, pipeline_id: str, pipeline_exists: bool, reasons: Sequence[Reason], reason: Reason
) -> tuple[list[Reason], list[Problem]]:
    problems = _admin_problems(actor, "edit disqualification reasons") + _pipeline_problems(pipeline_id, pipeline_exists)
    existing = next((r for r in reasons if r.reason_id == reason.reason_id), None)
    if existing is not None and existing != reason:
        problems.append(
            Problem("conflict", f"pipeline already has a reason {reason.reason_id!r}: {existing.text!r}", "reason_id")
        )
    if problems:
        return list(reasons), problems
    if existing is not None:
        return list(reasons), []
    return [*reasons, reason], []


def remove_reason(
    actor: Actor, pipeline_id: str, pipeline_exists: bool, reasons: Sequence[Reason], reason_id: str
) -> tuple[list[Reason], list[Problem]]:
    problems = _admin_problems(actor, "edit disqualification reasons") + _pipeline_problems(pipeline_id, pipeline_exists)
    if pipeline_exists and not any(r.reason_id == reason_id for r in reasons):
        problems.append(Problem("not_found", f"pipeline has no reason {reason_id!r}", "reason_id"))
    if problems:
        return list(reasons), problems
    return [r for r in reasons if r.reason_id != reason_id], []


def _admin_problems(actor: Actor, action: str) -> list[Problem]:
    problems = _actor_problems(actor)
    if not problems and not actor.is_admin:
        problems.append(
            Problem("forbidden", f"only administrators may {action}; user {actor.user_id} is not one")
        )
    return problems


def _pipeline_problems(pipeline_id: str, exists: bool) -> list[Problem]:
    if exists:
        return []
    return [Problem("not_found", f"pipeline {pipeline_id} does not exist", "pipeline_id")]


def reason_of(reasons: Iterable[Reason], reason_id: str) -> Reason | None:
    return next((r for r in reasons if r.reason_id == reason_id), None)


def summary(problems: Sequence[Problem]) -> str:
    return "; ".join(p.message for p in problems)


def _check_now(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")


def plain(value: Any) -> Any:
    return getattr(value, "value", value)
