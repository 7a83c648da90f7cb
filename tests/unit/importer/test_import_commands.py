"""The records the importer sends and what it reads back: each command is what the contract reads, each card view what the card says."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts import ContractError, parse_message
from contracts.examples import EXAMPLES
from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from services.importer import domain as d
from services.importer.commands import ChunkCommands
from services.importer.mapping import build_mapping
from services.importer.rows import row_to_lead
from services.importer.views import CardView, changes_row_fields, parse_record, row_fields

SOURCE = "crm/importer"
NOW = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
HEADER = ["Название", "Имя", "Телефон", "Эл. почта", "Компания", "ИНН", "Источник", "utm_source", "utm_medium",
          "utm_campaign", "Внешний ID", "Описание", "Зрелость потребности", "ID товара", "Количество", "Ответственный"]
ROW = ["Заявка 1", "Иван  Петров", "8 912 345 67 89", "ivan@example.ru", "ООО Ромашка", "7701234567", "website",
       "yandex", "cpc", "spring", "ext-1", "Перезвонить", "срочно", "P-1", "2,5", "u-7"]


def job(**fields) -> d.ImportJob:
    return d.ImportJob(import_id="imp-1", file_uri="a.csv", actor_id="alice", **fields)


def plans(known: d.KnownLead | None = None) -> list[d.RowPlan]:
    mapping = build_mapping(HEADER)
    full = row_to_lead(2, ROW, mapping, pipeline_id="sales", stage_id="processing")
    bare = row_to_lead(3, ["Только название"] + [""] * (len(HEADER) - 1), mapping, pipeline_id=None)
    assert full.ok and bare.ok, (full.errors, bare.errors)
    return [d.plan_row(r, import_id="imp-1", source=SOURCE, known=known) for r in (full, bare)]


@pytest.mark.parametrize("traceparent", [None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
def test_each_create_record_is_the_validated_command(traceparent):
    commands = ChunkCommands(job(traceparent=traceparent), SOURCE, NOW)
    for plan in plans():
        out = commands.command(plan)
        read = parse_message(LEADS_COMMANDS, out.value)  # what the leads service reads
        assert read.type == out.message.type == "crm.lead.create"
        assert read.data == out.message.data  # the record holds the values the contract validated
        assert read.data.lead_id == plan.lead_id and read.data.import_row == plan.row_number
        assert (read.id, read.subject, read.correlationid, read.actorid, read.time) == (
            d.command_id("imp-1", plan.row_number), plan.lead_id, d.correlation_id("imp-1", plan.row_number), "alice", NOW)
        assert read.traceparent == out.message.traceparent and read.traceparent
        assert out.key == plan.lead_id
    assert read.data.pipeline_id is None  # the bare row names no pipeline: the default one


def test_an_update_record_is_the_validated_update():
    known = d.KnownLead("L1", {"title": "Old", "contact": {"name": "A", "email": "old@x.ru"}})
    full = plans(known)[0]
    assert full.action == "update"
    out = ChunkCommands(job(), SOURCE, NOW).command(full)
    read = parse_message(LEADS_COMMANDS, out.value)
    assert read.type == "crm.lead.update" and read.data == out.message.data
    assert read.data.lead_id == "L1" and read.data.contact.email == "ivan@example.ru" and read.data.title == "Заявка 1"
    assert read.data.products[0].quantity == 2.5 and read.data.need_maturity.value == "urgent"


def test_a_value_the_contract_refuses_raises_before_anything_is_sent():
    plan = d.RowPlan(2, "create", lead_id="L1", payload={"title": "T", "products": [{"product_id": "P", "quantity": -1}]})
    with pytest.raises(ValidationError):
        ChunkCommands(job(), SOURCE, NOW).command(plan)


def test_a_card_event_is_read_as_a_view_with_the_row_fields_of_the_whole_card():
    value = json.dumps(EXAMPLES["crm.lead.created"], ensure_ascii=False).encode()
    view = parse_record(LEADS_EVENTS, value)
    whole = parse_message(LEADS_EVENTS, value)
    assert isinstance(view, CardView)
    assert (view.data.lead_id, view.data.external_id, view.data.import_id, view.correlationid, view.causationid) == (
        whole.data.lead_id, whole.data.external_id, whole.data.import_id, whole.correlationid, whole.causationid)
    assert row_fields(view.data) == row_fields(whole.data)
    assert set(row_fields(view.data)) == set(d.ROW_FIELDS)
    assert changes_row_fields(view.data)  # no changed fields named: it may change any


def test_only_a_card_change_naming_a_row_field_or_the_external_id_changes_the_projection():
    event = json.loads(json.dumps(EXAMPLES["crm.lead.created"]))
    for changed, expected in ([["activity"], False], [["stage_id", "status"], False], [["title"], True],
                              [["external_id"], True], [["contact", "activity"], True]):
        event["data"]["changed_fields"] = changed
        assert changes_row_fields(parse_record(LEADS_EVENTS, json.dumps(event).encode()).data) is expected, changed


def test_other_events_and_broken_cards_are_read_by_the_contract():
    deleted = parse_record(LEADS_EVENTS, json.dumps(EXAMPLES["crm.lead.deleted"]).encode())
    assert deleted.type == "crm.lead.deleted" and not isinstance(deleted, CardView)
    card = json.loads(json.dumps(EXAMPLES["crm.lead.created"]))
    del card["data"]["lead_id"]  # the view cannot read it: the contract says what is wrong (and the record is parked)
    with pytest.raises(ContractError, match="lead_id"):
        parse_record(LEADS_EVENTS, json.dumps(card).encode())
