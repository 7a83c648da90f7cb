"""Duplicates: found at or after creation, marked, dismissed, merged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any


from services.leads.domain.model import Actor, CARD_FIELDS, DuplicateMatch, Lead, Rejected
from services.leads.domain.events import (
    DuplicatesFound,
    LeadAssigned,
    LeadCreated,
    LeadDeleted,
    LeadMerged,
    LeadUpdated,
    Outcome,
)
from services.leads.domain.rules import (
    require_licensed,
    _check_now,
    _coerce,
    _diff,
    _is_empty,
    _next,
    _require_live,
    _require_unlocked,
    _text,
)
from services.leads.domain.upstream import _refresh


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


def duplicates_found(lead: Lead, matches: Iterable[DuplicateMatch], now: datetime, *, just_created: bool) -> Outcome:
    """Duplicates of a lead: part of its creation when the create was all that happened to it, else a change of their own."""
    if just_created:
        return duplicates_at_creation(lead, matches)
    return record_duplicates(lead, matches, now)


def _other_leads(lead: Lead, matches: Iterable[DuplicateMatch]) -> list[DuplicateMatch]:
    return [match for match in (_coerce(DuplicateMatch, item) for item in matches) if match.lead_id != lead.lead_id]


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
    return Outcome(kept, kept_events), merged_away(other, survivor.lead_id, now)


def merged_away(other: Lead, survivor_id: str, now: datetime) -> Outcome:
    """The other side of a merge: ``other`` deleted as merged into ``survivor_id``."""
    gone = _next(other, now, merged_into=survivor_id, deleted=True, deleted_at=now)
    return Outcome(gone, [LeadDeleted(other.lead_id, gone.version), LeadUpdated(gone, _diff(other, gone))])


def before_merge(other: Lead) -> Lead:
    """``other`` as it stood before a merge stored it as merged away: only the merge's marks differ."""
    return other.model_copy(update={"merged_into": None, "deleted": False, "deleted_at": None})
