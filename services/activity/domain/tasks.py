"""The rules of CRM tasks: who may act, creating, changing, completing and cancelling, and the lead's fate."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from services.activity.domain.model import (
    BUILTIN_TYPES, UPDATABLE_FIELDS, Actor, Change, DisqualifyRequested, LeadInfo, Outcome, Rejected, Task,
    TaskCancelled, TaskCompleted, TaskCreated, TaskUpdated, utc,
)


# --- access and leads -----------------------------------------------------------------------


def require_licensed(actor: Actor) -> None:
    if not actor.licensed:
        raise Rejected(
            "not_licensed",
            f"user {actor.user_id} holds no CRM licence; ask an administrator to grant one, then send the command again",
        )


def require_admin(actor: Actor, action: str) -> None:
    require_licensed(actor)
    if not actor.is_admin:
        raise Rejected("forbidden", f"only administrators may {action}; user {actor.user_id} is not one")


def require_assignee_or_admin(actor: Actor, task: Task, action: str) -> None:
    """A task belongs to its assignee: only they, or an administrator, read it or act on it."""
    require_licensed(actor)
    if not actor.is_admin and actor.user_id != task.assignee_id:
        raise Rejected(
            "forbidden",
            f"task {task.task_id} is assigned to another user; only its assignee or an administrator may {action} it",
        )


def require_workable_lead(lead: LeadInfo | None, lead_id: str) -> LeadInfo:
    """A lead tasks may be planned on: known, not deleted, not qualified or unqualified."""
    if lead is None or not lead.known:
        raise Rejected(
            "not_found",
            f"lead {lead_id} is unknown to the activity service; create it with crm.lead.create first "
            "(or wait for its crm.lead.created to arrive)",
            [("lead_id", "unknown lead")],
        )
    if lead.deleted:
        raise Rejected("invalid_state", f"lead {lead_id} is deleted; restore it with crm.lead.restore first")
    if lead.final:
        raise Rejected(
            "invalid_state",
            f"lead {lead_id} is {lead.status} and closed for new work; an administrator must reopen it first",
        )
    return lead


def _require_open(task: Task, action: str) -> None:
    if task.status == "cancelled":
        raise Rejected("invalid_state", f"task {task.task_id} is cancelled and cannot be {action}")
    if task.status == "done":
        raise Rejected("invalid_state", f"task {task.task_id} is already done and cannot be {action}")


def _require_known_type(type_id: str, custom_types: Mapping[str, str]) -> None:
    if type_id not in BUILTIN_TYPES and type_id not in custom_types:
        known = sorted(BUILTIN_TYPES | set(custom_types))
        raise Rejected(
            "validation",
            f"task type {type_id!r} is unknown; use one of {', '.join(known)} or ask an administrator to add it",
            [("type", f"unknown type; known: {', '.join(known)}")],
        )


def _require_due_after_start(start_at: datetime, due_at: datetime) -> None:
    if due_at < start_at:
        raise Rejected(
            "validation",
            f"the task is due ({due_at.isoformat()}) before it starts ({start_at.isoformat()})",
            [("due_at", "must not be before start_at")],
        )


def _next(task: Task, now: datetime, **updates: Any) -> Task:
    return task.model_copy(update={**updates, "version": task.version + 1, "updated_at": utc(now)})


# --- task commands --------------------------------------------------------------------------


def create_task(
    actor: Actor,
    lead: LeadInfo | None,
    task_id: str,
    fields: Mapping[str, Any],
    custom_types: Mapping[str, str],
    now: datetime,
    existing: Task | None = None,
) -> Change:
    """A new open task on a workable lead; its type known and its due time not before its start."""
    require_licensed(actor)
    if existing is not None:
        raise Rejected("conflict", f"task {task_id} already exists; send crm.task.update to change it")
    require_workable_lead(lead, fields["lead_id"])
    _require_known_type(fields["type"], custom_types)
    start_at, due_at = utc(fields["start_at"]), utc(fields["due_at"])
    _require_due_after_start(start_at, due_at)
    now = utc(now)
    task = Task(
        task_id=task_id,
        lead_id=fields["lead_id"],
        type=fields["type"],
        title=fields["title"],
        start_at=start_at,
        due_at=due_at,
        assignee_id=fields["assignee_id"],
        priority=fields.get("priority") or "normal",
        contact_id=fields.get("contact_id"),
        created_at=now,
        updated_at=now,
        created_by=actor.user_id,
    )
    return Change(task, [TaskCreated(task)])


def update_task(actor: Actor, task: Task, lead: LeadInfo | None, changes: Mapping[str, Any], now: datetime) -> Change:
    """Reschedule, reassign, retitle or reprioritise an open task; nothing given, nothing changes."""
    require_assignee_or_admin(actor, task, "change")
    _require_open(task, "changed")
    require_workable_lead(lead, task.lead_id)
    updates = {k: (utc(v) if isinstance(v, datetime) else v) for k, v in changes.items() if k in UPDATABLE_FIELDS and v is not None}
    updates = {k: v for k, v in updates.items() if getattr(task, k) != v}
    if not updates:
        return Change(task)
    _require_due_after_start(updates.get("start_at", task.start_at), updates.get("due_at", task.due_at))
    if "due_at" in updates:
        # A new due time is a new deadline: its due-soon and overdue moments are announced afresh.
        updates.update(due_soon_notified=False, overdue_notified=False)
    changed = _next(task, now, **updates)
    return Change(changed, [TaskUpdated(changed, tuple(k for k in UPDATABLE_FIELDS if k in updates))])


def next_call_id(task_id: str) -> str:
    """Seed of the id of the call a `no_answer` schedules; the handler turns it into a uuid5."""
    return f"{task_id}\x1fnext-call"


def schedules_call(task: Task) -> bool:
    """Whether the task is a `no_answer` call that scheduled the next one (see next_call)."""
    return task.outcome == "no_answer" and task.next_call_at is not None and task.completed_at is not None


def next_call(task: Task, call_id: str) -> Task | None:
    """The call a completed `no_answer` call scheduled, derived only from the completed task (so replays agree)."""
    if not schedules_call(task):
        return None
    length = task.due_at - task.start_at
    return Task(
        task_id=call_id,
        lead_id=task.lead_id,
        type="call",
        title=task.title,
        start_at=task.next_call_at,
        due_at=task.next_call_at + length,
        assignee_id=task.assignee_id,
        priority=task.priority,
        contact_id=task.contact_id,
        created_at=task.completed_at,
        updated_at=task.completed_at,
        created_by=task.completed_by,
    )


def complete_task(
    actor: Actor,
    task: Task,
    lead: LeadInfo | None,
    *,
    outcome: Outcome | None,
    comment: str | None,
    next_call_at: datetime | None,
    reason_id: str | None,
    call_id: str,
    now: datetime,
) -> Change:
    """Complete an open task: done; a call without answer (maybe with the next call); or close the lead."""
    require_assignee_or_admin(actor, task, "complete")
    _require_open(task, "completed")
    outcome = outcome or "done"
    if next_call_at is not None and outcome != "no_answer":
        raise Rejected(
            "validation", "next_call_at goes only with the no_answer outcome", [("next_call_at", "only for no_answer")]
        )
    if outcome == "no_answer" and task.type != "call":
        raise Rejected(
            "validation", f"task {task.task_id} is a {task.type}, not a call; only calls end with no_answer",
            [("outcome", "no_answer is for calls")],
        )
    if outcome == "close_lead" and not reason_id:
        raise Rejected(
            "validation", "closing the lead needs a disqualification reason from the lead's pipeline",
            [("reason_id", "required for close_lead")],
        )
    if outcome == "close_lead" or next_call_at is not None:
        require_workable_lead(lead, task.lead_id)
    now = utc(now)
    done = _next(
        task, now, status="done", outcome=outcome, comment=comment, completed_at=now, completed_by=actor.user_id,
        next_call_at=utc(next_call_at) if next_call_at is not None else None,
    )
    events: list[Any] = [TaskCompleted(done)]
    follow_up = next_call(done, call_id)
    if follow_up is not None:
        events.append(TaskCreated(follow_up))
    if outcome == "close_lead":
        assert reason_id is not None
        events.append(DisqualifyRequested(task.lead_id, reason_id, comment, actor.user_id))
    return Change(done, events, follow_up)


def cancel_task(actor: Actor, task: Task, comment: str | None, now: datetime) -> Change:
    require_assignee_or_admin(actor, task, "cancel")
    _require_open(task, "cancelled")
    cancelled = _next(task, now, status="cancelled", comment=comment, completed_at=utc(now), completed_by=actor.user_id)
    return Change(cancelled, [TaskCancelled(cancelled)])


def add_task_type(actor: Actor, type_id: str, name: str, custom_types: Mapping[str, str]) -> tuple[str, str]:
    """A custom task type administrators add; built-in and existing ids are taken."""
    require_admin(actor, "add task types")
    if type_id in BUILTIN_TYPES or type_id in custom_types:
        raise Rejected("conflict", f"task type {type_id!r} already exists", [("type_id", "already exists")])
    return type_id, name


# --- reactions to the lead's fate -----------------------------------------------------------


def complete_with_lead_disqualified(task: Task, reason: str, comment: str | None, now: datetime) -> Change:
    """The lead was disqualified: its open task is completed, the reason as the outcome note."""
    if not task.is_open:
        return Change(task)
    note = f"Lead disqualified: {reason}" + (f" ({comment})" if comment else "")
    done = _next(task, now, status="done", outcome="done", comment=note, completed_at=utc(now))
    return Change(done, [TaskCompleted(done)])


def cancel_with_lead_deleted(task: Task, now: datetime) -> Change:
    """The lead was deleted: its open task is cancelled and marked to come back with the lead."""
    if not task.is_open:
        return Change(task)
    cancelled = _next(
        task, now, status="cancelled", comment="Lead deleted.", completed_at=utc(now), cancelled_with_lead=True
    )
    return Change(cancelled, [TaskCancelled(cancelled)])


def reopen_with_lead_restored(task: Task, now: datetime) -> Change:
    """The lead was restored: a task cancelled with it is open again, as it was."""
    if task.status != "cancelled" or not task.cancelled_with_lead:
        return Change(task)
    reopened = _next(
        task, now, status="open", comment=None, completed_at=None, completed_by=None, cancelled_with_lead=False
    )
    return Change(reopened, [TaskUpdated(reopened, ("status",))])


def lead_reaction(lead: LeadInfo) -> Literal["cancel_open", "reopen_cancelled"]:
    """What a lead's current state asks of its tasks: a deleted lead has none open, a live one gets its back."""
    return "cancel_open" if lead.deleted else "reopen_cancelled"
