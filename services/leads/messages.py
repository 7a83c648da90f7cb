"""The leads service's side of the contract: stable ids, domain events as contract messages, rejections."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import contracts.leads as ev
from contracts import Envelope, build_message, envelope_class
from contracts.directory import CompanyUpserted, ContactUpserted, ProductUpserted
from crmkit import access
from crmkit.ids import uuid5
from crmkit.principals import Principal
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


# Events that carry the whole card: their data is the card's JSON plus `changed_fields`.
_CARD_EVENTS: dict[type, type[ev.Payload]] = {d.LeadCreated: ev.LeadCreated, d.LeadUpdated: ev.LeadUpdated}


class CardJson:
    """Each lead card's JSON, serialized once per batch and shared by its events and its stored document.

    A card event is not re-validated against the contract: the card was validated as a domain
    ``Lead``, whose JSON is the contract's ``LeadCard`` (a unit test holds the two equal). The
    envelope is built with ``model_construct``, published as the spliced bytes, and its ``data``
    becomes the contract model only if some code reads it.
    """

    def __init__(self) -> None:
        self._cards: dict[int, tuple[d.Lead, bytes]] = {}

    def clear(self) -> None:
        self._cards.clear()

    def of(self, lead: d.Lead) -> bytes:
        hit = self._cards.get(id(lead))
        if hit is None or hit[0] is not lead:  # the lead is kept in the entry, so its id is not reused
            hit = self._cards[id(lead)] = (lead, lead.model_dump_json().encode())
        return hit[1]

    def cached(self, lead: d.Lead) -> bytes | None:
        hit = self._cards.get(id(lead))
        return hit[1] if hit is not None and hit[0] is lead else None

    def messages(
        self, events: Sequence[Any], cause: Envelope, source: str, subject: str | None, now: datetime
    ) -> list[tuple[Envelope, bytes]]:
        """``to_messages`` with each message's wire bytes; card events spliced from the card's JSON."""
        out: list[tuple[Envelope, bytes]] = []
        for index, event in enumerate(events):
            cls = _CARD_EVENTS.get(type(event))
            if cls is None:
                message = _message(event, index, cause, source, subject, now)
                out.append((message, message.to_json_bytes()))
                continue
            changed = list(getattr(event, "changed_fields", ()))
            data = self.of(event.lead)[:-1] + b',"changed_fields":' + (json.dumps(changed).encode() if changed else b"[]") + b"}"
            message = envelope_class(cls.TYPE).model_construct(
                specversion="1.0", id=_event_id(cause, subject, index, cls.TYPE), type=cls.TYPE, source=source,
                time=now, subject=subject, datacontenttype="application/json",
                correlationid=cause.correlationid or cause.id, causationid=cause.id, actorid=cause.actorid,
                traceparent=cause.traceparent, tracestate=cause.tracestate,
                data=_CardPayload(cls, data),
            )
            unset = {name for name, value in message.__dict__.items() if value is None}
            head = message.model_dump_json(exclude=unset | {"data"}).encode()
            out.append((message, head[:-1] + b',"data":' + data + b"}"))
        return out


class _CardPayload:
    """A spliced card event's data: its JSON, validated into the contract model only if read."""

    __slots__ = ("_cls", "_json", "_model")

    def __init__(self, cls: type[ev.Payload], data: bytes) -> None:
        self._cls = cls
        self._json = data
        self._model: ev.Payload | None = None

    def __getattr__(self, name: str) -> Any:
        if self._model is None:
            self._model = self._cls.model_validate_json(self._json)
        return getattr(self._model, name)


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
