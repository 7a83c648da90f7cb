"""Card events are made from the card's one form and stored without a second copy of the card.

The fast path must publish exactly what the validated path would: the same contract payload,
the same envelope attributes. These tests hold the two equal on cards with every kind of data,
and check that documents written in the earlier blob format still read.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta, timezone

import orjson
from pydantic_core import PydanticUndefined

from contracts import build_message, parse_message
from contracts.leads import CreateLead
from contracts.topics import LEADS_EVENTS
from crmkit.wire import form_json
from services.leads import domain as d
from services.leads.documents import BLOB_FORMAT, blob_json
from services.leads.messages import CardEvent, Cards, card_form, to_messages
from services.leads.repository import LeadWrite, Recent, lead_document, stored_card, stored_lead

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


def _value(item) -> str:
    return item.value().decode() if isinstance(item, CardEvent) else item.to_json_bytes().decode()


_ATTRIBUTES = ("specversion", "id", "type", "source", "time", "subject", "datacontenttype", "correlationid", "causationid", "actorid",
               "traceparent", "tracestate")


def _attributes_of(message) -> dict:
    return {name: getattr(message, name) for name in _ATTRIBUTES}


def test_card_events_equal_the_validated_ones() -> None:
    cause = _cause()
    for lead, events in _cards():
        made = Cards().messages(events, cause, "crm/leads", lead.lead_id, NOW)
        validated = to_messages(events, cause, "crm/leads", lead.lead_id, NOW)
        assert len(made) == len(validated) > 0
        assert any(isinstance(item, CardEvent) for item in made)  # each case carries a card
        for item, expected in zip(made, validated, strict=True):
            parsed = parse_message(LEADS_EVENTS, _value(item).encode())  # what a consumer reads
            assert parsed.type == expected.type and parsed.id == expected.id
            assert parsed.data.model_dump() == expected.data.model_dump()
            got = parsed.model_dump(exclude={"data"})
            assert got == expected.model_dump(exclude={"data"})  # the time too: both are stamped with NOW
            message = item.message() if isinstance(item, CardEvent) else item  # as it is published
            assert message.id == expected.id and message.subject == lead.lead_id
            assert _attributes_of(message) == _attributes_of(expected)
            assert message.data.model_dump() == expected.data.model_dump()  # read, it is the contract model
            if isinstance(item, CardEvent):
                assert item.envelope().model_dump(exclude={"data"}) == expected.model_dump(exclude={"data"})


def _produced(made: list) -> list:
    return [item if isinstance(item, CardEvent) else item.to_json_bytes().decode() for item in made]


def test_stored_blob_keeps_one_copy_of_the_card_and_reads_back_the_exact_events() -> None:
    cause = _cause()
    cards = Cards()
    for lead, events in _cards():
        produced = _produced(cards.messages(events, cause, "crm/leads", lead.lead_id, NOW))
        older = Recent("m-0", ['{"specversion":"1.0","id":"e-0","data":{"x":1}}'])
        doc = lead_document(LeadWrite(lead, [older, Recent("m-1", produced)], None, cards.cached(lead)))
        blob = json.loads(blob_json(doc))
        assert blob["format"] == BLOB_FORMAT
        assert json.dumps(blob).count(json.dumps(lead.title)) == 1, "the card is stored once"
        stored = stored_lead(doc)
        assert stored.lead == lead
        assert [[_value(e) if isinstance(e, CardEvent) else e for e in r.events] for r in stored.recent] == [
            older.events, [_value(e) if isinstance(e, CardEvent) else e for e in produced]
        ]


def test_a_blob_made_with_the_card_s_json_at_hand_is_the_one_made_without() -> None:
    cause = _cause()
    for lead, events in _cards():
        cards = Cards()
        produced = _produced(cards.messages(events, cause, "crm/leads", lead.lead_id, NOW))
        assert cards.cached_json(lead) is None
        assert cards.size(lead) == len(cards.cached_json(lead) or b"")
        assert cards.cached_json(lead) == lead.model_dump_json().encode(), "the card's JSON is pydantic's"
        with_json = lead_document(LeadWrite(lead, [Recent("m-1", produced)], None, cards.cached(lead), cards.cached_json(lead)))
        without = lead_document(LeadWrite(lead, [Recent("m-1", produced)], None, cards.cached(lead)))
        assert blob_json(with_json) == blob_json(without)
        assert stored_lead(with_json).lead == lead


def test_the_card_s_json_is_pydantic_s_at_any_time_of_day() -> None:
    """``form_json`` writes a card's datetimes as pydantic's JSON mode does: UTC as ``Z``, whole seconds
    without a fraction, other offsets as they are (an activity's due time comes from upstream)."""
    lead = _cards()[1][0]
    plus_three = timezone(timedelta(hours=3))
    for at in (NOW, NOW.replace(microsecond=0), NOW.replace(microsecond=120_000), datetime(2026, 5, 4, 9, 30, 1, 7, tzinfo=plus_three)):
        changed = lead.model_copy(update={"updated_at": at, "status_since": at.astimezone(UTC)})
        assert form_json(card_form(changed)) == changed.model_dump_json().encode()
        assert orjson.loads(form_json(card_form(changed))) == changed.model_dump(mode="json")


def test_the_card_s_json_is_pydantic_s_with_its_defaults_filled_in() -> None:
    """Values no command gave (a product line's quantity, an activity summary's counts) are written as
    pydantic writes them: a default is not validated, so its type must already be the field's."""
    lead = _cards()[1][0].model_copy(update={
        "products": [d.ProductLine(product_id="p-2")], "activity": d.ActivitySummaryView(), "duplicates": [],
    })
    assert form_json(card_form(lead)) == lead.model_dump_json().encode()
    for model in (d.Lead, d.ProductLine, d.ContactRef, d.CompanyRef, d.StatusHistoryEntry, d.ActivitySummaryView, d.DuplicateMatch):
        for name, info in model.model_fields.items():
            if info.annotation is float and info.default is not PydanticUndefined:
                assert isinstance(info.default, float), f"{model.__name__}.{name} defaults to {info.default!r}"


def test_a_card_event_of_an_older_card_is_stored_whole() -> None:
    cards = Cards()
    lead, events = _cards()[1]
    first = _produced(cards.messages(events, _cause(), "crm/leads", lead.lead_id, NOW))
    later = d.update_lead(USER, lead, {"title": "Renamed"}, [], NOW + timedelta(minutes=1))
    second = _produced(cards.messages(later.events, _cause(), "crm/leads", lead.lead_id, NOW))
    doc = lead_document(LeadWrite(later.lead, [Recent("m-1", first), Recent("m-2", second)], 1, cards.cached(later.lead)))
    blob = json.loads(blob_json(doc))
    assert isinstance(blob["recent"][0]["events"][0], str)  # v1 of the card, whole
    assert set(blob["recent"][1]["events"][0]) == {"attributes", "changed_fields"}  # the stored card
    stored = stored_lead(doc)
    assert [_value(e) if isinstance(e, CardEvent) else e for e in stored.recent[0].events] == [_value(first[0])]
    assert _value(stored.recent[1].events[0]) == _value(second[0])


def test_a_lead_read_back_and_written_unchanged_keeps_its_card_event_a_pointer() -> None:
    """A write that makes no card event (a message recorded, the card unchanged) compares the card with the
    events read back with it, whose cards are JSON values: the event that carries it is not stored whole."""
    cards = Cards()
    lead, events = _cards()[1]
    doc = lead_document(LeadWrite(lead, [Recent("m-1", _produced(cards.messages(events, _cause(), "crm/leads", lead.lead_id, NOW)))],
                                  None, cards.cached(lead)))
    stored = stored_lead(doc)
    again = lead_document(LeadWrite(stored.lead, [*stored.recent, Recent("m-2", [])], 1))  # no form at hand
    blob = json.loads(blob_json(again))
    assert set(blob["recent"][0]["events"][0]) == {"attributes", "changed_fields"}
    assert blob_json(again).count(json.dumps(lead.title).encode()) == 1, "the card is stored once"
    assert [_value(e) for e in stored_lead(again).recent[0].events] == [_value(e) for e in stored.recent[0].events]


def _old_format_blob(lead: d.Lead, recent: list[tuple[str, list[str]]]) -> bytes:
    """A blob as the service wrote it before format 2: each event's copy of the card cut out for a NUL."""
    card = lead.model_dump_json()
    body = card[:-1]
    entries = [{"id": mid, "events": [e.replace(body, "\x00", 1) for e in events]} for mid, events in recent]
    blob = '{"card":' + card + ',"recent":' + json.dumps(entries, separators=(",", ":"), ensure_ascii=False) + "}"
    return zlib.compress(blob.encode(), 1)


def _old_event(message, lead: d.Lead, changed: list[str]) -> str:
    """A card event as the earlier version published it: the domain card's JSON spliced into the envelope."""
    unset = {name for name, value in message.__dict__.items() if value is None}
    head = message.model_dump_json(exclude=unset | {"data"})
    return head[:-1] + ',"data":' + lead.model_dump_json()[:-1] + ',"changed_fields":' + json.dumps(changed) + "}}"


def test_blobs_of_the_earlier_format_still_read() -> None:
    for lead, events in _cards():
        old = []
        for event, message in zip(events, to_messages(events, _cause(), "crm/leads", lead.lead_id, NOW), strict=True):
            card = message.type in ("crm.lead.created", "crm.lead.updated") and event.lead is lead
            old.append(_old_event(message, lead, list(getattr(event, "changed_fields", ()))) if card else message.to_json_bytes().decode())
        assert any(lead.model_dump_json()[:-1] in e for e in old)  # the marker has a card to stand for
        assert parse_message(LEADS_EVENTS, old[-1].encode())  # each is a valid record value
        stored = stored_lead({"blob": _old_format_blob(lead, [("m-0", ['{"id":"e-0"}']), ("m-1", old)])})
        assert stored.lead == lead
        assert stored_card({"blob": _old_format_blob(lead, [("m-1", old)])}) == lead  # the read side's shortcut too
        assert [r.events for r in stored.recent] == [['{"id":"e-0"}'], old]
    lead, events = _cards()[1]  # and before the marker: every event whole
    event = to_messages(events, _cause(), "crm/leads", lead.lead_id, NOW)[0].to_json_bytes().decode()
    blob = b'{"card":' + lead.model_dump_json().encode() + b',"recent":' + json.dumps([{"id": "m-1", "events": [event]}]).encode() + b"}"
    stored = stored_lead({"blob": zlib.compress(blob)})
    assert stored.lead == lead and stored.recent[0].events == [event]
    assert stored_card({"blob": zlib.compress(blob)}) == lead


def test_the_read_side_cuts_the_same_card_from_a_blob_of_the_current_format() -> None:
    cards = Cards()
    for lead, events in _cards():
        recent = [Recent("m-1", _produced(cards.messages(events, _cause(), "crm/leads", lead.lead_id, NOW)))]
        doc = lead_document(LeadWrite(lead, recent, None, cards.cached(lead)))
        assert blob_json(doc).startswith(b'{"format":%d,"card":' % BLOB_FORMAT)
        assert stored_card(doc) == stored_lead(doc).lead == lead
        # Written zstd; the same blob as an earlier version wrote it (zlib) reads the same.
        assert bytes(doc["blob"]).startswith(b"\x28\xb5\x2f\xfd")
        earlier = {**doc, "blob": zlib.compress(blob_json(doc), 1)}
        assert stored_card(earlier) == lead
        assert stored_lead(earlier).recent == stored_lead(doc).recent


def test_the_stored_document_carries_its_duplicate_keys_and_links_while_live() -> None:
    from services.leads.duplicates import match_keys

    for lead, _ in _cards():
        doc = lead_document(LeadWrite(lead, [], None))
        assert {k: doc[f"ix_{k}"] for k in ("email", "phone", "name") if doc[f"ix_{k}"]} == match_keys(lead)
        assert doc["ix_contact"] == (lead.contact.contact_id if lead.contact else None)
        assert doc["ix_company"] == (lead.company.company_id if lead.company else None)
        assert doc["product_ids"] == ([p.product_id for p in lead.products] or None)
    lead = _cards()[1][0]
    doc = lead_document(LeadWrite(lead, [], None))
    assert doc["ix_email"] and doc["ix_contact"] == "c-1" and doc["ix_company"] == "co-1"
    assert doc["product_ids"] == ["p-1"] and doc["ix_products"] == " p-1 "
    gone = lead_document(LeadWrite(lead.model_copy(update={"deleted": True}), [], None))
    assert (gone["ix_email"], gone["ix_phone"], gone["ix_name"]) == (None, None, None)  # no duplicate candidate
    assert gone["ix_contact"] == "c-1"  # still refreshed from upstream
    assert gone["ix_all"].startswith("D:") and doc["ix_all"].startswith("L:")


def test_a_card_message_reads_and_sends_as_the_contract_envelope() -> None:
    """What is published of a card event (a ``JsonMessage``, no envelope validated) is what its contract
    envelope reads and serialises to, the trace context the bus may set afterwards included."""
    cause = _cause()
    for lead, events in _cards():
        for item in Cards().messages(events, cause, "crm/leads", lead.lead_id, NOW):
            if not isinstance(item, CardEvent):
                continue
            message, envelope = item.message(), item.envelope()
            assert _attributes_of(message) == _attributes_of(envelope)
            assert message.to_json_bytes() == item.value()
            assert getattr(message.data, "command_id", None) is None and message.data._model is None
            assert message.data.model_dump() == envelope.data.model_dump()
            # The bus starts a trace for a message published without one: the record carries it.
            traced = parse_message(LEADS_EVENTS, item.value())
            traced.traceparent = message.traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
            traced.tracestate = message.tracestate = "crm=1"
            assert json.loads(message.to_json_bytes()) == json.loads(traced.to_json_bytes())
            assert list(json.loads(message.to_json_bytes())) == list(json.loads(traced.to_json_bytes())), "in the envelope's order"
            assert "traceparent" not in item.attributes, "the stored event keeps what it was made with"


def test_a_card_event_is_validated_only_when_its_data_is_read() -> None:
    lead, events = _cards()[1]
    message = Cards().messages(events, _cause(), "crm/leads", lead.lead_id, NOW)[0].envelope()
    assert getattr(message.data, "command_id", None) is None  # what the bus asks of every message
    assert message.data._model is None, "asking for a name the payload lacks validates nothing"
    assert message.data.title == lead.title and message.data._model is not None


def test_cards_are_answered_with_the_json_values_of_the_shared_json_response() -> None:
    """The read side's orjson answers give every card view (datetimes, Cyrillic, quotes, NULs) the same
    JSON values as ``crmkit.http.json_response``."""
    from crmkit.http import json_response
    from services.leads.api import card_view, cards_response

    views = [card_view(lead, NOW + timedelta(days=3)) for lead, _ in _cards()]
    assert any(view["last_activity"]["at"] for view in views)  # a datetime the standard encoder takes by default=
    for payload in ({"items": views, "next_cursor": "0001"}, views[1], {"stages": [{"leads": views, "count": 4}]}):
        assert json.loads(cards_response(payload).body) == json.loads(json_response(payload).body)


def test_a_duplicates_found_notice_is_the_contract_path_s_bytes() -> None:
    matches = (
        d.DuplicateMatch(lead_id="L7", score=1.0, matched_on=["email", "phone", "name"]),
        d.DuplicateMatch(lead_id="L3", score=0.9, matched_on=["email", "name"]),
        d.DuplicateMatch(lead_id="L9", score=0.3, matched_on=["name"]),
    )
    traced = build_message(CreateLead(lead_id="L1", title="x"), source="test", actorid="u-1",
                           traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate="k=v")
    for cause in (_cause(), traced):
        for found in (matches[:1], matches):
            event = d.DuplicatesFound("L1", found, 4)
            made = Cards().messages([event], cause, "crm/leads", "L1", NOW)[0]
            expected = to_messages([event], cause, "crm/leads", "L1", NOW)[0]
            assert made.to_json_bytes() == expected.to_json_bytes()
            assert made.data.matches == expected.data.matches  # read, it is the contract model
    # A traceparent the bus sets on a message made without one is in its value, as on the contract path.
    cause = _cause()
    made = Cards().messages([d.DuplicatesFound("L1", matches, 4)], cause, "crm/leads", "L1", NOW)[0]
    expected = to_messages([d.DuplicatesFound("L1", matches, 4)], cause, "crm/leads", "L1", NOW)[0]
    made.traceparent = expected.traceparent = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    assert made.to_json_bytes() == expected.to_json_bytes()


def test_the_form_of_a_lead_created_with_duplicates_is_its_whole_card_dump() -> None:
    lead = _cards()[1][0]
    matches = [d.DuplicateMatch(lead_id="L1", score=0.9, matched_on=["email", "name"]),
               d.DuplicateMatch(lead_id="L0", score=0.3, matched_on=["name"])]
    created = d.duplicates_at_creation(lead, matches).lead
    cards = Cards()
    cards.size(lead)  # the create's form, as the card size check makes it
    cards.with_duplicates(created, lead)
    form = cards.cached(created)
    assert form == card_form(created) and list(form) == list(card_form(created))  # the same keys in the same order
    assert orjson.dumps(form) == orjson.dumps(card_form(created))
    assert cards.cached(lead) is None and cards.of(lead) == card_form(lead)  # made again if asked for
