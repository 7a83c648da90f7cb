"""A lead's lifecycle: creation and card data, updates, responsibility, stages, deletion and restore."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.leads.domain.model import (
    Actor,
    CARD_FIELDS,
    FINAL_STATUSES,
    Lead,
    Pipeline,
    Rejected,
    Stage,
    _COMMAND_KEYS,
    _MOVED_ELSEWHERE,
)
from services.leads.domain.events import (
    LeadAssigned,
    LeadCreated,
    LeadDeleted,
    LeadRestored,
    LeadUpdated,
    Outcome,
)
from services.leads.domain.card import _card_data, card_values
from services.leads.domain.rules import (
    require_admin,
    require_licensed,
    _check_now,
    _diff,
    _entering,
    _entry_values,
    _next,
    _non_final_stage,
    _require_its_pipeline,
    _require_live,
    _require_may_move,
    _require_unlocked,
    _stage_changed,
    _text,
    _transition,
)


# --- leads: creation and updates ----------------------------------------------------------

def create_lead(actor: Actor, lead_id: str, data: Mapping[str, Any], pipeline: Pipeline, now: datetime) -> Outcome:
    require_licensed(actor)
    _check_now(now)
    if pipeline.deleted:
        raise Rejected("not_found", f"pipeline {pipeline.pipeline_id} was deleted; create the lead in another pipeline")
    if not (lead_id or "").strip():
        raise Rejected("validation", "a lead needs an id", [("lead_id", "must not be blank")])
    # Other keys (lead_id, pipeline_id, import_row, ...) belong to the command, not the card.
    values = {key: value for key, value in data.items() if value is not None}
    card = card_values({key: values[key] for key in CARD_FIELDS if key in values})
    try:
        stage_id = _text(values.get("stage_id"))
        stage = _non_final_stage(pipeline, stage_id, "create a lead") if stage_id else pipeline.first_stage()
        # The card's fields are validated once, by the lead: 13 against 19 µs a create when the card
        # data was validated first on its own (pydantic 2.14). That is done only to word a refusal.
        lead = Lead.model_validate({
            **card,
            "lead_id": lead_id,
            "pipeline_id": pipeline.pipeline_id,
            "stage_id": stage.stage_id,
            "status": stage.status,
            "version": 1,
            "responsible_id": card.get("responsible_id") or actor.user_id,
            "created_by": actor.user_id,
            "import_id": values.get("import_id"),
            "created_at": now,
            "updated_at": now,
            "data_changed_at": now,
            "status_since": now,
            "status_history": [_entry_values(pipeline.pipeline_id, stage, now, actor.user_id)],
        })
    except (Rejected, ValidationError):
        _card_data(card)  # a card that is not valid is refused first, every bad field named at once
        raise
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
