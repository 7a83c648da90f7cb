"""What the activity HTTP routes' code cannot say by itself, for the OpenAPI document."""

from contracts.activity import TaskView
from crmkit.openapi import CURSOR, LIMIT, Operation, Param

OPERATIONS = {
    ("GET", "/tasks"): Operation(
        query=(
            Param("lead_id", "Only the tasks of this lead."),
            Param("assignee_id", "Only this user's tasks (another user's: administrators only)."),
            Param("status", "Only tasks with this status.", enum=("open", "done", "cancelled")),
            Param("due_before", "Only tasks due before this RFC 3339 time with offset."),
            LIMIT,
            CURSOR,
        ),
        ok="Tasks, soonest due first, each with its `state` against the clock while open; `next_cursor` asks for the next page.", errors=("400",), model=TaskView, page=True),
    ("GET", "/tasks/{task_id}"): Operation(ok="One task with its `state` against the clock while open.", errors=("404",), model=TaskView),
    ("GET", "/my-day"): Operation(
        query=(
            Param("assignee_id", "Whose day (another user's: administrators only); the caller's by default."),
            Param("tz", "IANA time zone of the day, e.g. Europe/Moscow."),
        ),
        ok="The assignee's overdue tasks and today's, in the time zone.", errors=("400",)),
}
