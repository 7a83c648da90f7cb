"""Pipelines: the default one, creating, updating and deleting, and the stage rules they keep."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any


from services.leads.domain.model import (
    Actor,
    DEFAULT_PIPELINE_ID,
    FINAL_STATUSES,
    PROTECTED_STATUSES,
    Pipeline,
    Rejected,
    STATUSES,
    Stage,
    TRANSITION_MODES,
)
from services.leads.domain.actions import build_actions, can_see, visibility_of
from services.leads.domain.events import PipelineCreated, PipelineDeleted, PipelineOutcome, PipelineUpdated
from services.leads.domain.rules import require_admin, _as_mapping, _check_now, _leads, _text


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
    visible_to: Any = None,
    private_hosts: frozenset[str] = frozenset(),
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
        stages=_checked_stages(_build_stages(_DEFAULT_STAGES if stages is None else stages, None, private_hosts)),
        transition_mode=_transition_mode(transition_mode or "manual"),
        visible_to=visibility_of(visible_to),
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
    visible_to: Any = None,
    private_hosts: frozenset[str] = frozenset(),
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
    if visible_to is not None:
        updates["visible_to"] = visibility_of(visible_to)
    if stages is not None:
        if leads_per_stage is None:
            # Without the counts a stage full of leads could vanish; that is a caller bug.
            raise ValueError("leads_per_stage is required when stages change")
        built = _build_stages(stages, pipeline, private_hosts)
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


def _build_stages(specs: Iterable[Any], previous: Pipeline | None, private_hosts: frozenset[str] = frozenset()) -> list[Stage]:
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
        actions, problems = build_actions(item.get("on_enter"), kept, status, index, private_hosts)
        errors += problems
        if not errors:
            stages.append(Stage(stage_id=stage_id, name=name, status=status, position=index, on_enter=actions))
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


def pipeline_for(pipelines: Mapping[str, Pipeline], pipeline_id: str, *, allow_deleted: bool = False) -> Pipeline:
    """The pipeline a lead goes to (a live one), or stands on (``allow_deleted``: a deleted lead's may be gone)."""
    pipeline = pipelines.get(pipeline_id)
    if pipeline is None or (pipeline.deleted and not allow_deleted):
        raise Rejected("not_found", f"Pipeline {pipeline_id} does not exist; GET /pipelines lists them.")
    return pipeline


def require_pipeline(pipeline_id: str, existing: Pipeline | None) -> Pipeline:
    """A pipeline command other than create names a live pipeline."""
    if existing is None or existing.deleted:
        raise Rejected("not_found", f"Pipeline {pipeline_id} does not exist.")
    return existing


def visible_pipeline(pipelines: Mapping[str, Pipeline], pipeline_id: str, actor: Actor) -> Pipeline:
    """The live pipeline a lead goes to; one hidden from ``actor`` is answered as one that does not exist."""
    pipeline = pipeline_for(pipelines, pipeline_id)
    if not can_see(actor, pipeline):
        pipeline_for({}, pipeline_id)  # raises the very refusal a missing pipeline gets
    return pipeline
