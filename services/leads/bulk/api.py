"""HTTP side of mass actions: start one (`POST /bulk`), follow it (`GET /bulk/{id}`), cancel it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts import build_message
from contracts.bulk import BulkUpdateLeads, CancelBulkUpdate
from contracts.topics import LEADS_COMMANDS
from crmkit import access
from crmkit.http import ApiError, authenticate, endpoint, json_response
from crmkit.ids import uuid5
from crmkit.messaging import Outbound
from crmkit.openapi import Operation
from crmkit.principals import Principal, PrincipalRepository
from services.leads import domain as d
from services.leads.bulk.handlers import bulk_id_of
from services.leads.bulk.repository import BulkJob, BulkRepository
from services.leads.bulk.runner import REFUSALS_REPORTED
from services.leads.domain import bulk as rules
from services.leads.messages import ID_NAMESPACE
from services.leads.settings import LeadsSettings

Publish = Callable[[Sequence[Outbound]], Awaitable[None]]


def routes(settings: LeadsSettings, jobs: BulkRepository, principals: PrincipalRepository, publish: Publish, source: str) -> list[Route]:
    return BulkApi(settings, jobs, principals, publish, source).routes()


def _payload_of(body: bytes) -> BulkUpdateLeads:
    try:
        return BulkUpdateLeads.model_validate(json.loads(body or b"{}"))
    except json.JSONDecodeError as exc:
        raise ApiError(400, "validation", f"body: not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ApiError(400, "validation", f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


class BulkApi:
    """The mass-action endpoints over the job store; each sends its command on the caller's behalf."""

    def __init__(self, settings: LeadsSettings, jobs: BulkRepository, principals: PrincipalRepository, publish: Publish, source: str) -> None:
        self.settings, self.jobs, self.principals, self.publish, self.source = settings, jobs, principals, publish, source

    def routes(self) -> list[Route]:
        return [
            Route("/bulk", endpoint(self.start_bulk), methods=["POST"]),
            Route("/bulk/{bulk_id}", endpoint(self.get_bulk)),
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
        await self.publish([Outbound(LEADS_COMMANDS, command, key=bulk_id)])
        return json_response({"bulk_id": bulk_id, "status_url": f"/bulk/{bulk_id}"}, status=202)

    async def get_bulk(self, request: Request) -> Response:
        """A mass action's state, counts per outcome, and the refused leads with their reasons (yours, or any for an administrator)."""
        principal = await authenticate(request, self.settings.tokens, self.principals)
        job = await self._owned_job(request, principal)
        counts = await self.jobs.counts(job.bulk_id)
        refused = await self.jobs.refusals(job.bulk_id, REFUSALS_REPORTED)
        return json_response({
            "bulk_id": job.bulk_id, "action": job.action, "params": job.params, "state": job.state,
            "requested_by": job.requested_by, "total": job.total, "sent": job.sent, "counts": counts,
            "done": sum(counts.values()), "cancel_requested": job.cancel_requested,
            "refusals": [{"lead_id": i.lead_id, "reason_code": i.reason_code, "message": i.message} for i in refused],
            "created_at": job.created_at, "finished_at": job.finished_at,
        })

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


# For the OpenAPI document: what the code above cannot say by itself.
OPERATIONS = {
    ("POST", "/bulk"): Operation(
        ok="Accepted: `{\"bulk_id\", \"status_url\"}`; the job starts from the commands topic.", ok_status="202", errors=("400",),
        request_body={"required": True, "content": {"application/json": {"schema": BulkUpdateLeads.model_json_schema()}}},
    ),
    ("GET", "/bulk/{bulk_id}"): Operation(
        ok="The job: `state` (expanding, running, completed, cancelled), `total`, `counts` per outcome, `done`, `refusals`.",
        errors=("404",)),
    ("POST", "/bulk/{bulk_id}/cancel"): Operation(ok="Accepted: the cancel is sent.", ok_status="202", errors=("404", "409")),
}
