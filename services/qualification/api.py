"""HTTP read side of the qualification service: deals and the disqualification reasons of a pipeline."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit.http import ApiError, authenticate, endpoint, json_response, limit_param
from crmkit.mongo import read_time_limit
from crmkit.principals import PrincipalRepository
from services.qualification.repository import DealRepository, PipelineProjection, ReasonRepository
from services.qualification.settings import QualificationSettings


def routes(
    settings: QualificationSettings,
    deals: DealRepository,
    pipelines: PipelineProjection,
    reasons: ReasonRepository,
    principals: PrincipalRepository,
) -> list[Route]:
    async def auth(request: Request) -> None:
        await authenticate(request, settings.tokens, principals)

    @endpoint
    async def get_deal(request: Request) -> Response:
        await auth(request)
        with read_time_limit(settings.read_time_limit_s):
            deal = await deals.get(request.path_params["deal_id"])
        if deal is None:
            raise ApiError(404, "not_found", f"Deal {request.path_params['deal_id']} does not exist.")
        return json_response(deal.model_dump(mode="json"))

    @endpoint
    async def list_deals(request: Request) -> Response:
        await auth(request)
        limit = limit_param(request, 50, settings.page_size_max)
        try:
            with read_time_limit(settings.read_time_limit_s):
                found, cursor = await deals.list(
                    lead_id=request.query_params.get("lead_id"), cursor=request.query_params.get("cursor"), limit=limit
                )
        except ValueError as exc:
            raise ApiError(400, "validation", str(exc)) from exc
        return json_response({"items": [deal.model_dump(mode="json") for deal in found], "next_cursor": cursor})

    @endpoint
    async def pipeline_reasons(request: Request) -> Response:
        await auth(request)
        pipeline_id = request.path_params["pipeline_id"]
        if await pipelines.exists(pipeline_id):
            found = (await reasons.get(pipeline_id)).reasons
        else:
            found = await reasons.peek(pipeline_id)
        if found is None:
            raise ApiError(404, "not_found", f"Pipeline {pipeline_id} does not exist.")
        return json_response({"pipeline_id": pipeline_id, "items": [r.model_dump(mode="json") for r in found]})

    return [
        Route("/deals/{deal_id}", get_deal),
        Route("/deals", list_deals),
        Route("/pipelines/{pipeline_id}/disqualification-reasons", pipeline_reasons),
    ]
