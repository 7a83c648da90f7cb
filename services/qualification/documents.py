"""Qualification's stored documents: a closing's and a deal's shape, and the blob that keeps their fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import Binary

from crmkit import blobs, listkeys
from services.qualification.domain import Closing, Deal


def blob(value: Any) -> Binary:
    """What a closing, a deal or a lead's copy stores besides the fields a query or a version guard names:
    one JSON blob, compressed when large (``crmkit.blobs.pack``). FerretDB turns every BSON field into JSON and back, so a closing's
    nested deal, company and three serialized events cost it 85 µs of CPU per document inserted against 20 as
    a blob (BSON 3,073 -> 1,133 bytes), a deal 55 against 17-20, for a lead with a contact and two product
    lines; 80 -> 17 and 33-35 -> 15-20 for bench_flow's leads (a contact, no products). Measured by
    bench/bench_qualification_docs.py (2,000 documents, four rounds); a lead's copy: ``repository.copy_values``.
    This process encodes fewer BSON fields for it: its CPU per qualification stayed 156-166 µs (1,000 qualify
    commands in-process, three alternated pairs). Documents written before, with every field of their own,
    are still read."""
    return blobs.pack(value)


def unblob(doc: dict[str, Any]) -> Any:
    return blobs.unpack(doc["blob"])


@dataclass
class StoredClosing:
    closing: Closing
    outbox: list[str]  # serialized envelopes the process publishes, fixed when it starts


def closing_document(stored: StoredClosing) -> dict[str, Any]:
    """A process: its lead (``_id``), its command (naming it replaces a reopened lead's process), the rest blobbed."""
    closing = stored.closing
    return {"_id": closing.lead_id, "command_id": closing.command_id,
            "blob": blob({"closing": closing.model_dump(), "outbox": stored.outbox})}


def done_id(closing: Closing) -> str:
    return f"{closing.lead_id}\x1f{closing.command_id}"


def closing_from(doc: dict[str, Any]) -> StoredClosing:
    if "blob" in doc:
        body = unblob(doc)
        return StoredClosing(Closing.model_validate(body["closing"]), list(body["outbox"]))
    outbox = list(doc.get("_outbox", []))  # written before the blob
    return StoredClosing(Closing.model_validate({k: v for k, v in doc.items() if k not in ("_id", "_outbox")}), outbox)


def deal_list_keys(deal: Deal) -> dict[str, str]:
    """The list keys of GET /deals, newest first (crmkit/listkeys.py)."""
    return {
        "ix_all": listkeys.key((), deal.created_at, deal.deal_id),
        "ix_lead": listkeys.key((deal.lead_id,), deal.created_at, deal.deal_id),
    }


def deal_document(deal: Deal) -> dict[str, Any]:
    """A deal: its id, its lead (deals are counted by lead), its list keys, the rest in the blob."""
    return {"_id": deal.deal_id, "lead_id": deal.lead_id, **deal_list_keys(deal), "blob": blob(deal.model_dump())}


def deal_from(doc: dict[str, Any]) -> Deal:
    return Deal.model_validate(unblob(doc) if "blob" in doc else doc)  # without a blob: written before it
