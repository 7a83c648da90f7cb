"""Mass actions: what a bulk request may ask, the per-lead command each lead gets, how the job's leads ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.leads.domain.model import Rejected

# The per-lead command each action expands into, and the request fields it needs.
ACTION_COMMANDS = {
    "move": "crm.lead.move",
    "assign": "crm.lead.assign",
    "change_pipeline": "crm.lead.change-pipeline",
    "delete": "crm.lead.delete",
    "restore": "crm.lead.restore",
}
_REQUIRED = {"move": ("stage_id",), "assign": ("responsible_id",), "change_pipeline": ("pipeline_id",)}
_PARAMS = {
    "move": ("stage_id",), "assign": ("responsible_id",), "change_pipeline": ("pipeline_id", "stage_id"),
    "delete": (), "restore": (),
}

# How a lead of a job answered: changed, already as asked, refused by its own rules, or left alone (cancelled).
APPLIED, UNCHANGED, REFUSED, CANCELLED = "applied", "unchanged", "refused", "cancelled"
FINAL_STATES = (APPLIED, UNCHANGED, REFUSED, CANCELLED)


@dataclass(frozen=True)
class BulkRequest:
    """A checked mass action: which leads (ids, or a filter to expand), what to do, and its parameters."""

    bulk_id: str
    action: str
    lead_ids: tuple[str, ...] | None
    filter: Mapping[str, Any] | None
    params: Mapping[str, str]
    requested_by: str


def check_request(bulk_id: str, data: Mapping[str, Any], requested_by: str) -> BulkRequest:
    """The request, or `validation` naming each field that is missing or does not fit the action."""
    action = data["action"]
    errors: list[tuple[str, str]] = []
    ids, found_filter = data.get("lead_ids"), data.get("filter")
    if (ids is None) == (found_filter is None):
        errors.append(("lead_ids", "give either lead_ids or filter, not both or neither"))
    elif ids is not None and not ids:
        errors.append(("lead_ids", "an empty list: name at least one lead"))
    errors += [(name, f"required for {action}") for name in _REQUIRED.get(action, ()) if not data.get(name)]
    errors += [(name, f"not used by {action}") for name in ("stage_id", "pipeline_id", "responsible_id")
               if data.get(name) and name not in _PARAMS[action]]
    if errors:
        raise Rejected("validation", "; ".join(f"{f}: {m}" for f, m in errors), errors)
    params = {name: data[name] for name in _PARAMS[action] if data.get(name)}
    unique = tuple(dict.fromkeys(ids)) if ids is not None else None  # a lead named twice is changed once
    return BulkRequest(bulk_id, action, unique, found_filter, params, requested_by)


def lead_command(request_action: str, params: Mapping[str, str], lead_id: str) -> tuple[str, dict[str, Any]]:
    """The message type and payload one lead gets: the same command a caller would send for it alone."""
    return ACTION_COMMANDS[request_action], {"lead_id": lead_id, **params}


def outcome_of(event_types: list[str]) -> str:
    """How a lead answered its command, from the events it caused: refused, changed, or nothing to do."""
    if "crm.command.rejected" in event_types:
        return REFUSED
    return APPLIED if event_types else UNCHANGED


def check_cancel(state: str | None, bulk_id: str, requested_by: str | None, actor_id: str, actor_is_admin: bool) -> None:
    """A running job may be cancelled by the user it acts for, or by an administrator."""
    if state is None:
        raise Rejected("not_found", f"no mass action {bulk_id}", [("bulk_id", "no such job")])
    if not actor_is_admin and actor_id != requested_by:
        raise Rejected("forbidden", f"mass action {bulk_id} belongs to {requested_by}; only they or an administrator may cancel it")
    if state != "running":
        raise Rejected("invalid_state", f"mass action {bulk_id} is {state} already; only a running one can be cancelled")


def job_state(cancel_requested: bool, open_items: int) -> str:
    """`running` while any lead is still to answer, then `cancelled` or `completed`."""
    if open_items:
        return "running"
    return "cancelled" if cancel_requested else "completed"
