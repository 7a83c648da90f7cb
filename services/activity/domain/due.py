"""Due-time rules: a task's state against the clock, the lead's summary, due notices and the day plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from services.activity.domain.model import DUE_SOON_WITHIN, ActivityState, Notice, Summary, Task


def activity_state(due_at: datetime, now: datetime) -> ActivityState:
    left = due_at - now
    if left < timedelta(0):
        return "overdue"
    if left < DUE_SOON_WITHIN:
        return "due_soon"
    return "on_time"


def summarize(lead_id: str, open_tasks: Iterable[Task], now: datetime) -> Summary:
    """Nearest open task (earliest due, then id), open and overdue counts, and the nearest one's state."""
    return summarize_agenda(lead_id, {t.task_id: t.due_at for t in open_tasks if t.is_open and t.lead_id == lead_id}, now)


def summarize_agenda(lead_id: str, agenda: Mapping[str, datetime], now: datetime) -> Summary:
    """The same from the lead's agenda: the due time of each of its open tasks, by task id."""
    if not agenda:
        return Summary(lead_id, None, None, 0, 0, None)
    due_at, task_id = min((due, tid) for tid, due in agenda.items())
    overdue = sum(1 for due in agenda.values() if activity_state(due, now) == "overdue")
    return Summary(lead_id, due_at, task_id, len(agenda), overdue, activity_state(due_at, now))


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
