"""The qualification domain's model: leads as this service knows them, companies, deals, the closing process."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


def summary(problems: Sequence[Problem]) -> str:
    return "; ".join(p.message for p in problems)


def check_now(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")


def plain(value: Any) -> Any:
    return getattr(value, "value", value)
