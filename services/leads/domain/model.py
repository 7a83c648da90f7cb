"""The lead card, pipelines and stages as pydantic models; the actor; the refusal every rule raises."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


Status = Literal["new", "in_progress", "qualified", "unqualified"]
TransitionMode = Literal["manual", "forward_only", "process"]
NeedMaturity = Literal["aware", "interested", "urgent"]
ProductKind = Literal["simple", "configurable"]
ActivityState = Literal["on_time", "due_soon", "overdue"]
ReasonCode = Literal[
    "not_licensed", "forbidden", "not_found", "invalid_state", "invalid_transition", "conflict", "validation"
]

STATUSES: tuple[str, ...] = ("new", "in_progress", "qualified", "unqualified")
TRANSITION_MODES: tuple[str, ...] = ("manual", "forward_only", "process")
FINAL_STATUSES = frozenset({"qualified", "unqualified"})
# Every pipeline keeps these kinds: leads land in `new`, qualification needs both final ones.
PROTECTED_STATUSES = frozenset({"new", "qualified", "unqualified"})
DUE_SOON_WITHIN = timedelta(hours=24)
DEFAULT_PIPELINE_ID = "default"

# The lead's own data: what crm.lead.create / crm.lead.update may set and crm.lead.merge may pick.
CARD_FIELDS: tuple[str, ...] = (
    "title",
    "responsible_id",
    "contact",
    "company",
    "products",
    "source",
    "marketing_event",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "need_maturity",
    "description",
    "external_id",
    "external_ids",
)
_MOVED_ELSEWHERE = {
    "stage_id": "move the lead with crm.lead.move",
    "status": "move the lead with crm.lead.move, or qualify it with crm.lead.qualify / crm.lead.disqualify",
    "pipeline_id": "move the lead with crm.lead.change-pipeline",
    "deleted": "use crm.lead.delete / crm.lead.restore",
    "duplicate_of": "use crm.lead.mark-duplicate",
}
# Keys of the update command itself that are not card data; other command keys are ignored.
_COMMAND_KEYS = frozenset({"lead_id", "import_id"})
# Bookkeeping that changes with everything else, so it says nothing in `changed_fields`.
_BOOKKEEPING = frozenset({"version", "updated_at", "data_changed_at", "status_since"})


class _Model(BaseModel):
    # Frozen so that no caller can change a lead behind the rules' back; changes make new objects.
    model_config = ConfigDict(frozen=True)


class StageAction(_Model):
    """An action run when a lead enters a stage: set card fields, or POST the card to a webhook."""

    action_id: str
    kind: Literal["set_fields", "webhook"]
    set_fields: dict[str, str] | None = None
    url: str | None = None
    secret: str | None = None  # the webhook's signing key: stored, never published


class Visibility(_Model):
    """The groups and roles a pipeline is shown to (administrators see every pipeline)."""

    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class Stage(_Model):
    """One step of a pipeline; its status kind is the status of the leads standing in it."""

    stage_id: str
    name: str
    status: Status
    position: int = Field(ge=0)
    on_enter: list[StageAction] = Field(default_factory=list)


class Pipeline(_Model):
    """An ordered list of stages and the rule for moving leads between them."""

    pipeline_id: str
    name: str
    stages: list[Stage]
    transition_mode: TransitionMode
    is_default: bool = False
    version: int = 1
    created_at: AwareDatetime
    updated_at: AwareDatetime
    deleted: bool = False
    visible_to: Visibility | None = None  # None: every licensed user

    @field_validator("stages")
    @classmethod
    def _in_order(cls, stages: list[Stage]) -> list[Stage]:
        # Stored documents need not keep list order; the rules rely on it.
        return sorted(stages, key=lambda stage: stage.position)

    def stage(self, stage_id: str | None) -> Stage | None:
        return next((stage for stage in self.stages if stage.stage_id == stage_id), None)

    def first_stage(self) -> Stage:
        return self.stages[0]

    def first_in_progress_stage(self) -> Stage | None:
        return next((stage for stage in self.stages if stage.status == "in_progress"), None)

    def final_stage(self, status: str) -> Stage:
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        return next(stage for stage in self.stages if stage.status == status)


class ContactRef(_Model):
    """A link to a directory contact with a snapshot of its name, phone and email."""

    contact_id: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None


class CompanyRef(_Model):
    """A link to a directory company with a snapshot of its name and INN."""

    company_id: str | None = None
    name: str | None = None
    inn: str | None = None


class ProductLine(_Model):
    """A catalog product on the lead, its snapshot, quantity and chosen options."""

    product_id: str
    name: str | None = None
    kind: ProductKind | None = None
    # A float default: a default is not validated, and an int 1 would be written as 1 where the contract's JSON has 1.0.
    quantity: float = Field(1.0, ge=0)
    options: dict[str, str] = Field(default_factory=dict)


class StatusHistoryEntry(_Model):
    """A stay of the lead in one stage; the open one has no `left_at`."""

    pipeline_id: str
    stage_id: str
    status: Status
    entered_at: AwareDatetime
    left_at: AwareDatetime | None = None
    actor_id: str | None = None


class ActivitySummaryView(_Model):
    """The lead's open CRM tasks in brief, as last reported by the activity service."""

    next_due_at: AwareDatetime | None = None
    next_task_id: str | None = None
    open_count: int = Field(0, ge=0)
    overdue_count: int = Field(0, ge=0)
    state: ActivityState | None = None


class DuplicateMatch(_Model):
    """Another lead that looks like the same client, and why."""

    lead_id: str
    score: float = Field(ge=0, le=1)
    matched_on: list[str]


class Lead(_Model):
    """The lead card: the client's data, where the lead stands, and its links."""

    lead_id: str
    pipeline_id: str
    stage_id: str
    status: Status
    version: int = Field(ge=0)
    title: str
    responsible_id: str | None = None
    created_by: str | None = None
    contact: ContactRef | None = None
    company: CompanyRef | None = None
    products: list[ProductLine] = Field(default_factory=list)
    source: str | None = None
    marketing_event: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    need_maturity: NeedMaturity | None = None
    description: str | None = None
    external_id: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    data_changed_at: AwareDatetime
    status_since: AwareDatetime
    status_history: list[StatusHistoryEntry] = Field(default_factory=list)
    deleted: bool = False
    deleted_at: AwareDatetime | None = None
    qualified_deal_id: str | None = None
    qualified_company_id: str | None = None
    disqualification_reason_id: str | None = None
    disqualification_reason: str | None = None
    disqualification_comment: str | None = None
    activity: ActivitySummaryView | None = None
    duplicates: list[DuplicateMatch] = Field(default_factory=list)
    duplicate_of: str | None = None
    merged_into: str | None = None
    import_id: str | None = None

    @property
    def locked(self) -> bool:
        return self.status in FINAL_STATUSES


class Actor(_Model):
    """Who sends a command: a user with or without a CRM licence, or a configured service."""

    user_id: str
    licensed: bool
    roles: frozenset[str] = frozenset()
    service: bool = False
    groups: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class Rejected(Exception):
    """A command that is understood but not allowed; it changes nothing."""

    def __init__(self, code: ReasonCode, message: str, errors: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.errors: list[tuple[str, str]] = list(errors)
