"""HTTP for operating imports: list the caller's jobs (an administrator's: all), cancel and revert them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit.http import ApiError, authenticate, endpoint, is_ascii_digits, json_response, limit_param
from crmkit.principals import PrincipalRepository
from services.importer import domain as d
from services.importer.api import status_view
from services.importer.repository import ImportRepository
from services.importer.settings import ImporterSettings
from services.importer.worker import JobRunner

_STATES = ("waiting", "running", "completed", "failed", "reverting", "reverted")
_STATUS_OF = {"not_licensed": 403, "forbidden": 403, "not_found": 404, "invalid_state": 409}
MAX_PAGE = 200
MAX_OFFSET = 100_000


def routes(settings: ImporterSettings, imports: ImportRepository, runner: JobRunner, principals: PrincipalRepository) -> list[Route]:
    @endpoint
    async def listing(request: Request) -> Response:
        """The caller's imports newest first (an administrator's: everyone's, or one user's with `actor_id`)."""
        principal = await authenticate(request, settings.tokens, principals)
        limit = limit_param(request, 50, MAX_PAGE)
        raw_offset = request.query_params.get("offset", "0")
        if raw_offset != "0" and (not is_ascii_digits(raw_offset) or int(raw_offset) > MAX_OFFSET):
            raise ApiError(400, "validation", f"offset must be a whole number from 0 to {MAX_OFFSET}.")
        state = request.query_params.get("state") or None
        if state is not None and state not in _STATES:
            raise ApiError(400, "validation", f"state must be one of {', '.join(_STATES)}.")
        asked_for = request.query_params.get("actor_id") or None
        if asked_for is not None and asked_for != principal.user_id and not principal.is_admin:
            raise ApiError(403, "forbidden", "Only administrators may list another user's imports.")
        owner = asked_for if principal.is_admin else principal.user_id
        offset = int(raw_offset)
        jobs = await imports.listed(owner, state=state, limit=limit + 1, offset=offset)
        items = [status_view(job, await runner.counts(job)) | {"actor_id": job.actor_id} for job in jobs[:limit]]
        following = offset + limit if len(jobs) > limit else None
        return json_response({"items": items, "limit": limit, "offset": offset, "next_offset": following})

    async def ask(request: Request, principal, command_type: str, **change) -> Response:
        import_id = request.path_params["import_id"]
        job = await imports.get(import_id)
        # The same rule as the Kafka command (crm.import.cancel / crm.import.revert) applies.
        refusal = d.command_refusal(command_type, principal.user_id, True, principal.is_admin, job)
        if refusal is not None:
            code, message = refusal
            if code == "forbidden" and job is not None and not d.may_see(job, principal.user_id, principal.is_admin):
                # As GET /imports/{id} answers: another user's import is one this caller cannot tell exists.
                code, message = "not_found", (f"import {import_id} does not exist, or belongs to another user "
                                              f"(only they and administrators may cancel or revert it)")
            raise ApiError(_STATUS_OF.get(code, 400), code, message[0].upper() + message[1:] + ".")
        await imports.request(import_id, **change)
        runner.wake()
        return json_response({"import_id": import_id, "requested": command_type.rsplit(".", 1)[-1],
                              "status_url": f"/imports/{import_id}"}, 202)

    @endpoint
    async def cancel(request: Request) -> Response:
        """Stop a running import (the rows sent so far stay); 202, then its status turns cancelled."""
        principal = await authenticate(request, settings.tokens, principals)
        return await ask(request, principal, "crm.import.cancel", cancel=True)

    @endpoint
    async def revert(request: Request) -> Response:
        """Undo a completed import: leads it created are deleted, those it updated get their earlier values back."""
        principal = await authenticate(request, settings.tokens, principals)
        return await ask(request, principal, "crm.import.revert", revert=True, revert_actor_id=principal.user_id)

    return [
        Route("/imports", listing, methods=["GET"]),
        Route("/imports/{import_id}/cancel", cancel, methods=["POST"]),
        Route("/imports/{import_id}/revert", revert, methods=["POST"]),
    ]
