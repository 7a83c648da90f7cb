"""Capture form commands: contract in, the form rule, the form stored, its event (or the refusal) out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from contracts import Envelope, build_message
from contracts.capture import CaptureFormCard, CaptureFormCreated, CaptureFormDeleted, CaptureFormUpdated
from contracts.topics import LEADS_EVENTS
from crmkit import access
from crmkit.conflicts import retry_on_conflict
from crmkit.ids import uuid5
from crmkit.messaging import Outbound
from crmkit.principals import PrincipalRepository
from services.leads import domain as d
from services.leads.capture import keys
from services.leads.capture.repository import CaptureFormRepository
from services.leads.domain import capture as rules
from services.leads.messages import ID_NAMESPACE, actor_of, rejection
from services.leads.repository import PipelineRepository

FORM_COMMANDS = frozenset({"crm.capture-form.create", "crm.capture-form.update", "crm.capture-form.delete"})


def form_actor_refusal(message: Envelope) -> access.Refusal | None:
    """A form acts only to create leads: anything else sent in its name is refused."""
    if (message.actorid or "").startswith(rules.FORM_ACTOR_PREFIX) and message.type != "crm.lead.create":
        return access.Refusal("forbidden", f"a capture form only creates leads; {message.type} needs a user as actor")
    return None


def form_id_of(message: Envelope) -> str:
    return message.data.form_id or uuid5(ID_NAMESPACE, f"capture-form\x1f{message.id}")


class CaptureFormHandlers:
    """Applies crm.capture-form.create|update|delete; each answered by its event or a crm.command.rejected."""

    def __init__(
        self, forms: CaptureFormRepository, pipelines: PipelineRepository, principals: PrincipalRepository,
        source: str, clock: Callable[[], datetime], keep: int, seal: rules.Seal = keys.seal,
    ) -> None:
        self.forms = forms
        self.pipelines = pipelines
        self.principals = principals
        self.source = source
        self.clock = clock
        self.keep = keep
        self.seal = seal

    async def on_command(self, message: Envelope) -> list[Outbound]:
        form_id = form_id_of(message)
        return [Outbound(LEADS_EVENTS, event, key=form_id) for event in await self._apply(message, form_id)]

    async def _apply(self, message: Envelope, form_id: str) -> list[Envelope]:
        for _attempt in retry_on_conflict(f"capture form {form_id} under command {message.id}"):
            owed = await self.forms.recent_events(form_id, message.id)
            if owed is not None:  # a redelivery: the same events again
                return [Envelope.model_validate_json(e) for e in owed]
            principal = await self.principals.get(message.actorid)
            refused = access.licence_refusal(message, {principal.user_id: principal})
            if refused is not None:
                return [rejection(message, refused, self.source, None)]
            existing = await self.forms.get(form_id)
            now = self.clock()
            try:
                outcome = await self._outcome(message, actor_of(principal), form_id, existing, now)
            except d.Rejected as exc:
                return [rejection(message, exc, self.source, None)]
            event = self._event(outcome, message, now)
            if await self.forms.save(outcome.form, existing.version if existing else None, message.id,
                                     [event.to_json_bytes().decode()], self.keep):
                return [event]
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    async def _outcome(
        self, message: Envelope, actor: d.Actor, form_id: str, existing: rules.CaptureForm | None, now: datetime
    ) -> rules.FormOutcome:
        data = message.data
        if message.type == "crm.capture-form.delete":
            return rules.delete_form(actor, existing, form_id, now)
        settings = data.model_dump(mode="json", exclude_unset=True, exclude={"form_id", "clear"})
        if "presets" in settings:
            settings["presets"] = {k: v for k, v in (settings["presets"] or {}).items() if v is not None}
        pipelines = await self.pipelines.all()
        if message.type == "crm.capture-form.create":
            return rules.create_form(actor, form_id, settings, pipelines, now, existing, self.seal)
        return rules.update_form(actor, existing, form_id, settings, list(data.clear or []), pipelines, now, self.seal)

    def _event(self, outcome: rules.FormOutcome, cause: Envelope, now: datetime) -> Envelope:
        form = outcome.form
        if outcome.happened == "deleted":
            payload = CaptureFormDeleted(form_id=form.form_id, version=form.version)
        else:
            card = card_of(form)
            cls = CaptureFormCreated if outcome.happened == "created" else CaptureFormUpdated
            payload = cls.model_validate(card.model_dump())
        return build_message(
            payload, source=self.source, time=now,
            id=uuid5(ID_NAMESPACE, f"{cause.id}\x1f{form.form_id}\x1f{payload.TYPE}"),
            correlationid=cause.correlationid or cause.id, causationid=cause.id, actorid=cause.actorid,
            traceparent=cause.traceparent, tracestate=cause.tracestate,
        )


def card_of(form: rules.CaptureForm) -> CaptureFormCard:
    """The form as published and shown: everything but its key's hash (the key itself is kept nowhere)."""
    values = form.model_dump(exclude={"secret_key_hash"})
    return CaptureFormCard.model_validate({**values, "has_secret_key": bool(form.secret_key_hash)})
