"""Rules of CRM tasks as pure functions: tasks, leads and time in, new tasks and events out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator

TaskStatus = Literal["open", "done", "cancelled"]
Priority = Literal["low", "normal", "high"]
Outcome = Literal["done", "no_answer", "close_lead"]
ActivityState = Literal["on_time", "due_soon", "overdue"]
LeadStatus = Literal["new", "in_progress", "qualified", "unqualified"]
ReasonCode = Literal[
    "not_licensed", "forbidden", "not_found", "invalid_state", "invalid_transition", "conflict", "validation"
]

BUILTIN_TYPES: frozenset[str] = frozenset({"call", "email", "meeting", "webinar", "task"})
FINAL_STATUSES = frozenset({"qualified", "unqualified"})
DUE_SOON_WITHIN = timedelta(hours=24)
PRIORITIES: tuple[str, ...] = ("low", "normal", "high")
# Fields crm.task.update may change; anything else about a task changes through its own command.
UPDATABLE_FIELDS: tuple[str, ...] = ("title", "start_at", "due_at", "assignee_id", "priority", "contact_id")


def utc(value: datetime) -> datetime:
    """UTC at millisecond precision: what MongoDB stores, so a task read back equals the one written."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class _Model(BaseModel):
    # Frozen so that no caller changes a task behind the rules' back; changes make new objects.
    model_config = ConfigDict(frozen=True)


class Task(_Model):
    """A CRM task on a lead, with the bookkeeping the rules need (notification flags, deletion marker)."""

    task_id: str
    lead_id: str
    type: str
    title: str
    start_at: AwareDatetime
    due_at: AwareDatetime
    assignee_id: str
    priority: Priority = "normal"
    contact_id: str | None = None
    status: TaskStatus = "open"
    outcome: Outcome | None = None
    comment: str | None = None
    completed_at: AwareDatetime | None = None
    version: int = 1
    created_at: AwareDatetime
    updated_at: AwareDatetime
    created_by: str | None = None
    completed_by: str | None = None
    next_call_at: AwareDatetime | None = None
    # Cancelled because its lead was deleted: reopened when the lead is restored.
    cancelled_with_lead: bool = False
    due_soon_notified: bool = False
    overdue_notified: bool = False

    @field_validator("start_at", "due_at", "completed_at", "created_at", "updated_at", "next_call_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)

    @property
    def is_open(self) -> bool:
        return self.status == "open"


class LeadInfo(_Model):
    """What the activity service knows of a lead, projected from the leads service's events."""

    lead_id: str
    version: int = 0
    pipeline_id: str | None = None
    status: LeadStatus | None = None  # None: only partial events seen, the card itself never arrived
    deleted: bool = False
    title: str | None = None
    data_changed_at: AwareDatetime | None = None

    @property
    def known(self) -> bool:
        return self.status is not None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class Actor(_Model):
    """Who sends a command: a user with or without a CRM licence or the admin role, or a platform service."""

    user_id: str
    licensed: bool
    is_admin: bool = False


class Rejected(Exception):
    """A command that is understood but not allowed; it changes nothing."""

    def __init__(self, code: ReasonCode, message: str, errors: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.errors: list[tuple[str, str]] = list(errors)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskCreated:
    task: Task


@dataclass(frozen=True)
class TaskUpdated:
    task: Task
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskCompleted:
    task: Task


@dataclass(frozen=True)
class TaskCancelled:
    task: Task


@dataclass(frozen=True)
class DisqualifyRequested:
    """Completing a call with `close_lead` asks qualification to disqualify the lead, as the actor."""

    lead_id: str
    reason_id: str
    comment: str | None
    actor_id: str


@dataclass(frozen=True)
class TaskDueSoon:
    task: Task


@dataclass(frozen=True)
class TaskOverdue:
    task: Task


Event = TaskCreated | TaskUpdated | TaskCompleted | TaskCancelled | DisqualifyRequested


@dataclass(frozen=True)
class Change:
    """A rule's result: the task as it is now, what happened, and a task it spawned (the next call)."""

    task: Task
    events: list[Any] = field(default_factory=list)
    follow_up: Task | None = None

    @property
    def changed(self) -> bool:
        return bool(self.events)


@dataclass(frozen=True)
class Summary:
    """The lead's open tasks in brief, as shown on the lead card."""

    lead_id: str
    next_due_at: datetime | None
    next_task_id: str | None
    open_count: int
    overdue_count: int
    state: ActivityState | None


@dataclass(frozen=True)
class Notice:
    """A due-time transition of one task, and the flags that record it was announced."""

    kind: Literal["due_soon", "overdue"]
    due_soon_notified: bool
    overdue_notified: bool


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


def next_call(task: Task, call_id: str) -> Task | None:
    """The call a completed `no_answer` call scheduled, derived only from the completed task (so replays agree)."""
    if task.outcome != "no_answer" or task.next_call_at is None or task.completed_at is None:
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


# --- time -----------------------------------------------------------------------------------


def activity_state(due_at: datetime, now: datetime) -> ActivityState:
    left = due_at - now
    if left < timedelta(0):
        return "overdue"
    if left < DUE_SOON_WITHIN:
        return "due_soon"
    return "on_time"


def summarize(lead_id: str, open_tasks: Iterable[Task], now: datetime) -> Summary:
    """Nearest open task (earliest due, then id), open and overdue counts, and the nearest one's state."""
    tasks = sorted((t for t in open_tasks if t.is_open and t.lead_id == lead_id), key=lambda t: (t.due_at, t.task_id))
    if not tasks:
        return Summary(lead_id, None, None, 0, 0, None)
    nearest = tasks[0]
    overdue = sum(1 for t in tasks if activity_state(t.due_at, now) == "overdue")
    return Summary(lead_id, nearest.due_at, nearest.task_id, len(tasks), overdue, activity_state(nearest.due_at, now))


def due_notice(task: Task, now: datetime) -> Notice | None:
    """The transition a pass at `now` must announce for an open task, once: due soon, then overdue."""
    if not task.is_open:
        return None
    state = activity_state(task.due_at, now)
    if state == "overdue" and not task.overdue_notified:
        # Past due without a due-soon notice (a pass was missed): overdue says it all.
        return Notice("overdue", due_soon_notified=True, overdue_notified=True)
    if state == "due_soon" and not task.due_soon_notified:
        return Notice("due_soon", due_soon_notified=True, overdue_notified=task.overdue_notified)
    return None


def next_notice_at(task: Task) -> datetime | None:
    """When the task's next due-time notice falls due (the moment due_notice starts to return one), if any."""
    if not task.is_open or task.overdue_notified:
        return None
    return task.due_at if task.due_soon_notified else task.due_at - DUE_SOON_WITHIN


def my_day(tasks: Iterable[Task], day_start: datetime, day_end: datetime) -> tuple[list[Task], list[Task]]:
    """An assignee's day: tasks due within the day (not cancelled), and open tasks due before it."""
    today, overdue = [], []
    for task in sorted(tasks, key=lambda t: (t.due_at, t.task_id)):
        if task.is_open and task.due_at < day_start:
            overdue.append(task)
        elif day_start <= task.due_at < day_end and task.status != "cancelled":
            today.append(task)
    return today, overdue
