"""The leads service's side of the contract: stable ids, domain events as contract messages, rejections."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

import contracts.leads as ev
from contracts import Envelope, build_message
from contracts.directory import CompanyUpserted, ContactUpserted, ProductUpserted
from crmkit import access
from crmkit.ids import uuid5
from crmkit.principals import Principal
from crmkit.wire import JsonMessage, JsonPayload, event_attributes, form_json
from services.leads import domain as d

# Stable ids: the same input message always yields the same lead id and the same event ids,
# so a replay after a crash publishes byte-identical events that consumers dedupe.
ID_NAMESPACE = uuid.UUID("6f1b8a52-3c1e-4f7e-9a51-0d6c8e2b7a10")


def derived_lead_id(message: Envelope) -> str:
    """The lead id a create names, else one derived from source + external id, else from the message id."""
    data = message.data
    if data.lead_id:
        return data.lead_id
    if data.external_id:
        return uuid5(ID_NAMESPACE, f"{message.source}\x1f{data.external_id}")
    return uuid5(ID_NAMESPACE, f"msg\x1f{message.id}")


def lead_id_of(message: Envelope) -> str:
    if message.type == "crm.lead.create":
        return derived_lead_id(message)
    return message.data.lead_id


def actor_of(principal: Principal) -> d.Actor:
    return d.Actor(
        user_id=principal.user_id, licensed=principal.licensed, roles=frozenset(principal.roles), service=principal.service,
        groups=frozenset(principal.groups),
    )


# --- domain events → contract messages ------------------------------------------------------


def _payload(event: Any) -> Any:
    if isinstance(event, d.LeadCreated):
        return ev.LeadCreated.model_validate(event.lead.model_dump())
    if isinstance(event, d.LeadUpdated):
        return ev.LeadUpdated.model_validate({**event.lead.model_dump(), "changed_fields": list(event.changed_fields)})
    if isinstance(event, d.DuplicatesFound):
        return ev.LeadDuplicatesFound(
            lead_id=event.lead_id, matches=[m.model_dump() for m in event.matches], version=event.version
        )
    if isinstance(event, (d.PipelineCreated, d.PipelineUpdated)):
        cls = ev.PipelineCreated if isinstance(event, d.PipelineCreated) else ev.PipelineUpdated
        return cls.model_validate(d.public_pipeline(event.pipeline))
    simple = {
        d.LeadAssigned: ev.LeadAssigned,
        d.StageChanged: ev.LeadStageChanged,
        d.LeadDeleted: ev.LeadDeleted,
        d.LeadRestored: ev.LeadRestored,
        d.LeadMerged: ev.LeadMerged,
        d.PipelineDeleted: ev.PipelineDeleted,
    }
    return simple[type(event)].model_validate(event.__dict__)


def _event_id(cause: Envelope, subject: str | None, index: int, type_name: str) -> str:
    return uuid5(ID_NAMESPACE, f"{cause.id}\x1f{subject}\x1f{index}\x1f{type_name}")


def _message(event: Any, index: int, cause: Envelope, source: str, subject: str | None, now: datetime) -> Envelope:
    payload = _payload(event)
    return build_message(
        payload,
        source=source,
        subject=subject,
        time=now,
        id=_event_id(cause, subject, index, payload.TYPE),
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        actorid=cause.actorid,
        traceparent=cause.traceparent,
        tracestate=cause.tracestate,
    )


def to_messages(events: Sequence[Any], cause: Envelope, source: str, subject: str | None, now: datetime) -> list[Envelope]:
    """The contract messages of ``events``, stamped with ``now`` (the service's clock)."""
    return [_message(event, index, cause, source, subject, now) for index, event in enumerate(events)]


# Events that carry the whole card: their data is the card plus `changed_fields`.
_CARD_EVENTS: dict[type, type[ev.Payload]] = {d.LeadCreated: ev.LeadCreated, d.LeadUpdated: ev.LeadUpdated}


def card_form(lead: d.Lead) -> dict[str, Any]:
    """The card as the values its JSON is written from: the one form of the card that its events and its
    stored document are made from (written by ``form_json``).

    Its times are left as datetimes for orjson to write: pydantic's JSON mode wrote them as text
    first, 8.1 against 5.4 µs for a card's form and its JSON (a benchmark create's card, alone);
    tests/unit/leads/test_wire.py holds the bytes equal to pydantic's JSON of the card.
    """
    return lead.model_dump()


@dataclass(frozen=True, slots=True)
class CardEvent:
    """A ``crm.lead.created`` / ``crm.lead.updated`` as published: envelope attributes, the card, its changes.

    Its record value is ``{**attributes, "data": {**card, "changed_fields": [...]}}`` serialised by orjson;
    the stored document keeps the attributes and the changes and points at the card stored beside
    them (services/leads/documents.py), so the card is stored once.
    """

    attributes: dict[str, Any]  # the envelope without `data`, as JSON values, unset ones left out
    card: dict[str, Any]  # ``card_form`` of the lead it carries
    changed_fields: list[str]

    @property
    def id(self) -> str:
        return self.attributes["id"]

    def value(self) -> bytes:
        return self.message().to_json_bytes()

    def message(self) -> JsonMessage:
        """The event as it is published."""
        data = {**self.card, "changed_fields": self.changed_fields}
        return JsonMessage(self.attributes, JsonPayload(_CARD_PAYLOADS[self.attributes["type"]], data))

    def envelope(self) -> Envelope:
        """The message as the contract's envelope; its `data` is validated only if some code reads it.

        The attributes are validated as a plain ``Envelope`` (its `data` may be anything): 2.3 µs, where
        ``model_construct`` of the event's own envelope class, unvalidated, took 4.7 µs (pydantic 2.14).
        """
        return self.message().envelope()


_CARD_PAYLOADS = {cls.TYPE: cls for cls in _CARD_EVENTS.values()}


class Cards:
    """Each lead's ``card_form``, made once per batch and shared by its events and its stored document.

    A card event is not re-validated against the contract: the card was validated as a domain
    ``Lead``, whose JSON is the contract's ``LeadCard`` (a unit test holds the two equal).
    """

    def __init__(self) -> None:
        self._forms: dict[int, tuple[d.Lead, dict[str, Any]]] = {}
        self._json: dict[int, tuple[d.Lead, bytes]] = {}  # the form serialised, once its size was asked
        self._matches: dict[tuple[int, ...], tuple[tuple[d.DuplicateMatch, ...], list[dict[str, Any]]]] = {}

    def of(self, lead: d.Lead) -> dict[str, Any]:
        hit = self._forms.get(id(lead))
        if hit is None or hit[0] is not lead:  # the lead is kept in the entry, so its id is not reused
            hit = self._forms[id(lead)] = (lead, card_form(lead))
        return hit[1]

    def with_duplicates(self, lead: d.Lead, before: d.Lead) -> None:
        """``lead``'s form made from ``before``'s: ``lead`` is ``before`` given its duplicates and nothing else
        (``duplicates_at_creation``), and takes its form over, ``before`` being left behind (its form is made
        again should it be asked for). Dumping the whole card again took 5 µs; a copy of the form 8 in a
        1,000-create batch (its values no longer in the CPU's caches), taking it over 3.
        """
        hit = self._forms.pop(id(before), None)
        form = hit[1] if hit is not None and hit[0] is before else card_form(before)
        form["duplicates"] = self.matches(lead.duplicates)
        self._forms[id(lead)] = (lead, form)

    def matches(self, matches: Sequence[d.DuplicateMatch]) -> list[dict[str, Any]]:
        """Duplicate matches as JSON values, made once for the card they are recorded on and the
        ``crm.lead.duplicates-found`` notice that names them (the same match objects): each was dumped twice."""
        key = tuple(map(id, matches))
        hit = self._matches.get(key)
        if hit is None:  # the matches are kept in the entry, so their ids are not reused
            hit = self._matches[key] = (tuple(matches), [match.model_dump(mode="json") for match in matches])
        return hit[1]

    def cached(self, lead: d.Lead) -> dict[str, Any] | None:
        hit = self._forms.get(id(lead))
        return hit[1] if hit is not None and hit[0] is lead else None

    def json(self, lead: d.Lead) -> bytes:
        """The card's form as JSON bytes (orjson), made once."""
        hit = self._json.get(id(lead))
        if hit is None or hit[0] is not lead:
            hit = self._json[id(lead)] = (lead, form_json(self.of(lead)))
        return hit[1]

    def cached_json(self, lead: d.Lead) -> bytes | None:
        hit = self._json.get(id(lead))
        return hit[1] if hit is not None and hit[0] is lead else None

    def size(self, lead: d.Lead) -> int:
        """The card's size as its events carry it, in bytes of JSON."""
        return len(self.json(lead))

    def messages(
        self, events: Sequence[Any], cause: Envelope, source: str, subject: str | None, now: datetime
    ) -> list[CardEvent | JsonMessage | Envelope]:
        """``to_messages``, with the card events as ``CardEvent`` made from the card's one form."""
        out: list[CardEvent | JsonMessage | Envelope] = []
        time = to_jsonable_python(now)
        for index, event in enumerate(events):
            if isinstance(event, d.DuplicatesFound):
                attributes = _attributes(cause, source, subject, index, ev.LeadDuplicatesFound.TYPE, time)
                out.append(_duplicates_found(event, self.matches(event.matches), attributes))
                continue
            cls = _CARD_EVENTS.get(type(event))
            if cls is None:
                out.append(_message(event, index, cause, source, subject, now))
                continue
            attributes = _attributes(cause, source, subject, index, cls.TYPE, time)
            out.append(CardEvent(attributes, self.of(event.lead), list(getattr(event, "changed_fields", ()))))
        return out


def _attributes(cause: Envelope, source: str, subject: str | None, index: int, kind: str, time: Any) -> dict[str, Any]:
    """An event's envelope attributes (``crmkit.wire.event_attributes``) under its stable id."""
    return event_attributes(cause, id=_event_id(cause, subject, index, kind), kind=kind, source=source, subject=subject, time=time)


def _duplicates_found(event: d.DuplicatesFound, matches: list[dict[str, Any]], attributes: dict[str, Any]) -> JsonMessage:
    """A ``crm.lead.duplicates-found`` made from the domain's matches, which were validated as domain models.

    On the contract path (payload and typed envelope validated again, its JSON by pydantic) it cost
    13.6 µs a duplicate lead with its JSON, made from the matches' JSON values 11.1 (tests/unit/leads/test_wire.py
    holds the bytes equal to the contract path's).
    """
    data = {"lead_id": event.lead_id, "matches": matches, "version": event.version}
    return JsonMessage(attributes, JsonPayload(ev.LeadDuplicatesFound, data))


def rejection(cause: Envelope, exc: d.Rejected | access.Refusal, source: str, lead_id: str | None) -> Envelope:
    refusal = exc if isinstance(exc, access.Refusal) else access.Refusal(exc.code, exc.message, tuple(exc.errors))
    return access.rejection(cause, refusal, source=source, namespace=ID_NAMESPACE, lead_id=lead_id)


def refresh_payload(lead_id: str, data: Any) -> ev.RefreshLeadSnapshot:
    if isinstance(data, ContactUpserted):
        contact = {"contact_id": data.contact_id, "name": data.name, "phone": data.phone, "email": data.email}
        return ev.RefreshLeadSnapshot(lead_id=lead_id, contact=contact, record_version=data.version)
    if isinstance(data, CompanyUpserted):
        company = {"company_id": data.company_id, "name": data.name, "inn": data.inn}
        return ev.RefreshLeadSnapshot(lead_id=lead_id, company=company, record_version=data.version)
    return ev.RefreshLeadSnapshot(
        lead_id=lead_id, product_id=data.product_id, product_name=data.name, product_kind=_value(data.kind),
        product_options=list(data.options) if data.options is not None else None, record_version=data.version,
    )



def directory_target(data: Any) -> tuple[str, str]:
    if isinstance(data, ContactUpserted):
        return "contact", data.contact_id
    if isinstance(data, CompanyUpserted):
        return "company", data.company_id
    assert isinstance(data, ProductUpserted)
    return "product", data.product_id



def pipeline_key(message: Envelope) -> str:
    return getattr(message.data, "pipeline_id", None) or message.id


def _value(value: Any) -> Any:
    return getattr(value, "value", value)
