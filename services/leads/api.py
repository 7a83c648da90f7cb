"""HTTP read side of the leads service: lead cards, lists with filters, pipelines and boards."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit.http import ApiError, authenticate, endpoint, flag, json_response, limit_param
from crmkit.mongo import read_time_limit
from crmkit.principals import Principal, PrincipalRepository
from services.leads import domain as d
from services.leads.repository import LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings

_STATUSES = {"new", "in_progress", "qualified", "unqualified"}


def card_view(lead: d.Lead, now: datetime) -> dict[str, Any]:
    """The card as a person sees it: stored fields plus days in status and last activity."""
    view = lead.model_dump(mode="json")
    view["locked"] = lead.locked
    view["days_in_status"] = d.days_in_status(lead, now)
    view["last_activity"] = d.last_activity(lead, now)
    return view


def routes(
    settings: LeadsSettings,
    leads: LeadRepository,
    pipelines: PipelineRepository,
    principals: PrincipalRepository,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    def bounded():
        return read_time_limit(settings.read_time_limit_s)

    async def auth(request: Request) -> Principal:
        with bounded():
            return await authenticate(request, settings.tokens, principals)

    async def visible(principal: Principal) -> tuple[dict[str, d.Pipeline], bool]:
        """The pipelines ``principal`` sees (deleted ones too: their deleted leads), and whether some are hidden."""
        with bounded():
            found = await pipelines.all(include_deleted=True)
        shown = {pid: p for pid, p in found.items() if d.can_see(principal, p)}
        return shown, len(shown) < len(found)

    def limit_of(request: Request, default: int = 50) -> int:
        return limit_param(request, default, settings.page_size_max)

    @endpoint
    async def get_lead(request: Request) -> Response:
        principal = await auth(request)
        with bounded():
            lead = await leads.get(request.path_params["lead_id"])
        # A lead in a pipeline hidden from the user is answered as one that does not exist.
        if lead is None or not d.can_see(principal, await pipelines.get(lead.pipeline_id)):
            raise ApiError(404, "not_found", f"Lead {request.path_params['lead_id']} does not exist.")
        return json_response(card_view(lead, clock()))

    @endpoint
    async def list_leads(request: Request) -> Response:
        principal = await auth(request)
        shown, restricted = await visible(principal)
        q = request.query_params
        status = q.get("status")
        if status and status not in _STATUSES:
            raise ApiError(400, "validation", f"status must be one of {sorted(_STATUSES)}.")
        if restricted and q.get("pipeline_id") and q.get("pipeline_id") not in shown:
            return json_response({"items": [], "next_cursor": None})  # as for a pipeline that does not exist
        try:
            with bounded():
                page, cursor = await leads.search(
                    pipeline_id=q.get("pipeline_id"), stage_id=q.get("stage_id"), status=status,
                    responsible_id=q.get("responsible_id"), source=q.get("source"), text=q.get("q"),
                    include_deleted=flag(q.get("include_deleted"), "include_deleted"),
                    cursor=q.get("cursor"), limit=limit_of(request),
                    pipeline_ids=sorted(shown) if restricted else None,
                )
        except ValueError as exc:
            raise ApiError(400, "validation", str(exc)) from exc
        now = clock()
        return json_response({"items": [card_view(lead, now) for lead in page], "next_cursor": cursor})

    @endpoint
    async def list_pipelines(request: Request) -> Response:
        principal = await auth(request)
        with bounded():
            found = await pipelines.all()
        ordered = sorted((p for p in found.values() if d.can_see(principal, p)), key=lambda p: (not p.is_default, p.name))
        return json_response({"items": [d.public_pipeline(p) for p in ordered]})

    @endpoint
    async def board(request: Request) -> Response:
        principal = await auth(request)
        with bounded():
            pipeline = await pipelines.get(request.path_params["pipeline_id"])
        if pipeline is None or pipeline.deleted or not d.can_see(principal, pipeline):
            raise ApiError(404, "not_found", f"Pipeline {request.path_params['pipeline_id']} does not exist.")
        per_stage = limit_of(request, default=20)
        stage_ids = [stage.stage_id for stage in pipeline.stages]
        with bounded():
            counts = await leads.count_by_stage(pipeline.pipeline_id, stage_ids)
            # The columns at once: each is its own index range, so one waits for the database less.
            pages = await asyncio.gather(*(
                leads.search(pipeline_id=pipeline.pipeline_id, stage_id=stage_id, limit=per_stage) for stage_id in stage_ids
            ))
        now = clock()
        columns = []
        for stage, (page, cursor) in zip(pipeline.stages, pages, strict=True):
            columns.append(
                {
                    **stage.model_dump(mode="json", exclude={"on_enter"}),
                    "count": counts.get(stage.stage_id, 0),
                    "leads": [card_view(lead, now) for lead in page],
                    "next_cursor": cursor,
                }
            )
        return json_response({"pipeline": d.public_pipeline(pipeline), "stages": columns})

    return [
        Route("/leads/{lead_id}", get_lead),
        Route("/leads", list_leads),
        Route("/pipelines", list_pipelines),
        Route("/pipelines/{pipeline_id}/board", board),
    ]
