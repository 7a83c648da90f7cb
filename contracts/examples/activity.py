"""Examples of crm.activity.commands.v1 and crm.activity.events.v1."""

from typing import Any

from contracts.examples.base import ADMIN_ID, CONTACT_ID, LEAD_ID, MANAGER_ID, TASK_ID, TIME, command, event

TASK = {
    "task_id": TASK_ID,
    "lead_id": LEAD_ID,
    "type": "call",
    "title": "Call about the quote",
    "start_at": "2025-03-15T11:30:00+03:00",
    "due_at": "2025-03-15T12:00:00+03:00",
    "assignee_id": MANAGER_ID,
    "priority": "high",
    "contact_id": CONTACT_ID,
    "status": "open",
    "version": 1,
}

EXAMPLES: list[dict[str, Any]] = [
    # crm.activity.commands.v1
    command("crm.task.create", {name: value for name, value in TASK.items() if name not in ("status", "version")}),
    command("crm.task.update", {"task_id": TASK_ID, "due_at": "2025-03-15T13:00:00+03:00", "priority": "normal"}),
    command(
        "crm.task.complete",
        {"task_id": TASK_ID, "outcome": "no_answer", "next_call_at": "2025-03-16T11:00:00+03:00", "comment": "Voicemail."},
    ),
    command("crm.task.cancel", {"task_id": TASK_ID, "comment": "Client asked to email instead."}),
    command("crm.task.type.add", {"type_id": "site-visit", "name": "Site visit"}, actorid=ADMIN_ID),
    # crm.activity.events.v1
    event("crm.task.created", "crm/activity", TASK, cause="crm.task.create"),
    event("crm.task.updated", "crm/activity", {**TASK, "priority": "normal", "version": 2}, cause="crm.task.update"),
    event(
        "crm.task.completed",
        "crm/activity",
        {**TASK, "status": "done", "outcome": "no_answer", "comment": "Voicemail.", "completed_at": TIME, "version": 3},
        cause="crm.task.complete",
    ),
    event(
        "crm.task.cancelled",
        "crm/activity",
        {**TASK, "status": "cancelled", "comment": "Client asked to email instead.", "completed_at": TIME, "version": 3},
        cause="crm.task.cancel",
    ),
    event(
        "crm.task.due-soon",
        "crm/activity",
        {"task_id": TASK_ID, "lead_id": LEAD_ID, "due_at": "2025-03-15T12:00:00+03:00", "assignee_id": MANAGER_ID},
    ),
    event(
        "crm.task.overdue",
        "crm/activity",
        {"task_id": TASK_ID, "lead_id": LEAD_ID, "due_at": "2025-03-15T12:00:00+03:00", "assignee_id": MANAGER_ID},
    ),
    event(
        "crm.lead.activity-summary",
        "crm/activity",
        {
            "lead_id": LEAD_ID,
            "next_due_at": "2025-03-15T12:00:00+03:00",
            "next_task_id": TASK_ID,
            "open_count": 1,
            "overdue_count": 0,
            "state": "due_soon",
        },
        cause="crm.task.create",
    ),
]
