"""Lead card events read as a consumer's narrow view: only the card fields it keeps, with the contract's own types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model

from contracts import Envelope, parse_message
from contracts.leads import LeadUpdated
from contracts.registry import TOPIC_TYPES, envelope_class
from contracts.topics import LEADS_EVENTS

from crmkit.messaging import RecordParser

CARD_TYPES = ("crm.lead.created", "crm.lead.updated")


def card_view(name: str, fields: Iterable[str], doc: str) -> type[Envelope]:
    """An envelope of ``crm.lead.created`` / ``-updated`` whose card holds only ``fields`` (and its id, version and
    changed fields), each declared as the contract declares it: the rest of the card is not read.

    A card event validated whole (status history, duplicates, activity, times) is most of what a consumer
    that keeps a few of its fields spends on it: 29-36 µs an event against 11 (five facts) to 17-21 (the
    qualification's thirteen, contact and products among them), timed in isolation on the loaded machine."""
    kept = ("lead_id", "version", "changed_fields", *fields)
    declared = LeadUpdated.model_fields
    data = create_model(
        f"{name}Data", __config__=ConfigDict(extra="ignore"), __doc__=f"What {name} reads of a lead card.",
        **{field: (declared[field].annotation, declared[field]) for field in dict.fromkeys(kept)},
    )  # type: ignore[call-overload]
    return create_model(
        name, __base__=Envelope, __doc__=doc,
        type=(Literal[CARD_TYPES], ...),  # type: ignore[valid-type]
        data=(data, ...),
    )


def view_parser(view: type[Envelope]) -> RecordParser:
    """A record parser (crmkit's ``parse``) that reads card events of the leads topic as ``view``, the rest whole.

    The leads topic is read in one pass, by its type, as the contract reads it but for the card events; a
    record that does not validate is parsed again by the contract, which names what is wrong, and is parked
    like any other. The leads service writes its card events from validated leads, so what the view reads
    of them the contract reads the same; the fields it leaves out are not checked."""
    others = tuple(envelope_class(t) for t in TOPIC_TYPES[LEADS_EVENTS] if t not in CARD_TYPES)
    leads_events = TypeAdapter(Annotated[Union[(view, *others)], Field(discriminator="type")])  # noqa: UP007

    def parse(topic: str, value: bytes) -> Envelope:
        if topic == LEADS_EVENTS:
            try:
                return leads_events.validate_json(value)
            except ValidationError:
                pass
        return parse_message(topic, value)

    return parse
