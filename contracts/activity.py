"""Messages of the activity service: CRM tasks and the per-lead activity summary."""

from pydantic import AwareDatetime, Field

from contracts.base import ContractModel, Payload
from contracts.common import ActivityState, CallOutcome, TaskPriority, TaskStatus
from contracts.rejections import CommandRejected

_TYPE_DESCRIPTION = "Task type: `call`, `email`, `meeting`, `webinar`, `task`, or a custom type id."

# --- commands (crm.activity.commands.v1) ---


class CreateTask(Payload):
    """Create a CRM task on a lead."""

    TYPE = "crm.task.create"

    task_id: str | None = Field(None, description="Id for the task; derived from the message id when absent.")
    lead_id: str = Field(description="Lead the task belongs to.")
    type: str = Field(description=_TYPE_DESCRIPTION, min_length=1)
    title: str = Field(description="Title of the task.", min_length=1)
    start_at: AwareDatetime = Field(description="When the task starts.")
    due_at: AwareDatetime = Field(description="When the task is due.")
    assignee_id: str = Field(description="User who does the task.")
    priority: TaskPriority = Field(TaskPriority.normal, description="Priority of the task.")
    contact_id: str | None = Field(None, description="Contact the task is with, if any.")


class UpdateTask(Payload):
    """Change an open task; absent fields stay as they are."""

    TYPE = "crm.task.update"

    task_id: str = Field(description="Task to change.")
    title: str | None = Field(None, description="New title.", min_length=1)
    start_at: AwareDatetime | None = Field(None, description="New start time.")
    due_at: AwareDatetime | None = Field(None, description="New due time.")
    assignee_id: str | None = Field(None, description="New assignee.")
    priority: TaskPriority | None = Field(None, description="New priority.")
    contact_id: str | None = Field(None, description="New contact.")


class CompleteTask(Payload):
    """Complete a task; a call may end without an answer, or close the lead."""

    TYPE = "crm.task.complete"

    task_id: str = Field(description="Task to complete.")
    outcome: CallOutcome | None = Field(None, description="How it ended; `done` when absent.")
    next_call_at: AwareDatetime | None = Field(
        None, description="For `no_answer`: schedule a new call at this time."
    )
    reason_id: str | None = Field(
        None, description="For `close_lead`: disqualification reason from the lead's pipeline."
    )
    comment: str | None = Field(None, description="Result comment; for `close_lead`, the disqualification comment.")


class CancelTask(Payload):
    """Cancel an open task."""

    TYPE = "crm.task.cancel"

    task_id: str = Field(description="Task to cancel.")
    comment: str | None = Field(None, description="Why it was cancelled.")


class AddTaskType(Payload):
    """Add a custom task type (administrators only)."""

    TYPE = "crm.task.type.add"

    type_id: str = Field(description="Id of the new type, used as a task's `type`.", min_length=1)
    name: str = Field(description="Display name of the type.", min_length=1)


# --- events (crm.activity.events.v1) ---


class TaskView(ContractModel):
    """A CRM task as stored by the activity service."""

    task_id: str = Field(description="Id of the task.")
    lead_id: str = Field(description="Lead the task belongs to.")
    type: str = Field(description=_TYPE_DESCRIPTION)
    title: str = Field(description="Title of the task.")
    start_at: AwareDatetime = Field(description="When the task starts.")
    due_at: AwareDatetime = Field(description="When the task is due.")
    assignee_id: str = Field(description="User who does the task.")
    priority: TaskPriority = Field(description="Priority of the task.")
    contact_id: str | None = Field(None, description="Contact the task is with, if any.")
    status: TaskStatus = Field(description="Lifecycle state of the task.")
    outcome: CallOutcome | None = Field(None, description="How a completed task ended.")
    comment: str | None = Field(None, description="Result or cancellation comment.")
    completed_at: AwareDatetime | None = Field(None, description="When the task was completed or cancelled.")
    version: int = Field(description="Version of the task; grows by one with every change.", ge=0)


class TaskCreated(TaskView, Payload):
    """A task was created."""

    TYPE = "crm.task.created"


class TaskUpdated(TaskView, Payload):
    """An open task changed."""

    TYPE = "crm.task.updated"


class TaskCompleted(TaskView, Payload):
    """A task was completed."""

    TYPE = "crm.task.completed"


class TaskCancelled(TaskView, Payload):
    """A task was cancelled."""

    TYPE = "crm.task.cancelled"


class TaskDueSoon(Payload):
    """An open task is due within 24 hours."""

    TYPE = "crm.task.due-soon"

    task_id: str = Field(description="The task.")
    lead_id: str = Field(description="Lead the task belongs to.")
    due_at: AwareDatetime = Field(description="When the task is due.")
    assignee_id: str = Field(description="User who does the task.")


class TaskOverdue(Payload):
    """An open task passed its due time."""

    TYPE = "crm.task.overdue"

    task_id: str = Field(description="The task.")
    lead_id: str = Field(description="Lead the task belongs to.")
    due_at: AwareDatetime = Field(description="When the task was due.")
    assignee_id: str = Field(description="User who does the task.")


class LeadActivitySummary(Payload):
    """The lead's open tasks in brief; published on every task change of the lead."""

    TYPE = "crm.lead.activity-summary"

    lead_id: str = Field(description="The lead.")
    next_due_at: AwareDatetime | None = Field(None, description="Due time of the nearest open task.")
    next_task_id: str | None = Field(None, description="Id of the nearest open task.")
    open_count: int = Field(description="Number of open tasks.", ge=0)
    overdue_count: int = Field(description="Number of open tasks past their due time.", ge=0)
    state: ActivityState | None = Field(None, description="State of the nearest open task; absent when none is open.")


ACTIVITY_COMMAND_PAYLOADS: tuple[type[Payload], ...] = (
    CreateTask,
    UpdateTask,
    CompleteTask,
    CancelTask,
    AddTaskType,
)

ACTIVITY_EVENT_PAYLOADS: tuple[type[Payload], ...] = (
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskCancelled,
    TaskDueSoon,
    TaskOverdue,
    LeadActivitySummary,
    CommandRejected,
)
