"""The activity domain's model: tasks, leads as this service knows them, actors, what the rules produce."""

from __future__ import annotations

from collections.abc import Iterable
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
    if value.tzinfo is UTC and not value.microsecond % 1000:
        # Already so (a task validated again from its own fields): 0.2 against 2.5 µs a call, six times a task.
        return value
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
