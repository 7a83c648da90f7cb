"""HTTP read side of the activity service: task lists with filters, one task, and an assignee's day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit.access import owner_or_admin
from crmkit.http import ApiError, authenticate, endpoint, json_response, limit_param
from crmkit.mongo import read_time_limit
from crmkit.principals import Principal, PrincipalRepository
from services.activity import domain as d
from services.activity.repository import TaskRepository
from services.activity.settings import ActivitySettings

_STATUSES = ("open", "done", "cancelled")


def task_json(task: d.Task, now: datetime) -> dict:
    """A task as a person sees it: the contract view plus its state against the clock while open."""
    view = task.model_dump(mode="json", exclude={"cancelled_with_lead", "due_soon_notified", "overdue_notified", "next_call_at"})
    view["state"] = d.activity_state(task.due_at, now) if task.is_open else None
    return view


def _time(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise ApiError(400, "validation", f"{name} must be an RFC 3339 time with offset, e.g. 2025-03-15T12:00:00+03:00.") from exc
    if value.tzinfo is None:
        raise ApiError(400, "validation", f"{name} needs a UTC offset, e.g. 2025-03-15T12:00:00+03:00.")
    return value


def _assignee(principal: Principal, asked: str | None, what: str, *, all_for_admin: bool = False) -> str | None:
    """Whose tasks a caller reads: their own by default; another user's only as an administrator.

    None (every assignee) for an administrator who named nobody, where ``all_for_admin``.
    """
    if asked and not owner_or_admin(principal, asked):
        raise ApiError(
            403, "forbidden",
            f"Only administrators may read another user's {what}; user {principal.user_id} is not one. "
            f"Leave out assignee_id to read your own.",
        )
    if asked:
        return asked
    return None if all_for_admin and principal.is_admin else principal.user_id


def routes(
    settings: ActivitySettings,
    tasks: TaskRepository,
    principals: PrincipalRepository,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    return ActivityApi(settings, tasks, principals, clock).routes()


class ActivityApi:
    """The task read endpoints over the task store, each read bounded by the service's time limit."""

    def __init__(self, settings: ActivitySettings, tasks: TaskRepository, principals: PrincipalRepository,
                 clock: Callable[[], datetime]) -> None:
        self.settings, self.tasks, self.principals, self.clock = settings, tasks, principals, clock

    def routes(self) -> list[Route]:
        return [
            Route("/tasks", endpoint(self.list_tasks)),
            Route("/tasks/{task_id}", endpoint(self.get_task)),
            Route("/my-day", endpoint(self.my_day)),
        ]

    def _bounded(self):
        return read_time_limit(self.settings.read_time_limit_s)

    async def list_tasks(self, request: Request) -> Response:
        principal = await authenticate(request, self.settings.tokens, self.principals)
        q = request.query_params
        assignee_id = _assignee(principal, q.get("assignee_id"), "tasks", all_for_admin=True)
        status = q.get("status")
        if status and status not in _STATUSES:
            raise ApiError(400, "validation", f"status must be one of {', '.join(_STATUSES)}.")
        due_before = _time(q["due_before"], "due_before") if q.get("due_before") else None
        try:
            with self._bounded():
                found, cursor = await self.tasks.search(
                    lead_id=q.get("lead_id"), assignee_id=assignee_id, status=status, due_before=due_before,
                    cursor=q.get("cursor"), limit=limit_param(request, 100, self.settings.page_size_max),
                )
        except ValueError as exc:
            raise ApiError(400, "validation", str(exc)) from exc
        now = self.clock()
        return json_response({"items": [task_json(t, now) for t in found], "next_cursor": cursor})

    async def get_task(self, request: Request) -> Response:
        principal = await authenticate(request, self.settings.tokens, self.principals)
        with self._bounded():
            task = await self.tasks.view(request.path_params["task_id"])
        # Another user's task answers as one that does not exist: a 403 would tell who has which task ids.
        if task is None or not owner_or_admin(principal, task.assignee_id):
            raise ApiError(
                404, "not_found",
                f"Task {request.path_params['task_id']} does not exist, or is assigned to another user "
                f"(only its assignee and administrators may read it).",
            )
        return json_response(task_json(task, self.clock()))

    async def my_day(self, request: Request) -> Response:
        principal = await authenticate(request, self.settings.tokens, self.principals)
        q = request.query_params
        assignee_id = _assignee(principal, q.get("assignee_id"), "day plan")
        try:
            zone = ZoneInfo(q.get("tz") or self.settings.day_timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ApiError(400, "validation", "tz must be an IANA time zone name, e.g. Europe/Moscow.") from exc
        now = self.clock()
        local = now.astimezone(zone)
        day_start = datetime(local.year, local.month, local.day, tzinfo=zone)
        day_end = day_start + timedelta(days=1)
        most = self.settings.page_size_max
        with self._bounded():
            overdue, _ = await self.tasks.search(assignee_id=assignee_id, status="open", due_before=day_start, limit=most)
            today_all, _ = await self.tasks.search(assignee_id=assignee_id, due_from=day_start, due_before=day_end, limit=most)
        today, late = d.my_day([*overdue, *today_all], day_start, day_end)
        return json_response(
            {
                "assignee_id": assignee_id,
                "date": day_start.date().isoformat(),
                "timezone": str(zone),
                "today": [task_json(t, now) for t in today],
                "overdue": [task_json(t, now) for t in late],
            }
        )
