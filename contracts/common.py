"""Enums and value objects shared by several topics."""

from enum import Enum
from typing import Literal

from pydantic import AwareDatetime, Field

from contracts.base import ContractModel
from contracts.actions import StageAction, StageActionView


class LeadStatus(str, Enum):
    """Status kind of a stage, and so of a lead standing in it."""

    new = "new"
    in_progress = "in_progress"
    qualified = "qualified"
    unqualified = "unqualified"


class NeedMaturity(str, Enum):
    """How mature the client's need is."""

    aware = "aware"
    interested = "interested"
    urgent = "urgent"


class TransitionMode(str, Enum):
    """Which stage moves a pipeline allows: any, forward only, or only those made by the services."""

    manual = "manual"
    forward_only = "forward_only"
    process = "process"


class ReasonCode(str, Enum):
    """Why a command was refused."""

    not_licensed = "not_licensed"
    forbidden = "forbidden"
    not_found = "not_found"
    invalid_state = "invalid_state"
    invalid_transition = "invalid_transition"
    conflict = "conflict"
    validation = "validation"


class QualificationType(str, Enum):
    """What qualifying a lead creates: a deal and a company, or a company only."""

    deal_and_company = "deal_and_company"
    company_only = "company_only"


class TaskStatus(str, Enum):
    """Lifecycle state of a CRM task."""

    open = "open"
    done = "done"
    cancelled = "cancelled"


class TaskPriority(str, Enum):
    """Priority of a CRM task."""

    low = "low"
    normal = "normal"
    high = "high"


class ActivityState(str, Enum):
    """State of the nearest open task: on time, due within 24 hours, or overdue."""

    on_time = "on_time"
    due_soon = "due_soon"
    overdue = "overdue"


class ProductKind(str, Enum):
    """A catalog product is simple, or configurable with options to choose."""

    simple = "simple"
    configurable = "configurable"


class CallOutcome(str, Enum):
    """How a completed call (or other task) ended."""

    done = "done"
    no_answer = "no_answer"
    close_lead = "close_lead"


DEFAULT_PIPELINE_ID = "default"


class ContactRef(ContractModel):
    """A link to a contact plus a snapshot of its name, phone and email."""

    contact_id: str | None = Field(None, description="Id of the contact in the directory, when linked.")
    name: str | None = Field(None, description="Contact's full name.")
    phone: str | None = Field(None, description="Contact's phone number.")
    email: str | None = Field(None, description="Contact's email address.")


class CompanyRef(ContractModel):
    """A link to a company plus a snapshot of its name and INN."""

    company_id: str | None = Field(None, description="Id of the company in the directory, when linked.")
    name: str | None = Field(None, description="Company name.")
    inn: str | None = Field(None, description="Company taxpayer number (INN).")


class ProductLine(ContractModel):
    """A catalog product on a lead or deal, with its chosen options and quantity."""

    product_id: str = Field(description="Id of the catalog product.")
    name: str | None = Field(None, description="Snapshot of the product name.")
    kind: ProductKind | None = Field(None, description="Snapshot of the product kind.")
    quantity: float = Field(1, description="Quantity of the product.", ge=0)
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Chosen options of a configurable product: option name to chosen value.",
    )


class FieldError(ContractModel):
    """A problem with one field of a command."""

    field: str = Field(description="Dotted path of the offending field, e.g. `contact.email`.")
    message: str = Field(description="What is wrong with it, human readable.")


class StageSpec(ContractModel):
    """A stage as asked for by a pipeline command; its position is its place in the list."""

    stage_id: str | None = Field(
        None, description="Id of an existing stage to keep or rename; absent for a new stage."
    )
    name: str = Field(description="Display name of the stage.", min_length=1)
    status: LeadStatus = Field(description="Status kind of leads standing in this stage.")
    on_enter: list[StageAction] | None = Field(
        None, description="Actions run in order when a lead enters the stage; kept as they are when absent, removed by `[]`."
    )


class Stage(ContractModel):
    """A stage of a pipeline as stored."""

    stage_id: str = Field(description="Id of the stage, unique within its pipeline.")
    name: str = Field(description="Display name of the stage.")
    status: LeadStatus = Field(description="Status kind of leads standing in this stage.")
    position: int = Field(description="Zero-based position of the stage in the pipeline.", ge=0)
    on_enter: list[StageActionView] = Field(
        default_factory=list, description="Actions run in order when a lead enters the stage (webhook secrets not shown)."
    )


def default_stage_specs() -> list[StageSpec]:
    """Stages a pipeline gets when it is created without any: New, Processing, Qualified, Unqualified."""
    return [
        StageSpec(stage_id="new", name="New", status=LeadStatus.new),
        StageSpec(stage_id="processing", name="Processing", status=LeadStatus.in_progress),
        StageSpec(stage_id="qualified", name="Qualified", status=LeadStatus.qualified),
        StageSpec(stage_id="unqualified", name="Unqualified", status=LeadStatus.unqualified),
    ]


class StatusHistoryEntry(ContractModel):
    """A stay of a lead in one stage."""

    pipeline_id: str = Field(description="Pipeline the stage belongs to.")
    stage_id: str = Field(description="Stage the lead stood in.")
    status: LeadStatus = Field(description="Status kind of that stage.")
    entered_at: AwareDatetime = Field(description="When the lead entered the stage.")
    left_at: AwareDatetime | None = Field(None, description="When it left; absent while it is still there.")
    actor_id: str | None = Field(None, description="User who moved the lead into the stage, if any.")


class ActivitySummaryView(ContractModel):
    """The lead's open CRM tasks in brief, as shown on its card."""

    next_due_at: AwareDatetime | None = Field(None, description="Due time of the nearest open task.")
    next_task_id: str | None = Field(None, description="Id of the nearest open task.")
    open_count: int = Field(0, description="Number of open tasks.", ge=0)
    overdue_count: int = Field(0, description="Number of open tasks past their due time.", ge=0)
    state: ActivityState | None = Field(None, description="State of the nearest open task; absent when none is open.")


class DuplicateMatch(ContractModel):
    """Another lead that looks like the same client."""

    lead_id: str = Field(description="Id of the matching lead.")
    score: float = Field(description="Match strength from 0 (none) to 1 (certain).", ge=0, le=1)
    matched_on: list[str] = Field(description="What matched: `email`, `phone`, `name`.")


MergeSide = Literal["self", "other"]
