"""`POST /capture/{form_id}`: a website's form submission, checked and sent on as the form's crm.lead.create."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from contracts import Envelope, build_message
from contracts.leads import CreateLead
from contracts.topics import LEADS_COMMANDS
from crmkit import access
from crmkit.http import ApiError, endpoint
from crmkit.openapi import Operation, Param
from crmkit.ids import uuid5
from crmkit.messaging import Outbound
from services.leads.capture.keys import KeyChecks
from services.leads.capture.repository import CaptureFormRepository, SubmissionCounts
from services.leads.domain import capture as rules
from services.leads.messages import ID_NAMESPACE
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings

Publish = Callable[[Sequence[Outbound]], Awaitable[None]]
_URLENCODED = "application/x-www-form-urlencoded"
_CORS_HEADERS = "Content-Type, X-Capture-Key, Idempotency-Key"
_MAX_FIELDS = 100


def routes(
    settings: LeadsSettings, forms: CaptureFormRepository, counts: SubmissionCounts, leads: LeadRepository,
    publish: Publish, source: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    return CaptureApi(settings, forms, counts, leads, publish, source, clock).routes()


def _origin_of(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin
    referer = urlsplit(request.headers.get("referer", ""))
    return f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None


def _cors(form: rules.CaptureForm, request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if rules.origin_allowed(form, origin) else {}


def client_address(request: Request, trust_forwarded: bool) -> str:
    """The address a submission counts against: the peer's, or behind a proxy the one it appended to `X-Forwarded-For`.

    The last entry, not the first: a proxy appends the address it saw to whatever the client sent, so
    the first entries are the client's to choose (a new one per request would slip past the limit).
    """
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")) if trust_forwarded else ""
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if entries:
        return entries[-1][:100]
    return request.client.host if request.client else "unknown"


def _values_of(request: Request, body: bytes) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            parsed = json.loads(body or b"{}")
            if not isinstance(parsed, dict):
                raise ApiError(400, "validation", "body: send a JSON object of field names to values.")
            values = rules.flatten(parsed)
        elif kind == _URLENCODED:
            values = _urlencoded_values(body)
        else:
            raise ApiError(415, "unsupported", f"Send application/json or {_URLENCODED}, not {kind or 'no content type'}.")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "validation", f"body: not valid {kind}: {exc}") from None
    except ValueError as exc:  # parse_qsl past max_num_fields
        raise ApiError(400, "validation", f"body: {exc}") from None
    if len(values) > _MAX_FIELDS:
        raise ApiError(400, "validation", f"body: {len(values)} fields, at most {_MAX_FIELDS}.")
    return values


def _urlencoded_values(body: bytes) -> dict[str, str]:
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise rules.SubmissionError(name, "sent twice; send one value")
        values[name] = value
    return values


def _submission(form: rules.CaptureForm, request: Request, values: dict[str, str]) -> rules.Submission:
    """The submission sorted into the form's fields (a field the form does not take is 400)."""
    key = request.headers.get("idempotency-key")
    if key and "submission_id" not in values:
        values["submission_id"] = key
    try:
        return rules.read_submission(form, values)
    except rules.SubmissionError as exc:
        raise ApiError(400, "validation", f"{exc.field}: {exc.message}") from None


def _lead_data(form: rules.CaptureForm, request: Request, submission: rules.Submission) -> dict[str, Any]:
    """The lead's fields from an admitted submission, each value checked."""
    q = request.query_params
    query_utm = {"utm_source": q.get("utm_source"), "utm_medium": q.get("utm_medium"), "utm_campaign": q.get("utm_campaign")}
    try:
        return rules.lead_fields(form, submission, {k: v for k, v in query_utm.items() if v})
    except rules.SubmissionError as exc:
        raise ApiError(400, "validation", f"{exc.field}: {exc.message}") from None


class CaptureApi:
    """The capture endpoints over the form store, the submission counts and the leads they create."""

    def __init__(
        self, settings: LeadsSettings, forms: CaptureFormRepository, counts: SubmissionCounts, leads: LeadRepository,
        publish: Publish, source: str, clock: Callable[[], datetime],
    ) -> None:
        self.settings, self.forms, self.counts, self.leads = settings, forms, counts, leads
        self.publish, self.source, self.clock = publish, source, clock
        self.keys = KeyChecks()

    def routes(self) -> list[Route]:
        return [
            Route("/capture/{form_id}", endpoint(self.capture), methods=["POST"]),
            Route("/capture/{form_id}", endpoint(self.capture_preflight), methods=["OPTIONS"]),
        ]

    async def capture(self, request: Request) -> Response:
        """Take a web form submission (JSON or urlencoded) and create a lead from it, with the form's presets.

        Answers 202 with the lead's id (or 303 to the form's `redirect_url` for an HTML form), also for
        a submission caught by the honeypot, which makes no lead."""
        form = await self._live_form(request)
        now = self.clock()
        await self._rate_limit(form, request, now)  # every submission from the address counts, good or bad
        submission = _submission(form, request, _values_of(request, await self._body_of(request)))
        await self._require_access(form, request, submission.key)
        data = _lead_data(form, request, submission)
        lead_id = await self._lead_id_for(form, submission, client_address(request, self.settings.capture_trust_forwarded), now)
        if not submission.spam:  # a bot is answered as a person is, so it learns nothing
            command = self._create_command(form, data, lead_id, request, now)
            await self.publish([Outbound(LEADS_COMMANDS, command, key=lead_id)])
        if form.redirect_url and request.headers.get("content-type", "").startswith(_URLENCODED):
            return RedirectResponse(form.redirect_url, status_code=303, headers=_cors(form, request))
        return JSONResponse({"status": "accepted", "lead_id": lead_id}, status_code=202, headers=_cors(form, request))

    async def capture_preflight(self, request: Request) -> Response:
        """CORS preflight of a submission from one of the form's allowed origins."""
        form = await self._live_form(request)
        headers = _cors(form, request)
        if not headers:
            raise ApiError(403, "forbidden", "Origin: this form takes submissions from its own sites only.")
        headers.update({"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": _CORS_HEADERS,
                        "Access-Control-Max-Age": "600"})
        return Response(status_code=204, headers=headers)

    async def _live_form(self, request: Request) -> rules.CaptureForm:
        form = await self.forms.get(request.path_params["form_id"])
        if form is None or form.deleted:
            raise ApiError(404, "not_found", f"No capture form {request.path_params['form_id']}.")
        return form

    async def _require_access(self, form: rules.CaptureForm, request: Request, key: str | None) -> None:
        """A page of an allowed origin, or the form's key (header, else the `_key` field); the origin first, costing nothing."""
        if form.allowed_origins and rules.origin_allowed(form, _origin_of(request)):
            return
        given = request.headers.get("x-capture-key") or key
        if form.secret_key_hash and given and await self.keys.check(given, form.secret_key_hash):
            return
        if form.secret_key_hash and not form.allowed_origins:
            raise ApiError(403, "forbidden", "X-Capture-Key: missing or wrong key for this form.")
        raise ApiError(403, "forbidden", "Origin: this form takes submissions from its own sites only.")

    async def _body_of(self, request: Request) -> bytes:
        limit = self.settings.capture_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "too_large", f"The submission is {int(declared):,} bytes; a form takes at most {limit:,}.")
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a missing or false length is no way round
            body += chunk
            if len(body) > limit:
                raise ApiError(413, "too_large", f"The submission is over {limit:,} bytes, the most a form takes.")
        return bytes(body)

    async def _rate_limit(self, form: rules.CaptureForm, request: Request, now: datetime) -> None:
        minute = int(now.timestamp() // 60)
        ends = datetime.fromtimestamp((minute + 1) * 60, UTC)
        client = client_address(request, self.settings.capture_trust_forwarded)
        seen = await self.counts.count(form.form_id, client, minute, ends + timedelta(minutes=1))
        if seen > form.rate_limit_per_minute:
            wait = max(1, int((ends - now).total_seconds()) + 1)
            raise ApiError(429, "rate_limited", f"More than {form.rate_limit_per_minute} submissions a minute from this address; "
                           f"try again in {wait} s.", headers={"Retry-After": str(wait)})

    async def _lead_id_for(self, form: rules.CaptureForm, submission: rules.Submission, client: str, now: datetime) -> str:
        window = int(now.timestamp() // self.settings.capture_dedup_window_s)
        current = uuid5(ID_NAMESPACE, "capture\x1f" + rules.submission_key(form.form_id, submission, window, client))
        if "submission_id" in submission.fields:
            return current
        # A retry just after a window boundary finds the lead its first try made in the window before.
        previous = uuid5(ID_NAMESPACE, "capture\x1f" + rules.submission_key(form.form_id, submission, window - 1, client))
        return previous if await self.leads.get(previous) is not None else current

    def _create_command(self, form: rules.CaptureForm, data: dict[str, Any], lead_id: str, request: Request, now: datetime) -> Envelope:
        try:
            payload = CreateLead.model_validate({**data, "lead_id": lead_id})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ApiError(400, "validation", f"{name}: {first['msg']}") from None
        bounds = access.field_errors(payload)
        if bounds:
            name, problem = bounds[0]
            raise ApiError(400, "validation", f"{name}: {problem}")
        return build_message(
            payload, source=self.source, subject=lead_id, id=lead_id, actorid=form.actor_id, time=now,
            traceparent=request.headers.get("traceparent"),
        )


# For the OpenAPI document: what the code above cannot say by itself.
OPERATIONS = {
    ("POST", "/capture/{form_id}"): Operation(
        query=tuple(Param(name, "UTM tag for the lead when the body sends none (the form's default otherwise).") for name in rules.UTM_FIELDS),
        ok="Accepted: `{\"status\": \"accepted\", \"lead_id\": ...}` (the lead is created from the commands topic); "
           "303 to the form's `redirect_url` for an urlencoded post when the form has one.",
        ok_status="202", errors=("400", "403", "404", "413", "415", "429"), public=True,
        request_body={"required": True, "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            _URLENCODED: {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
        }},
    ),
    ("OPTIONS", "/capture/{form_id}"): Operation(ok="CORS preflight answered for the form's allowed origins.", ok_status="204",
                                                 ok_media="text/plain", errors=("403", "404"), public=True),
}
