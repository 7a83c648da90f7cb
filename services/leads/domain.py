"""Rules of pipelines and leads as pure functions: state and time in, new state and events out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class Stage(_Model):
    """One step of a pipeline; its status kind is the status of the leads standing in it."""

    stage_id: str
    name: str
    status: Status
    position: int = Field(ge=0)


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
    quantity: float = Field(1, ge=0)
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


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadCreated:
    lead: Lead


@dataclass(frozen=True)
class LeadUpdated:
    lead: Lead
    changed_fields: tuple[str, ...]


@dataclass(frozen=True)
class LeadAssigned:
    lead_id: str
    responsible_id: str
    previous_responsible_id: str | None
    version: int


@dataclass(frozen=True)
class StageChanged:
    lead_id: str
    pipeline_id: str
    from_stage_id: str
    to_stage_id: str
    from_status: str
    to_status: str
    version: int
    from_pipeline_id: str | None = None  # set only when the lead changed pipeline


@dataclass(frozen=True)
class LeadDeleted:
    lead_id: str
    version: int


@dataclass(frozen=True)
class LeadRestored:
    lead_id: str
    version: int


@dataclass(frozen=True)
class DuplicatesFound:
    lead_id: str
    matches: tuple[DuplicateMatch, ...]
    version: int


@dataclass(frozen=True)
class LeadMerged:
    lead_id: str
    merged_lead_id: str
    version: int


@dataclass(frozen=True)
class PipelineCreated:
    pipeline: Pipeline


@dataclass(frozen=True)
class PipelineUpdated:
    pipeline: Pipeline


@dataclass(frozen=True)
class PipelineDeleted:
    pipeline_id: str
    version: int


@dataclass
class Outcome:
    """A lead after a command and the events to publish; no events means nothing changed."""

    lead: Lead
    events: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.events)


@dataclass
class PipelineOutcome:
    """A pipeline after a command and the events to publish; no events means nothing changed."""

    pipeline: Pipeline
    events: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.events)


# --- access ---------------------------------------------------------------------------------


def require_licensed(actor: Actor) -> None:
    if actor.service:
        return
    if not actor.licensed:
        raise Rejected(
            "not_licensed",
            f"user {actor.user_id} holds no CRM licence; ask an administrator to grant one, then send "
            "the command again",
        )


def require_admin(actor: Actor, action: str = "do this") -> None:
    require_licensed(actor)
    if not actor.service and not actor.is_admin:
        raise Rejected(
            "forbidden",
            f"only administrators may {action}; user {actor.user_id} is not one, ask an administrator",
        )


# --- pipelines ------------------------------------------------------------------------------

_DEFAULT_STAGES: tuple[dict[str, str], ...] = (
    {"stage_id": "new", "name": "New", "status": "new"},
    {"stage_id": "processing", "name": "Processing", "status": "in_progress"},
    {"stage_id": "qualified", "name": "Qualified", "status": "qualified"},
    {"stage_id": "unqualified", "name": "Unqualified", "status": "unqualified"},
)


def default_pipeline(now: datetime) -> Pipeline:
    _check_now(now)
    return Pipeline(
        pipeline_id=DEFAULT_PIPELINE_ID,
        name="Default",
        stages=[Stage(**spec, position=index) for index, spec in enumerate(_DEFAULT_STAGES)],
        transition_mode="manual",
        is_default=True,
        version=1,
        created_at=now,
        updated_at=now,
    )


def create_pipeline(
    actor: Actor,
    pipeline_id: str,
    name: str,
    stages: list[Any] | None,
    transition_mode: str | None,
    now: datetime,
    *,
    existing: Pipeline | None = None,
) -> PipelineOutcome:
    require_admin(actor, "create pipelines")
    _check_now(now)
    if existing is not None:
        raise Rejected(
            "conflict",
            f"a pipeline with the id {pipeline_id} already exists; choose another id, or change it with "
            "crm.pipeline.update",
        )
    pipeline_id = (pipeline_id or "").strip()
    if not pipeline_id:
        raise Rejected("validation", "a pipeline needs an id", [("pipeline_id", "must not be blank")])
    if len(pipeline_id) > ID_MAX_CHARS:
        raise Rejected("validation", f"a pipeline id may have at most {ID_MAX_CHARS} characters",
                       [("pipeline_id", f"{len(pipeline_id)} characters, at most {ID_MAX_CHARS}")])
    pipeline = Pipeline(
        pipeline_id=pipeline_id,
        name=_pipeline_name(name),
        stages=_checked_stages(_build_stages(_DEFAULT_STAGES if stages is None else stages, None)),
        transition_mode=_transition_mode(transition_mode or "manual"),
        version=1,
        created_at=now,
        updated_at=now,
    )
    return PipelineOutcome(pipeline, [PipelineCreated(pipeline)])


def update_pipeline(
    actor: Actor,
    pipeline: Pipeline,
    *,
    name: str | None = None,
    stages: list[Any] | None = None,
    transition_mode: str | None = None,
    now: datetime,
    leads_per_stage: Mapping[str, int] | None = None,
) -> PipelineOutcome:
    require_admin(actor, "change pipelines and their stages")
    _check_now(now)
    if pipeline.deleted:
        raise Rejected("not_found", f"pipeline {pipeline.pipeline_id} was deleted; it cannot be changed")
    updates: dict[str, Any] = {}
    if name is not None:
        updates["name"] = _pipeline_name(name)
    if transition_mode is not None:
        updates["transition_mode"] = _transition_mode(transition_mode)
    if stages is not None:
        if leads_per_stage is None:
            # Without the counts a stage full of leads could vanish; that is a caller bug.
            raise ValueError("leads_per_stage is required when stages change")
        built = _build_stages(stages, pipeline)
        _check_stage_changes(pipeline, built, leads_per_stage)
        updates["stages"] = _checked_stages(built)
    updates = {key: value for key, value in updates.items() if getattr(pipeline, key) != value}
    if not updates:
        return PipelineOutcome(pipeline, [])
    changed = pipeline.model_copy(update={**updates, "version": pipeline.version + 1, "updated_at": now})
    return PipelineOutcome(changed, [PipelineUpdated(changed)])


def delete_pipeline(actor: Actor, pipeline: Pipeline, *, lead_count: int, now: datetime) -> PipelineOutcome:
    require_admin(actor, "delete pipelines")
    _check_now(now)
    if pipeline.deleted:
        return PipelineOutcome(pipeline, [])
    if pipeline.is_default:
        raise Rejected("forbidden", "the default pipeline cannot be deleted; it is where leads go by default")
    if lead_count > 0:
        raise Rejected(
            "invalid_state",
            f"pipeline {pipeline.pipeline_id} still holds {_leads(lead_count)}; move them to another pipeline "
            "with crm.lead.change-pipeline first",
        )
    deleted = pipeline.model_copy(update={"deleted": True, "version": pipeline.version + 1, "updated_at": now})
    return PipelineOutcome(deleted, [PipelineDeleted(deleted.pipeline_id, deleted.version)])


# What a board can show: longer names, or more stages, are a mistake (or an attack on the events,
# which carry the whole pipeline), not a pipeline.
NAME_MAX_CHARS = 200
ID_MAX_CHARS = 100
STAGES_MAX = 50


def _pipeline_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise Rejected("validation", "a pipeline needs a name", [("name", "must not be blank")])
    if len(name) > NAME_MAX_CHARS:
        raise Rejected("validation", f"a pipeline name may have at most {NAME_MAX_CHARS} characters; shorten it",
                       [("name", f"{len(name)} characters, at most {NAME_MAX_CHARS}")])
    return name


def _transition_mode(mode: Any) -> str:
    mode = _text(mode)
    if mode not in TRANSITION_MODES:
        raise Rejected(
            "validation",
            f"unknown transition mode {mode!r}; use one of {', '.join(TRANSITION_MODES)}",
            [("transition_mode", f"must be one of {', '.join(TRANSITION_MODES)}")],
        )
    return mode


def _build_stages(specs: Iterable[Any], previous: Pipeline | None) -> list[Stage]:
    items = [_as_mapping(spec) for spec in specs]
    if len(items) > STAGES_MAX:
        raise Rejected("validation", f"a pipeline may have at most {STAGES_MAX} stages; it was given {len(items)}",
                       [("stages", f"{len(items)} stages, at most {STAGES_MAX}")])
    explicit = [str(item["stage_id"]).strip() for item in items if item.get("stage_id")]
    repeated = sorted({stage_id for stage_id in explicit if explicit.count(stage_id) > 1})
    if repeated:
        raise Rejected(
            "validation",
            f"stage ids must be unique within a pipeline; {', '.join(repeated)} appear more than once",
            [("stages", f"stage id {stage_id} is repeated") for stage_id in repeated],
        )
    taken = set(explicit)
    stages: list[Stage] = []
    errors: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        name = str(item.get("name") or "").strip()
        stage_id = str(item.get("stage_id") or "").strip() or _unique_slug(name, taken)
        kept = previous.stage(stage_id) if previous is not None else None
        # A stage added without a kind can only sensibly be another working stage.
        status = _text(item.get("status")) or (kept.status if kept else "in_progress")
        if not name:
            errors.append((f"stages.{index}.name", "give the stage a name"))
        elif len(name) > NAME_MAX_CHARS:
            errors.append((f"stages.{index}.name", f"{len(name)} characters, at most {NAME_MAX_CHARS}"))
        if len(stage_id) > ID_MAX_CHARS:
            errors.append((f"stages.{index}.stage_id", f"{len(stage_id)} characters, at most {ID_MAX_CHARS}"))
        if status not in STATUSES:
            errors.append((f"stages.{index}.status", f"must be one of {', '.join(STATUSES)}"))
        if not errors:
            stages.append(Stage(stage_id=stage_id, name=name, status=status, position=index))
    if errors:
        raise Rejected("validation", "some stages are not valid; fix the fields listed in errors", errors)
    return stages


def _checked_stages(stages: list[Stage]) -> list[Stage]:
    statuses = [stage.status for stage in stages]
    problems: list[str] = []
    if not stages or statuses[0] != "new":
        problems.append("the first stage must have the status new")
    if statuses.count("new") > 1:
        problems.append("only the first stage may have the status new")
    for final in ("qualified", "unqualified"):
        if statuses.count(final) != 1:
            problems.append(f"a pipeline needs exactly one {final} stage, it has {statuses.count(final)}")
    if len(stages) < 2 or set(statuses[-2:]) != FINAL_STATUSES:
        problems.append("the qualified and unqualified stages must be the last two")
    if problems:
        raise Rejected(
            "validation",
            "the stages break the pipeline rules: " + "; ".join(problems),
            [("stages", problem) for problem in problems],
        )
    return stages


def _check_stage_changes(pipeline: Pipeline, stages: list[Stage], leads_per_stage: Mapping[str, int]) -> None:
    proposed = {stage.stage_id: stage for stage in stages}
    for stage in pipeline.stages:
        kept = proposed.get(stage.stage_id)
        if kept is None and stage.status in PROTECTED_STATUSES:
            raise Rejected(
                "invalid_state",
                f"stage {stage.name!r} ({stage.stage_id}) cannot be removed: every pipeline keeps its New "
                "stage and its Qualified and Unqualified stages; rename it instead",
            )
        if kept is None and leads_per_stage.get(stage.stage_id, 0) > 0:
            raise Rejected(
                "invalid_state",
                f"stage {stage.name!r} ({stage.stage_id}) still holds "
                f"{_leads(leads_per_stage[stage.stage_id])}; move them to another stage first, then remove it",
            )
        if kept is not None and kept.status != stage.status:
            # The leads standing in it carry its status; changing it would make them lie.
            raise Rejected(
                "invalid_state",
                f"stage {stage.name!r} ({stage.stage_id}) keeps its status {stage.status}; add a new stage "
                "with the status you need instead",
            )


# Stage ids are derived from names, which are often Russian; ids stay ASCII for URLs and logs.
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a,b,v,g,d,e,e,zh,z,i,y,k,l,m,n,o,p,r,s,t,u,f,kh,ts,ch,sh,shch,,y,,e,yu,ya".split(","),
        strict=True,
    )
)


def _unique_slug(name: str, taken: set[str]) -> str:
    text = "".join(_CYRILLIC.get(char, char) for char in name.lower()).replace("-", " ")
    base = re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:60].strip("_") or "stage"
    slug, counter = base, 2
    while slug in taken:
        slug, counter = f"{base}_{counter}", counter + 1
    taken.add(slug)
    return slug


# --- leads: creation and card data ----------------------------------------------------------


class _CardData(BaseModel):
    """The lead's own data, validated together so every bad field is reported at once."""

    model_config = ConfigDict(extra="ignore")

    title: str | None = None
    responsible_id: str | None = None
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

    @field_validator(
        "title",
        "responsible_id",
        "source",
        "marketing_event",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "description",
        "external_id",
        mode="before",
    )
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        # Forms and spreadsheets send "" or "  " for an empty field.
        if isinstance(value, str):
            return value.strip() or None
        return value


def _card_data(values: Mapping[str, Any]) -> _CardData:
    try:
        card = _CardData.model_validate({key: _plain(value) for key, value in values.items()})
    except ValidationError as exc:
        raise Rejected(
            "validation",
            "the lead data is not valid; fix the fields listed in errors and send it again",
            [(".".join(str(part) for part in error["loc"]), error["msg"]) for error in exc.errors()],
        ) from None
    if card.title is None:
        raise Rejected(
            "validation",
            "a lead needs a title; give it a short name",
            [("title", "title is required and cannot be blank")],
        )
    return card


def create_lead(actor: Actor, lead_id: str, data: Mapping[str, Any], pipeline: Pipeline, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    if pipeline.deleted:
        raise Rejected("not_found", f"pipeline {pipeline.pipeline_id} was deleted; create the lead in another pipeline")
    if not (lead_id or "").strip():
        raise Rejected("validation", "a lead needs an id", [("lead_id", "must not be blank")])
    # Other keys (lead_id, pipeline_id, import_row, ...) belong to the command, not the card.
    values = {key: value for key, value in data.items() if value is not None}
    card = _card_data({key: values[key] for key in CARD_FIELDS if key in values})
    stage_id = _text(values.get("stage_id"))
    if stage_id:
        stage = _non_final_stage(pipeline, stage_id, "create a lead")
    else:
        stage = pipeline.first_stage()
    lead = Lead(
        lead_id=lead_id,
        pipeline_id=pipeline.pipeline_id,
        stage_id=stage.stage_id,
        status=stage.status,
        version=1,
        **{name: getattr(card, name) for name in CARD_FIELDS if name != "responsible_id"},
        responsible_id=card.responsible_id or actor.user_id,
        created_by=actor.user_id,
        import_id=values.get("import_id"),
        created_at=now,
        updated_at=now,
        data_changed_at=now,
        status_since=now,
        status_history=[_entry(pipeline.pipeline_id, stage, now, actor.user_id)],
    )
    return Outcome(lead, [LeadCreated(lead)])


def update_lead(
    actor: Actor, lead: Lead, changes: Mapping[str, Any], clear: Iterable[str], now: datetime
) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    _require_live(lead)
    _require_unlocked(lead)
    clear = list(clear or [])
    changes = {key: value for key, value in changes.items() if value is not None}
    errors: list[tuple[str, str]] = []
    for name in clear:
        if name not in CARD_FIELDS:
            errors.append((name, _MOVED_ELSEWHERE.get(name, "is not a field of the lead card that can be cleared")))
        elif name == "title":
            errors.append(("title", "a lead always has a title; set a new one instead of clearing it"))
        elif name in changes:
            errors.append((name, "cannot be set and cleared in the same update"))
    for name in changes:
        if name in _MOVED_ELSEWHERE:
            errors.append((name, _MOVED_ELSEWHERE[name]))
        elif name in Lead.model_fields and name not in CARD_FIELDS and name not in _COMMAND_KEYS:
            errors.append((name, "is kept by the service and cannot be set by an update"))
    if errors:
        raise Rejected("validation", "the update asks for changes it cannot make; see errors", errors)
    values = lead.model_dump(include=set(CARD_FIELDS))
    values.update({key: value for key, value in changes.items() if key in CARD_FIELDS})
    for name in clear:
        values.pop(name)
    card = _card_data(values)
    updates = {name: getattr(card, name) for name in CARD_FIELDS if getattr(card, name) != getattr(lead, name)}
    if not updates:
        return Outcome(lead, [])
    # An import stamps the leads it really changed, so reverting it knows which to restore.
    if changes.get("import_id"):
        updates["import_id"] = changes["import_id"]
    changed = _next(lead, now, **updates, data_changed_at=now)
    events: list = []
    if "responsible_id" in updates:
        events.append(
            LeadAssigned(lead.lead_id, changed.responsible_id or "", lead.responsible_id, changed.version)
        )
    events.append(LeadUpdated(changed, _diff(lead, changed)))
    return Outcome(changed, events)


# --- leads: responsibility and stages -------------------------------------------------------


def assign_lead(actor: Actor, lead: Lead, pipeline: Pipeline, responsible_id: str, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    _require_its_pipeline(lead, pipeline)
    _require_live(lead)
    _require_unlocked(lead)
    responsible_id = (responsible_id or "").strip()
    if not responsible_id:
        raise Rejected("validation", "name the user to make responsible", [("responsible_id", "must not be blank")])
    # Taking a lead into work is what assigning means, even when the creator assigns themself.
    target = pipeline.first_in_progress_stage() if lead.status == "new" else None
    if responsible_id == lead.responsible_id and target is None:
        return Outcome(lead, [])
    updates: dict[str, Any] = {}
    if responsible_id != lead.responsible_id:
        updates.update(responsible_id=responsible_id, data_changed_at=now)
    if target is not None:
        updates.update(_entering(lead, pipeline.pipeline_id, target, now, actor.user_id))
    changed = _next(lead, now, **updates)
    events: list = []
    if responsible_id != lead.responsible_id:
        events.append(LeadAssigned(lead.lead_id, responsible_id, lead.responsible_id, changed.version))
    if target is not None:
        events.append(_stage_changed(lead, changed))
    events.append(LeadUpdated(changed, _diff(lead, changed)))
    return Outcome(changed, events)


def move_lead(actor: Actor, lead: Lead, pipeline: Pipeline, stage_id: str, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    _require_its_pipeline(lead, pipeline)
    _require_live(lead)
    _require_unlocked(lead)
    _require_may_move(actor, pipeline)
    stage = pipeline.stage(stage_id)
    if stage is None:
        raise Rejected(
            "invalid_transition",
            f"stage {stage_id} is not in pipeline {pipeline.pipeline_id}; to move the lead to another "
            "pipeline use crm.lead.change-pipeline",
        )
    if stage.stage_id == lead.stage_id:
        return Outcome(lead, [])
    if stage.status in FINAL_STATUSES:
        raise Rejected(
            "invalid_transition",
            f"stage {stage.stage_id} is {stage.status}, a final stage that a move cannot reach; "
            "use crm.lead.qualify / crm.lead.disqualify",
        )
    current = pipeline.stage(lead.stage_id)
    if pipeline.transition_mode == "forward_only" and current is not None and stage.position <= current.position:
        raise Rejected(
            "invalid_transition",
            f"pipeline {pipeline.pipeline_id} only moves leads forward, and stage {stage.stage_id} comes "
            f"before {current.stage_id}; pick a later stage",
        )
    return _transition(lead, pipeline.pipeline_id, stage, now, actor.user_id)


def change_pipeline(actor: Actor, lead: Lead, target: Pipeline, stage_id: str | None, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    _require_live(lead)
    _require_unlocked(lead)
    if target.deleted:
        raise Rejected("not_found", f"pipeline {target.pipeline_id} was deleted; pick another pipeline")
    if target.pipeline_id == lead.pipeline_id:
        raise Rejected(
            "invalid_transition",
            f"lead {lead.lead_id} is already in pipeline {target.pipeline_id}; use crm.lead.move to change "
            "its stage",
        )
    _require_may_move(actor, target)
    stage = _non_final_stage(target, stage_id, "move a lead") if stage_id else target.first_stage()
    return _transition(lead, target.pipeline_id, stage, now, actor.user_id)


def reopen_lead(actor: Actor, lead: Lead, pipeline: Pipeline, stage_id: str | None, now: datetime) -> Outcome:
    require_admin(actor, "reopen qualified or unqualified leads")
    _check_now(now)
    _require_its_pipeline(lead, pipeline)
    _require_live(lead)
    if not lead.locked:
        raise Rejected(
            "invalid_state",
            f"lead {lead.lead_id} is {lead.status}, not qualified or unqualified; only a closed lead can be "
            "reopened",
        )
    if stage_id:
        stage = _non_final_stage(pipeline, stage_id, "reopen a lead")
    else:
        stage = pipeline.first_in_progress_stage() or pipeline.first_stage()
    # A reopened lead is no longer qualified nor disqualified; the history keeps the past.
    return _transition(
        lead,
        pipeline.pipeline_id,
        stage,
        now,
        actor.user_id,
        qualified_deal_id=None,
        qualified_company_id=None,
        disqualification_reason_id=None,
        disqualification_reason=None,
        disqualification_comment=None,
    )


def apply_qualified(lead: Lead, pipeline: Pipeline, deal_id: str | None, company_id: str | None, now: datetime) -> Outcome:
    return _close(
        lead,
        pipeline,
        "qualified",
        now,
        qualified_deal_id=deal_id,
        qualified_company_id=company_id,
        disqualification_reason_id=None,
        disqualification_reason=None,
        disqualification_comment=None,
    )


def apply_disqualified(
    lead: Lead,
    pipeline: Pipeline,
    reason_id: str | None,
    reason: str | None,
    comment: str | None,
    now: datetime,
) -> Outcome:
    return _close(
        lead,
        pipeline,
        "unqualified",
        now,
        qualified_deal_id=None,
        qualified_company_id=None,
        disqualification_reason_id=reason_id,
        disqualification_reason=reason,
        disqualification_comment=comment,
    )


def _close(lead: Lead, pipeline: Pipeline, status: str, now: datetime, **links: Any) -> Outcome:
    _check_now(now)
    _require_its_pipeline(lead, pipeline)
    _require_live(lead)
    stage = pipeline.final_stage(status)
    if lead.stage_id != stage.stage_id:
        return _transition(lead, pipeline.pipeline_id, stage, now, None, **links)
    updates = {key: value for key, value in links.items() if getattr(lead, key) != value}
    if not updates:
        return Outcome(lead, [])
    changed = _next(lead, now, **updates)
    return Outcome(changed, [LeadUpdated(changed, _diff(lead, changed))])


# --- leads: deletion ------------------------------------------------------------------------


def delete_lead(actor: Actor, lead: Lead, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    if lead.deleted:
        return Outcome(lead, [])
    if lead.locked and not (actor.is_admin or actor.service):
        raise Rejected(
            "invalid_state",
            f"lead {lead.lead_id} is {lead.status} and locked; only an administrator can delete it",
        )
    changed = _next(lead, now, deleted=True, deleted_at=now)
    return Outcome(changed, [LeadDeleted(lead.lead_id, changed.version), LeadUpdated(changed, _diff(lead, changed))])


def restore_lead(actor: Actor, lead: Lead, pipeline: Pipeline, default: Pipeline, now: datetime) -> Outcome:
    """Bring a deleted lead back; ``pipeline`` is the one it stood on, ``default`` where it goes if that one is gone.

    A pipeline holding only deleted leads may be deleted. A live lead must stand on a live pipeline
    (boards, moves and counts only know those), so a lead whose pipeline went meanwhile is restored
    into the default pipeline at the stage of its status, and says so with a stage change naming the
    pipeline it came from. Its status, and so whether it is locked, does not change.
    """
    require_licensed(actor)
    _check_now(now)
    if not lead.deleted:
        return Outcome(lead, [])
    if lead.merged_into:
        raise Rejected(
            "invalid_state",
            f"lead {lead.lead_id} was merged into lead {lead.merged_into} and cannot be restored; work on "
            f"lead {lead.merged_into} instead",
        )
    if lead.locked and not (actor.is_admin or actor.service):
        raise Rejected(
            "invalid_state",
            f"lead {lead.lead_id} is {lead.status} and locked; only an administrator can restore it",
        )
    if not pipeline.deleted:
        changed = _next(lead, now, deleted=False, deleted_at=None)
        return Outcome(
            changed, [LeadRestored(lead.lead_id, changed.version), LeadUpdated(changed, _diff(lead, changed))]
        )
    stage = _stage_of_status(default, lead.status)
    entering = _entering(lead, default.pipeline_id, stage, now, actor.user_id)
    changed = _next(lead, now, deleted=False, deleted_at=None, **entering)
    return Outcome(
        changed,
        [LeadRestored(lead.lead_id, changed.version), _stage_changed(lead, changed), LeadUpdated(changed, _diff(lead, changed))],
    )


def _stage_of_status(pipeline: Pipeline, status: str) -> Stage:
    """The stage a lead of this status enters: the final one of a closed lead, else the first of its status."""
    if status in FINAL_STATUSES:
        return pipeline.final_stage(status)
    return next((stage for stage in pipeline.stages if stage.status == status), pipeline.first_stage())


# --- leads: refreshed from other services ---------------------------------------------------
# These follow facts other services own, so they apply to locked and deleted leads too.


def apply_activity_summary(lead: Lead, summary: ActivitySummaryView, now: datetime) -> Outcome:
    return _refresh(lead, now, activity=_coerce(ActivitySummaryView, summary))


def apply_contact(lead: Lead, contact: ContactRef, now: datetime | None = None) -> Outcome:
    """Refresh the snapshot of a linked contact; `now` stamps `updated_at` (kept when absent)."""
    contact = _coerce(ContactRef, contact)
    if lead.contact is None or contact.contact_id is None or lead.contact.contact_id != contact.contact_id:
        return Outcome(lead, [])
    return _refresh(lead, now, contact=contact)


def apply_company(lead: Lead, company: CompanyRef, now: datetime | None = None) -> Outcome:
    """Refresh the snapshot of a linked company; `now` stamps `updated_at` (kept when absent)."""
    company = _coerce(CompanyRef, company)
    if lead.company is None or company.company_id is None or lead.company.company_id != company.company_id:
        return Outcome(lead, [])
    return _refresh(lead, now, company=company)


def apply_product(
    lead: Lead,
    product_id: str,
    name: str | None,
    kind: str | None,
    options: Iterable[str] | None,
    now: datetime | None = None,
) -> Outcome:
    """Refresh the snapshot of a catalog product on every line of it.

    `options` are the option names the product offers now; chosen options it no longer offers are
    dropped, and all are kept when the catalog does not say.
    """
    offered = None if options is None else set(options)
    products = [
        line.model_copy(
            update={
                "name": name,
                "kind": _text(kind) or None,
                "options": line.options
                if offered is None
                else {key: value for key, value in line.options.items() if key in offered},
            }
        )
        if line.product_id == product_id
        else line
        for line in lead.products
    ]
    return _refresh(lead, now, products=[ProductLine.model_validate(line.model_dump()) for line in products])


def record_duplicates(lead: Lead, matches: Iterable[DuplicateMatch], now: datetime) -> Outcome:
    """Record the leads that look like this one, replacing what an earlier search found."""
    found = _other_leads(lead, matches)
    outcome = _refresh(lead, now, duplicates=found)
    if outcome.changed:
        outcome.events.insert(0, DuplicatesFound(lead.lead_id, tuple(found), outcome.lead.version))
    return outcome


def duplicates_at_creation(lead: Lead, matches: Iterable[DuplicateMatch]) -> Outcome:
    """Duplicates found as the lead is created are part of its creation.

    The lead is created with them, at the same version: one ``LeadCreated`` with the card as
    stored, then the ``DuplicatesFound`` notice. (``record_duplicates`` is for a lead that exists.)
    """
    found = _other_leads(lead, matches)
    if not found:
        return Outcome(lead, [])
    created = lead.model_copy(update={"duplicates": found})
    return Outcome(created, [LeadCreated(created), DuplicatesFound(lead.lead_id, tuple(found), created.version)])


def _other_leads(lead: Lead, matches: Iterable[DuplicateMatch]) -> list[DuplicateMatch]:
    return [match for match in (_coerce(DuplicateMatch, item) for item in matches) if match.lead_id != lead.lead_id]


def _refresh(lead: Lead, now: datetime | None, **updates: Any) -> Outcome:
    if now is not None:
        _check_now(now)
    updates = {key: value for key, value in updates.items() if getattr(lead, key) != value}
    if not updates:
        return Outcome(lead, [])
    changed = _next(lead, now or lead.updated_at, **updates)
    # What differs is exactly what was updated (a copy shares every other field): no need to compare
    # the two whole cards as _diff does.
    changed_fields = tuple(name for name in Lead.model_fields if name in updates and name not in _BOOKKEEPING)
    return Outcome(changed, [LeadUpdated(changed, changed_fields)])


# --- duplicates -----------------------------------------------------------------------------


def mark_duplicate(actor: Actor, lead: Lead, original: Lead, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    _require_live(lead)
    _require_unlocked(lead)
    if original.lead_id == lead.lead_id:
        raise Rejected("validation", "a lead cannot be a duplicate of itself", [("original_lead_id", "is the lead itself")])
    if original.deleted:
        raise Rejected(
            "invalid_state", f"lead {original.lead_id} is deleted; restore it or pick another original lead"
        )
    if original.duplicate_of == lead.lead_id:
        raise Rejected(
            "invalid_state",
            f"lead {original.lead_id} is already marked as a duplicate of lead {lead.lead_id}; dismiss that "
            "first",
        )
    if lead.duplicate_of == original.lead_id:
        return Outcome(lead, [])
    changed = _next(lead, now, duplicate_of=original.lead_id)
    return Outcome(changed, [LeadUpdated(changed, _diff(lead, changed))])


def dismiss_duplicate(actor: Actor, lead: Lead, duplicate_lead_id: str, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    _require_live(lead)
    _require_unlocked(lead)
    updates: dict[str, Any] = {
        "duplicates": [match for match in lead.duplicates if match.lead_id != duplicate_lead_id],
        "duplicate_of": None if lead.duplicate_of == duplicate_lead_id else lead.duplicate_of,
    }
    updates = {key: value for key, value in updates.items() if getattr(lead, key) != value}
    if not updates:
        return Outcome(lead, [])
    changed = _next(lead, now, **updates)
    return Outcome(changed, [LeadUpdated(changed, _diff(lead, changed))])


def merge_leads(
    actor: Actor, survivor: Lead, other: Lead, fields: Mapping[str, str], now: datetime
) -> tuple[Outcome, Outcome]:
    """Fold `other` into `survivor`: named fields take the chosen side, others fill only gaps."""
    require_licensed(actor)
    _check_now(now)
    if survivor.lead_id == other.lead_id:
        raise Rejected("validation", "a lead cannot be merged into itself", [("other_lead_id", "is the lead itself")])
    if other.merged_into == survivor.lead_id:
        return Outcome(survivor, []), Outcome(other, [])
    for lead in (survivor, other):
        _require_live(lead)
        _require_unlocked(lead)
    errors = [
        (name, "is not a field of the lead card that can be merged")
        for name in fields
        if name not in CARD_FIELDS
    ] + [(name, 'choose "self" or "other"') for name, side in fields.items() if _text(side) not in ("self", "other")]
    if errors:
        raise Rejected("validation", "the merge names fields or sides it cannot use; see errors", errors)
    updates: dict[str, Any] = {}
    for name in CARD_FIELDS:
        side = _text(fields.get(name))
        if side == "other" or (not side and _is_empty(getattr(survivor, name))):
            updates[name] = getattr(other, name)
    closed = [
        entry if entry.left_at is not None else entry.model_copy(update={"left_at": now})
        for entry in other.status_history
    ]
    updates["status_history"] = [*survivor.status_history, *closed]
    updates["duplicates"] = [match for match in survivor.duplicates if match.lead_id != other.lead_id]
    if survivor.duplicate_of == other.lead_id:
        updates["duplicate_of"] = None
    if any(getattr(survivor, name) != updates[name] for name in CARD_FIELDS if name in updates):
        updates["data_changed_at"] = now
    kept = _next(survivor, now, **updates)
    kept_events: list = [LeadMerged(survivor.lead_id, other.lead_id, kept.version)]
    if kept.responsible_id != survivor.responsible_id and kept.responsible_id:
        kept_events.append(
            LeadAssigned(survivor.lead_id, kept.responsible_id, survivor.responsible_id, kept.version)
        )
    kept_events.append(LeadUpdated(kept, _diff(survivor, kept)))
    gone = _next(other, now, merged_into=survivor.lead_id, deleted=True, deleted_at=now)
    gone_events = [LeadDeleted(other.lead_id, gone.version), LeadUpdated(gone, _diff(other, gone))]
    return Outcome(kept, kept_events), Outcome(gone, gone_events)


# --- read side ------------------------------------------------------------------------------


def days_in_status(lead: Lead, now: datetime) -> int:
    return max(0, (now - lead.status_since).days)


def last_activity(lead: Lead, now: datetime) -> dict[str, Any]:
    """The card's "last activity": the nearest open task's due time, else the last data change."""
    summary = lead.activity
    if summary is None or summary.next_due_at is None:
        return {"at": lead.data_changed_at, "days_left": None, "state": None, "task_id": None}
    left = summary.next_due_at - now
    # Computed from `now`: the stored state is as old as the last summary the activity service sent.
    if left < timedelta(0):
        state = "overdue"
    elif left < DUE_SOON_WITHIN:
        state = "due_soon"
    else:
        state = "on_time"
    return {"at": summary.next_due_at, "days_left": left.days, "state": state, "task_id": summary.next_task_id}


# --- helpers --------------------------------------------------------------------------------


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware UTC datetime")


def _text(value: Any) -> str:
    # Contract enums are str enums; the rules compare plain strings.
    value = getattr(value, "value", value)
    return "" if value is None else str(value).strip()


def _as_mapping(spec: Any) -> Mapping[str, Any]:
    return spec.model_dump() if isinstance(spec, BaseModel) else spec


def _plain(value: Any) -> Any:
    # Handlers may pass contract models; the domain's own models only accept their own kind.
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _coerce(model: type[_Model], value: Any) -> Any:
    if value is None or isinstance(value, model):
        return value
    return model.model_validate(_plain(value))


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _leads(count: int) -> str:
    return f"{count} lead" if count == 1 else f"{count} leads"


def _next(lead: Lead, now: datetime, **updates: Any) -> Lead:
    return lead.model_copy(update={**updates, "version": lead.version + 1, "updated_at": now})


def _diff(before: Lead, after: Lead) -> tuple[str, ...]:
    return tuple(
        name
        for name in Lead.model_fields
        if name not in _BOOKKEEPING and getattr(before, name) != getattr(after, name)
    )


def _require_live(lead: Lead) -> None:
    if lead.deleted:
        raise Rejected("invalid_state", f"lead {lead.lead_id} is deleted; restore it first with crm.lead.restore")


def _require_unlocked(lead: Lead) -> None:
    if lead.locked:
        raise Rejected(
            "invalid_state",
            f"lead {lead.lead_id} is {lead.status}, and qualified and unqualified leads are locked; an "
            "administrator must reopen it first with crm.lead.reopen",
        )


def _require_its_pipeline(lead: Lead, pipeline: Pipeline) -> None:
    if pipeline.pipeline_id != lead.pipeline_id:
        # The caller loaded the wrong pipeline: a bug, not a user's mistake.
        raise ValueError(f"pipeline {pipeline.pipeline_id} is not the pipeline of lead {lead.lead_id}")


def _require_may_move(actor: Actor, pipeline: Pipeline) -> None:
    if pipeline.transition_mode == "process" and not actor.service:
        raise Rejected(
            "forbidden",
            f"pipeline {pipeline.pipeline_id} is run by a process: only the services move its leads, "
            "users cannot",
        )


def _non_final_stage(pipeline: Pipeline, stage_id: str, action: str) -> Stage:
    stage = pipeline.stage(stage_id)
    if stage is None:
        raise Rejected(
            "invalid_transition",
            f"stage {stage_id} is not in pipeline {pipeline.pipeline_id}; name one of its stages: "
            + ", ".join(s.stage_id for s in pipeline.stages if s.status not in FINAL_STATUSES),
        )
    if stage.status in FINAL_STATUSES:
        raise Rejected(
            "invalid_transition",
            f"cannot {action} in the final stage {stage.stage_id}; name an earlier stage and use "
            "crm.lead.qualify / crm.lead.disqualify to close a lead",
        )
    return stage


def _entry(pipeline_id: str, stage: Stage, now: datetime, actor_id: str | None) -> StatusHistoryEntry:
    return StatusHistoryEntry(
        pipeline_id=pipeline_id, stage_id=stage.stage_id, status=stage.status, entered_at=now, actor_id=actor_id
    )


def _entering(lead: Lead, pipeline_id: str, stage: Stage, now: datetime, actor_id: str | None) -> dict[str, Any]:
    history = [
        entry if entry.left_at is not None else entry.model_copy(update={"left_at": now})
        for entry in lead.status_history
    ]
    return {
        "pipeline_id": pipeline_id,
        "stage_id": stage.stage_id,
        "status": stage.status,
        "status_since": now,
        "status_history": [*history, _entry(pipeline_id, stage, now, actor_id)],
    }


def _stage_changed(before: Lead, after: Lead) -> StageChanged:
    return StageChanged(
        lead_id=after.lead_id,
        pipeline_id=after.pipeline_id,
        from_stage_id=before.stage_id,
        to_stage_id=after.stage_id,
        from_status=before.status,
        to_status=after.status,
        version=after.version,
        from_pipeline_id=before.pipeline_id if before.pipeline_id != after.pipeline_id else None,
    )


def _transition(
    lead: Lead, pipeline_id: str, stage: Stage, now: datetime, actor_id: str | None, **updates: Any
) -> Outcome:
    # A stage move is not a change of the lead's own data, so data_changed_at stays.
    changed = _next(lead, now, **_entering(lead, pipeline_id, stage, now, actor_id), **updates)
    return Outcome(changed, [_stage_changed(lead, changed), LeadUpdated(changed, _diff(lead, changed))])
