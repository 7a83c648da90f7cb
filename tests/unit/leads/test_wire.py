"""Card events are spliced from the card's JSON and stored without a second copy of the card.

The fast path must publish exactly what the validated path would: the same contract payload,
the same envelope attributes. These tests hold the two equal on cards with every kind of data.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta

from contracts import build_message, parse_message
from contracts.leads import CreateLead
from contracts.topics import LEADS_EVENTS
from services.leads import domain as d
from services.leads.messages import CardJson, to_messages
from services.leads.repository import LeadWrite, Recent, lead_document, stored_lead

NOW = datetime(2025, 3, 10, 9, 0, 0, 123456, tzinfo=UTC)
USER = d.Actor(user_id="u-1", licensed=True)


def _cards() -> list[tuple[d.Lead, list]]:
    pipe = d.default_pipeline(NOW)
    plain = d.create_lead(USER, "L1", {"title": "Заявка «сайт»\n\"quoted\""}, pipe, NOW)
    rich = d.create_lead(
        USER, "L2",
        {
            "title": "Big order", "source": "web", "utm_source": "ads", "need_maturity": "interested",
            "external_id": "ext-2", "description": "line1\nline2 \u0000 nul",
            "contact": {"contact_id": "c-1", "name": "Иван Петров", "phone": "+7 912 000-00-00", "email": "i@example.ru"},
            "company": {"company_id": "co-1", "name": "ООО Ромашка", "inn": "7701234567"},
            # Keys from outside that look like the blob's own: the stored card is still found.
            "products": [{"product_id": "p-1", "name": "Plan", "kind": "configurable", "quantity": 2.5,
                          "options": {"tier": "gold", "recent": ",\"recent\":[]", "card": "x"}}],
            "external_ids": {"recent": "r-1", "card": "c-1"},
        },
        pipe, NOW,
    )
    updated = d.update_lead(USER, rich.lead, {"title": "Bigger order"}, ["description"], NOW + timedelta(minutes=5))
    summary = d.ActivitySummaryView(next_due_at=NOW + timedelta(days=1), next_task_id="t-1", open_count=2, state="due_soon")
    with_activity = d.apply_activity_summary(updated.lead, summary, NOW + timedelta(minutes=6))
    out = [(plain.lead, plain.events), (rich.lead, rich.events), (updated.lead, updated.events)]
    out.append((with_activity.lead, with_activity.events))
    qualified = d.apply_qualified(updated.lead, pipe, "deal-1", "co-1", NOW + timedelta(minutes=7))
    out.append((qualified.lead, qualified.events))
    # The duplicate check's events (duplicates-found, then the card updated) take the spliced path too.
    match = d.DuplicateMatch(lead_id="L1", score=0.9, matched_on=["email", "name"])
    duplicates = d.record_duplicates(rich.lead, [match], NOW)
    assert [type(e) for e in duplicates.events] == [d.DuplicatesFound, d.LeadUpdated]
    assert duplicates.events[1].changed_fields == ("duplicates",)
    out.append((duplicates.lead, duplicates.events))
    at_creation = d.duplicates_at_creation(rich.lead, [match])
    out.append((at_creation.lead, at_creation.events))
    return out


def _cause() -> object:
    return build_message(CreateLead(lead_id="L1", title="x"), source="test", actorid="u-1", correlationid="corr-1")


def test_spliced_card_events_equal_the_validated_ones() -> None:
    cause = _cause()
    for lead, events in _cards():
        spliced = CardJson().messages(events, cause, "crm/leads", lead.lead_id, NOW)
        validated = to_messages(events, cause, "crm/leads", lead.lead_id, NOW)
        assert len(spliced) == len(validated) > 0
        for (message, wire), expected in zip(spliced, validated, strict=True):
            parsed = parse_message(LEADS_EVENTS, wire)  # what a consumer reads
            assert parsed.type == expected.type and parsed.id == expected.id
            assert parsed.data.model_dump() == expected.data.model_dump()
            got = parsed.model_dump(exclude={"data"})
            assert got == expected.model_dump(exclude={"data"})  # the time too: both are stamped with NOW
            assert message.id == expected.id and message.subject == lead.lead_id
            assert message.data.model_dump() == expected.data.model_dump()  # read, it is the contract model


def test_stored_blob_keeps_one_copy_of_the_card_and_reads_back_the_exact_events() -> None:
    cause = _cause()
    cards = CardJson()
    for lead, events in _cards():
        messages = cards.messages(events, cause, "crm/leads", lead.lead_id, NOW)
        assert any(m.type in ("crm.lead.created", "crm.lead.updated") for m, _ in messages)  # each case carries a card
        wire = [raw.decode() for _, raw in messages]
        older = Recent("m-0", ['{"specversion":"1.0","id":"e-0","data":{"x":1}}'])
        doc = lead_document(LeadWrite(lead, [older, Recent("m-1", wire)], None, cards.cached(lead)))
        raw = zlib.decompress(doc["blob"]).decode()
        assert raw.count(json.dumps(lead.title, ensure_ascii=False)) == 1, "the card is stored once"
        stored = stored_lead(doc)
        assert stored.lead == lead
        assert [r.events for r in stored.recent] == [older.events, wire]


def test_blob_written_before_the_card_mark_still_reads() -> None:
    lead, events = _cards()[1]
    message = to_messages(events, _cause(), "crm/leads", lead.lead_id, NOW)[0]
    event = message.to_json_bytes().decode()
    blob = b'{"card":' + lead.model_dump_json().encode() + b',"recent":' + json.dumps([{"id": "m-1", "events": [event]}]).encode() + b"}"
    stored = stored_lead({"blob": zlib.compress(blob)})
    assert stored.lead == lead and stored.recent[0].events == [event]


def test_the_stored_document_carries_its_duplicate_keys_and_links_while_live() -> None:
    from services.leads.index import index_entry

    for lead, _ in _cards():
        doc = lead_document(LeadWrite(lead, [], None))
        keys, links = index_entry(lead)
        assert {k: doc[f"ix_{k}"] for k in ("email", "phone", "name") if doc[f"ix_{k}"]} == keys
        assert doc["ix_contact"] == (links.get("contact") or [None])[0]
        assert doc["ix_company"] == (links.get("company") or [None])[0]
        assert doc["product_ids"] == (links.get("product") or None)
    lead = _cards()[1][0]
    doc = lead_document(LeadWrite(lead, [], None))
    assert doc["ix_email"] and doc["ix_contact"] == "c-1" and doc["ix_company"] == "co-1"
    assert doc["product_ids"] == ["p-1"] and doc["ix_products"] == " p-1 "
    gone = lead_document(LeadWrite(lead.model_copy(update={"deleted": True}), [], None))
    assert (gone["ix_email"], gone["ix_phone"], gone["ix_name"]) == (None, None, None)  # no duplicate candidate
    assert gone["ix_contact"] == "c-1"  # still refreshed from upstream
    assert gone["ix_all"].startswith("D:") and doc["ix_all"].startswith("L:")
