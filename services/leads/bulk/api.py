"""HTTP side of mass actions: start one (`POST /bulk`), list yours (`GET /bulk`), follow it (`GET /bulk/{id}`), cancel it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts import build_message
from contracts.bulk import BulkLeadRefusal, BulkUpdateLeads, CancelBulkUpdate, LeadFilter
from contracts.topics import LEADS_COMMANDS
from crmkit import access
from crmkit.http import ApiError, authenticate, endpoint, json_response, limit_param
from crmkit.ids import uuid5
from crmkit.messaging import Outbound
from crmkit.openapi import CURSOR, LIMIT, Operation, Param
from crmkit.principals import Principal, PrincipalRepository
from services.leads import domain as d
from services.leads.bulk.handlers import bulk_id_of
from services.leads.bulk.repository import Answer, BulkJob, BulkRepository
from services.leads.domain import bulk as rules
from services.leads.messages import ID_NAMESPACE
from services.leads.settings import LeadsSettings

Publish = Callable[[Sequence[Outbound]], Awaitable[None]]


def routes(settings: LeadsSettings, jobs: BulkRepository, principals: PrincipalRepository, publish: Publish, source: str) -> list[Route]:
    return BulkApi(settings, jobs, principals, publish, source).routes()


def _payload_of(body: bytes) -> BulkUpdateLeads:
    try:
        data = json.loads(body or b"{}")
        _refuse_unknown(data)
        return BulkUpdateLeads.model_validate(data)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "validation", f"body: not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ApiError(400, "validation", f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _refuse_unknown(data: object) -> None:
    """A name the request does not know is refused: the contract would ignore it, and a filter without
    the condition a typo dropped takes many more leads than meant."""
    if not isinstance(data, dict):
        return
    for where, given, known in (("", data, BulkUpdateLeads.model_fields), ("filter.", data.get("filter"), LeadFilter.model_fields)):
        unknown = sorted(set(given) - set(known)) if isinstance(given, dict) else []
        if unknown:
            raise ApiError(400, "validation", f"{where}{unknown[0]}: not a field of a mass action{' filter' if where else ''}; "
                                              f"use {', '.join(known)}")


class BulkApi:
    """The mass-action endpoints over the job store; each sends its command on the caller's behalf."""

    def __init__(self, settings: LeadsSettings, jobs: BulkRepository, principals: PrincipalRepository, publish: Publish, source: str) -> None:
        self.settings, self.jobs, self.principals, self.publish, self.source = settings, jobs, principals, publish, source

    def routes(self) -> list[Route]:
        return [
            Route("/bulk", endpoint(self.start_bulk), methods=["POST"]),
            Route("/bulk", endpoint(self.list_bulk), methods=["GET"]),
            Route("/bulk/{bulk_id}", endpoint(self.get_bulk)),
            Route("/bulk/{bulk_id}/refusals", endpoint(self.list_refusals)),
            Route("/bulk/{bulk_id}/cancel", endpoint(self.cancel_bulk), methods=["POST"]),
        ]

    async def start_bulk(self, request: Request) -> Response:
        """Start a mass action (move, assign, change_pipeline, delete, restore) over lead ids or a filter.

        The body is `crm.leads.bulk-update`'s data; the command is sent on your behalf and each lead
        then gets its own command. `Idempotency-Key` makes a retried request start one job."""
        principal = await authenticate(request, self.settings.tokens, self.principals)
        payload = _payload_of(await request.body())
        key = request.headers.get("idempotency-key")
        message_id = uuid5(ID_NAMESPACE, f"bulk-http\x1f{principal.user_id}\x1f{key}") if key else str(uuid.uuid4())
        command = build_message(payload, source=self.source, id=message_id, actorid=principal.user_id)
        bulk_id = bulk_id_of(command)
        try:
            rules.check_request(bulk_id, payload.model_dump(mode="json"), principal.user_id)
        except d.Rejected as exc:
            raise ApiError(400, "validation", exc.message) from None
        refused = access.bounds_refusal(command)
        if refused is not None:
            raise ApiError(400, "validation", refused.message)
        taken = await self.jobs.get(bulk_id)
        if taken is not None and taken.state != "refused" and taken.command_id != command.id:
            raise ApiError(409, "conflict", f"bulk_id: mass action {bulk_id} exists; give another bulk_id, or none.")
        await self.publish([Outbound(LEADS_COMMANDS, command, key=bulk_id)])
        return json_response({"bulk_id": bulk_id, "status_url": f"/bulk/{bulk_id}"}, status=202)

    async def list_bulk(self, request: Request) -> Response:
        """Your mass actions, newest first (an administrator's: everyone's, or one user's with `requested_by`), a page at a time.

        Each item is the job without its refusals (`GET /bulk/{id}` has them); pass `cursor=<next_cursor>` for the next page."""
        principal = await authenticate(request, self.settings.tokens, self.principals)
        limit = limit_param(request, 50, self.settings.page_size_max)
        asked = request.query_params.get("requested_by")
        if asked is not None and (not asked or access.text_error("id", asked)):
            raise ApiError(400, "validation", "requested_by: give a user id, or leave it out for your own mass actions.")
        if asked and not access.owner_or_admin(principal, asked):
            raise ApiError(403, "forbidden", f"requested_by: only administrators list another user's mass actions; "
                                             f"user {principal.user_id} is not one. Leave it out to list your own.")
        whose = asked or (None if principal.is_admin else principal.user_id)
        try:
            found, next_cursor = await self.jobs.list(whose, limit, request.query_params.get("cursor"))
        except ValueError as exc:
            raise ApiError(400, "validation", f"cursor: {exc}") from None
        return json_response({"items": [_listed(job) for job in found], "next_cursor": next_cursor})

    async def get_bulk(self, request: Request) -> Response:
        """A mass action's state, counts per outcome, and the first page of its refused leads (yours, or any for an administrator).

        `refusals_next_cursor`, when given, is the `cursor` of `GET /bulk/{id}/refusals` for the rest."""
        principal = await authenticate(request, self.settings.tokens, self.principals)
        limit = limit_param(request, 50, self.settings.page_size_max)
        job = await self._owned_job(request, principal)
        counts = await self.jobs.counts(job.bulk_id)
        refused, next_cursor = await self.jobs.refusals(job.bulk_id, limit)
        return json_response({
            "bulk_id": job.bulk_id, "action": job.action, "params": job.params, "state": job.state,
            "requested_by": job.requested_by, "total": job.total, "sent": job.sent, "counts": counts,
            "done": sum(counts.values()), "cancel_requested": job.cancel_requested,
            "refusals": [_refusal(i) for i in refused], "refusals_next_cursor": next_cursor,
            "error": {"reason_code": job.refused_code, "message": job.refused_message} if job.state == "refused" else None,
            "created_at": job.created_at, "finished_at": job.finished_at,
        })

    async def list_refusals(self, request: Request) -> Response:
        """Every lead a mass action could not change, with the reason, a page at a time in the order they were refused."""
        principal = await authenticate(request, self.settings.tokens, self.principals)
        limit = limit_param(request, 50, self.settings.page_size_max)
        job = await self._owned_job(request, principal)
        try:
            refused, next_cursor = await self.jobs.refusals(job.bulk_id, limit, request.query_params.get("cursor"))
        except ValueError as exc:
            raise ApiError(400, "validation", f"cursor: {exc}") from None
        return json_response({"items": [_refusal(i) for i in refused], "next_cursor": next_cursor})

    async def cancel_bulk(self, request: Request) -> Response:
        """Cancel a running mass action: leads not yet changed stay as they are."""
        principal = await authenticate(request, self.settings.tokens, self.principals)
        job = await self._owned_job(request, principal)
        if job.state not in ("running", "expanding"):
            raise ApiError(409, "conflict", f"Mass action {job.bulk_id} is {job.state}; only a running one can be cancelled.")
        command = build_message(CancelBulkUpdate(bulk_id=job.bulk_id), source=self.source, actorid=principal.user_id)
        await self.publish([Outbound(LEADS_COMMANDS, command, key=job.bulk_id)])
        return json_response({"bulk_id": job.bulk_id, "status_url": f"/bulk/{job.bulk_id}"}, status=202)

    async def _owned_job(self, request: Request, principal: Principal) -> BulkJob:
        bulk_id = request.path_params["bulk_id"]
        job = await self.jobs.get(bulk_id)
        # Another user's job is answered as missing: its existence is not theirs to learn.
        if job is None or not access.owner_or_admin(principal, job.requested_by):
            raise ApiError(404, "not_found", f"No mass action {bulk_id} of yours.")
        return job


def _listed(job: BulkJob) -> dict[str, object]:
    """A job as GET /bulk lists it: what it does and how far it is (its counts and refusals are at GET /bulk/{id})."""
    return {
        "bulk_id": job.bulk_id, "action": job.action, "params": job.params, "state": job.state, "requested_by": job.requested_by,
        "total": job.total, "sent": job.sent, "cancel_requested": job.cancel_requested,
        "error": {"reason_code": job.refused_code, "message": job.refused_message} if job.state == "refused" else None,
        "created_at": job.created_at, "finished_at": job.finished_at, "status_url": f"/bulk/{job.bulk_id}",
    }


def _refusal(answer: Answer) -> dict[str, str | None]:
    return {"lead_id": answer.lead_id, "reason_code": answer.reason_code, "message": answer.message}


# For the OpenAPI document: what the code above cannot say by itself.
OPERATIONS = {
    ("POST", "/bulk"): Operation(
        ok="Accepted: `{\"bulk_id\", \"status_url\"}`; the job starts from the commands topic.", ok_status="202", errors=("400", "409"),
        request_body={"required": True, "content": {"application/json": {"schema": BulkUpdateLeads.model_json_schema()}}},
    ),
    ("GET", "/bulk"): Operation(
        query=(Param("requested_by", "Whose mass actions (administrators only; others list their own)."), CURSOR, LIMIT),
        ok="A page of your mass actions, newest first (an administrator's: everyone's), with `next_cursor` (null on the "
           "last page); each item: `bulk_id`, `action`, `params`, `state`, `requested_by`, `total`, `sent`, "
           "`cancel_requested`, `error` (when refused), `created_at`, `finished_at`, `status_url`.",
        errors=("400", "401", "403")),
    ("GET", "/bulk/{bulk_id}"): Operation(
        query=(Param("limit", "How many refusals to include (the first page of `GET /bulk/{id}/refusals`).", "integer", minimum=1),),
        ok="The job: `state` (expanding, running, completed, cancelled; refused, with `error`, when its command was refused), "
           "`total`, `sent`, `counts` per outcome, `done`, the first `refusals` and `refusals_next_cursor` for the rest.",
        errors=("400", "404")),
    ("GET", "/bulk/{bulk_id}/refusals"): Operation(
        query=(CURSOR, LIMIT), ok="A page of the job's refused leads, in the order they were refused, with `next_cursor` (null on the last page).",
        errors=("400", "404"), model=BulkLeadRefusal, page=True),
    ("POST", "/bulk/{bulk_id}/cancel"): Operation(ok="Accepted: the cancel is sent.", ok_status="202", errors=("404", "409")),
}
