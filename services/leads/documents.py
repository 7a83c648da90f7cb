"""The stored lead document: its shape, and the codec between it and a domain lead with its applied messages."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from bson import Binary

from crmkit import blobs
from crmkit.applied import Applied, applied_for
from crmkit.wire import form_json
from services.leads import readmodel
from services.leads.domain import Lead
from services.leads.messages import CardEvent, card_form

# What a lead's applied message produced: a card event (rebuilt from the stored card), or any other
# event as its record value.
Produced = CardEvent | str

# A lead's applied messages, each with the events it produced; the old name stays importable.
Recent = Applied


@dataclass
class StoredLead:
    lead: Lead
    recent: list[Applied[Produced]]

    @property
    def version(self) -> int:
        return self.lead.version

    def recent_for(self, message_id: str) -> Applied[Produced] | None:
        return applied_for(self.recent, message_id)


@dataclass
class LeadWrite:
    """A lead to store: new when ``expected_version`` is None, else replacing that version."""

    lead: Lead
    recent: list[Applied[Produced]]
    expected_version: int | None
    card: dict[str, Any] | None = None  # the card's ``card_form`` when the caller has it already
    card_json: bytes | None = None  # and that form as JSON bytes (orjson), when it has them too


# A lead is stored as the fields the read side filters on, flat, plus the whole card and its recent
# messages as one compressed JSON blob. FerretDB converts every BSON field to JSON and back on each
# write and read, which made a nested card cost ten times a blob of the same data; MongoDB does not
# mind either way. The document:
#
#   _id, version                        the lead id and card version (replaces are guarded by it)
#   pipeline_id, stage_id, status,      where the lead stands, plain, checked row by row when a
#   responsible_id, source, deleted,    list has more than one filter
#   updated_at, title, contact_name, company_name
#   ix_all, ix_pipeline, ix_stage,      one indexed list key per keyed filter, in last-change order
#   ix_status, ix_responsible, ix_source  (services/leads/readmodel.py); None when the lead has no value
#   ix_terms                            the search words, " word word ... "
#   ix_email, ix_phone, ix_name         normalised duplicate keys, only while the lead is live
#   ix_contact, ix_company, product_ids the linked upstream records (snapshot fan-out); ix_products the
#   ix_products                         product ids as " id id ", searched on FerretDB (no array index)
#   ixv                                 the version of these read fields (older ones are rewritten at start)
#   blob                                the JSON below, compressed (zstd; zlib in blobs written before)
#
# The blob (format 2):
#
#   {"format": 2,
#    "card": {...},                     the card, as its events carry it (messages.card_form)
#    "recent": [{"id": <message id>,    the lead's last applied messages, each with what it produced:
#                "events": [...]}]}       a card event of this card as {"attributes": <its envelope
#                                         without data>, "changed_fields": [...]} (its data is the card
#                                         above plus these), any other event as its record value (a string)
#
# Blobs written before format 2 have no "format": there each event is its record value, and a card
# event's copy of the card was cut out and replaced by a NUL character (read by _old_recent).
BLOB_FORMAT = 2


def blob_json(doc: dict[str, Any]) -> bytes:
    """A stored document's blob as its JSON bytes, whichever way it was compressed (zlib: written before zstd)."""
    blob = bytes(doc["blob"])
    return blobs.decompress(blob) if blobs.is_compressed(blob) else zlib.decompress(blob)


def lead_document(write: LeadWrite) -> dict[str, Any]:
    """The document a lead is stored as (its shape is described above)."""
    lead = write.lead
    # Without a form at hand (no event of this batch carries the card), the card is compared with the
    # stored events' cards in the form they were read back in, JSON values: the one that carries it
    # stays a pointer to it.
    card = write.card if write.card is not None else orjson.loads(form_json(card_form(lead)))
    recent = [{"id": r.message_id, "events": [_stored_event(e, card) for e in r.events]} for r in write.recent]
    # The card's JSON made for its size check goes in as it is (a Fragment, which orjson writes
    # unchanged): the same bytes as dumping the card again, 2.7 against 4.2 µs for the blob.
    body = orjson.Fragment(write.card_json) if write.card is not None and write.card_json is not None else card
    blob = form_json({"format": BLOB_FORMAT, "card": body, "recent": recent})
    return {
        "_id": lead.lead_id,
        "version": lead.version,
        "pipeline_id": lead.pipeline_id,
        "stage_id": lead.stage_id,
        "status": lead.status,
        "responsible_id": lead.responsible_id,
        "source": lead.source,
        "deleted": lead.deleted,
        "updated_at": lead.updated_at,
        "title": lead.title,
        "contact_name": lead.contact.name if lead.contact else None,
        "company_name": lead.company.name if lead.company else None,
        **readmodel.read_fields(lead),
        "blob": Binary(blobs.compress(blob)),
    }


def _stored_event(event: Produced, card: dict[str, Any]) -> Any:
    if not isinstance(event, CardEvent):
        return event
    if event.card is card or event.card == card:
        return {"attributes": event.attributes, "changed_fields": event.changed_fields}
    return event.value().decode()  # it carries an older card: kept whole


def stored_lead(doc: dict[str, Any]) -> StoredLead:
    """A stored document read back: the lead and its applied messages."""
    raw = blob_json(doc)
    blob = orjson.loads(raw)
    if blob.get("format") != BLOB_FORMAT:
        return StoredLead(Lead.model_validate(blob["card"]), _old_recent(raw.decode(), blob))
    card = blob["card"]
    recent = [
        Applied(r["id"], [e if isinstance(e, str) else CardEvent(e["attributes"], card, e["changed_fields"]) for e in r["events"]])
        for r in blob["recent"]
    ]
    return StoredLead(Lead.model_validate(card), recent)


def stored_card(doc: dict[str, Any]) -> Lead:
    """Only the card of a stored document, for the read side: its JSON cut from the blob and validated by
    pydantic's compiled parser, the applied messages skipped (22 against 58 µs a lead at 100,000 leads,
    measured on the benchmark's documents; a list page reads 50)."""
    raw = blob_json(doc)
    # The blob is {"format":2,"card":...,"recent":[...]} (earlier: {"card":...,"recent":[...]}); the last
    # `,"recent":` is the blob's own key, as the card's keys from outside come before it and the recent
    # events hold no such key unescaped.
    start = next((len(p) for p in _CARD_STARTS if raw.startswith(p)), None)
    if start is None:
        return stored_lead(doc).lead
    return Lead.model_validate_json(raw[start:raw.rindex(b',"recent":')])


_CARD_STARTS = (b'{"format":%d,"card":' % BLOB_FORMAT, b'{"card":')
_OLD_CARD_MARK = "\x00"


def _old_recent(raw: str, blob: dict[str, Any]) -> list[Applied[Produced]]:
    """The applied messages of a blob written before format 2, each event its record value again."""
    recent = [Applied.from_doc(r) for r in blob.get("recent") or []]
    if any(_OLD_CARD_MARK in e for r in recent for e in r.events):
        # The card's own text, as stored. The last `,"recent":` is the blob's own key: the card may hold
        # one too (product options and external ids have keys from outside), the events cannot
        # (they are JSON strings there, their quotes escaped).
        body = raw[len('{"card":'):raw.rindex(',"recent":')][:-1]
        for r in recent:
            r.events = [e.replace(_OLD_CARD_MARK, body, 1) for e in r.events]
    return recent

