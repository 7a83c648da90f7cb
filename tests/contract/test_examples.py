"""Every message type has a valid example on its topic, and bad records fail with a precise reason."""

import json

import pytest

from contracts import (
    ALL_TOPICS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    TOPIC_TYPES,
    TYPE_TOPICS,
    ContractError,
    Envelope,
    parse_message,
)
from contracts.examples import EXAMPLES

# The topics table of shared/CONTRACT.md, copied by hand so the registry cannot drift from it silently.
CONTRACT_TABLE: dict[str, list[str]] = {
    "crm.leads.commands.v1": [
        "crm.pipeline.create", "crm.pipeline.update", "crm.pipeline.delete", "crm.lead.create",
        "crm.lead.update", "crm.lead.assign", "crm.lead.move", "crm.lead.change-pipeline",
        "crm.lead.delete", "crm.lead.restore", "crm.lead.reopen", "crm.lead.mark-duplicate",
        "crm.lead.merge",
    ],
    "crm.leads.events.v1": [
        "crm.pipeline.created", "crm.pipeline.updated", "crm.pipeline.deleted", "crm.lead.created",
        "crm.lead.updated", "crm.lead.assigned", "crm.lead.stage-changed", "crm.lead.deleted",
        "crm.lead.restored", "crm.lead.duplicates-found", "crm.lead.merged", "crm.command.rejected",
    ],
    "crm.qualification.commands.v1": [
        "crm.lead.qualify", "crm.lead.disqualify", "crm.disqualification-reason.add",
        "crm.disqualification-reason.remove",
    ],
    "crm.qualification.events.v1": [
        "crm.company.created", "crm.deal.created", "crm.lead.qualified", "crm.lead.disqualified",
        "crm.qualification.rejected", "crm.command.rejected",
    ],
    "crm.imports.commands.v1": ["crm.import.start", "crm.import.revert", "crm.import.cancel"],
    "crm.imports.events.v1": [
        "crm.import.started", "crm.import.progress", "crm.import.row-rejected", "crm.import.completed",
        "crm.import.failed", "crm.import.reverted",
    ],
    "crm.activity.commands.v1": [
        "crm.task.create", "crm.task.update", "crm.task.complete", "crm.task.cancel", "crm.task.type.add",
    ],
    "crm.activity.events.v1": [
        "crm.task.created", "crm.task.updated", "crm.task.completed", "crm.task.cancelled",
        "crm.task.due-soon", "crm.task.overdue", "crm.lead.activity-summary",
    ],
    "crm.directory.events.v1": [
        "crm.contact.upserted", "crm.company.upserted", "crm.product.upserted",
        "crm.user.licence-granted", "crm.user.licence-revoked", "crm.user.role-granted",
        "crm.user.role-revoked",
    ],
}

# Additions beyond the table, documented in the contracts package.
ADDED: dict[str, list[str]] = {
    "crm.leads.commands.v1": [
        "crm.lead.dismiss-duplicate", "crm.lead.refresh-snapshot", "crm.lead.run-stage-action",
        # issue 20: capture forms and mass actions
        "crm.capture-form.create", "crm.capture-form.update", "crm.capture-form.delete", "crm.leads.bulk-update", "crm.leads.bulk-cancel",
    ],
    "crm.leads.events.v1": [
        "crm.stage-action.failed",
        "crm.capture-form.created", "crm.capture-form.updated", "crm.capture-form.deleted", "crm.leads.bulk-started",
        "crm.leads.bulk-completed",
    ],
    "crm.directory.events.v1": ["crm.user.group-granted", "crm.user.group-revoked"],
    "crm.imports.events.v1": ["crm.command.rejected"],
    "crm.activity.events.v1": ["crm.command.rejected"],
}

EXAMPLE_CASES = [(type_name, topic) for type_name in sorted(EXAMPLES) for topic in TYPE_TOPICS[type_name]]


def _valid(type_name: str = "crm.lead.create") -> dict:
    return json.loads(json.dumps(EXAMPLES[type_name]))


def _reason(topic: str, record: dict | bytes | str) -> str:
    value = json.dumps(record) if isinstance(record, dict) else record
    with pytest.raises(ContractError) as caught:
        parse_message(topic, value)
    return caught.value.reason


def test_registry_has_exactly_the_contract_table_plus_documented_additions():
    assert tuple(CONTRACT_TABLE) == ALL_TOPICS
    for topic, types in CONTRACT_TABLE.items():
        assert list(TOPIC_TYPES[topic]) == types + ADDED.get(topic, [])


def test_every_type_has_an_example():
    assert set(EXAMPLES) == set(TYPE_TOPICS)


@pytest.mark.parametrize(("type_name", "topic"), EXAMPLE_CASES)
def test_example_parses_on_its_topic(type_name: str, topic: str):
    example = EXAMPLES[type_name]

    message = parse_message(topic, json.dumps(example, ensure_ascii=False).encode("utf-8"))

    assert isinstance(message, Envelope)
    assert message.type == type_name
    assert message.id == example["id"]
    assert message.data.TYPE == type_name
    assert parse_message(topic, message.to_json_bytes()) == message


@pytest.mark.parametrize(("type_name", "topic"), EXAMPLE_CASES)
def test_example_keeps_its_data_through_a_round_trip(type_name: str, topic: str):
    message = parse_message(topic, json.dumps(EXAMPLES[type_name]))

    again = json.loads(message.to_json_bytes())

    # Explicitly null and defaulted fields may differ; every given value must survive.
    for name, value in EXAMPLES[type_name]["data"].items():
        if value is not None:
            assert name in again["data"], name


def test_not_json_is_reported():
    assert _reason(LEADS_COMMANDS, b'{"type": ').startswith("not valid JSON: ")


def test_a_json_array_is_not_a_message():
    assert _reason(LEADS_COMMANDS, b"[1, 2]") == "message is not a JSON object"


def test_missing_type_is_reported():
    record = _valid()
    del record["type"]

    assert _reason(LEADS_COMMANDS, record) == "missing attribute 'type'"


def test_unknown_type_lists_the_allowed_ones():
    record = _valid()
    record["type"] = "crm.lead.teleport"

    reason = _reason(LEADS_COMMANDS, record)

    assert reason.startswith("type 'crm.lead.teleport' is not allowed on topic crm.leads.commands.v1 (allowed: ")
    assert "crm.lead.create" in reason


def test_type_from_another_topic_says_where_it_belongs():
    reason = _reason(LEADS_EVENTS, _valid("crm.lead.create"))

    assert "type 'crm.lead.create' is not allowed on topic crm.leads.events.v1" in reason
    assert reason.endswith("it belongs on crm.leads.commands.v1")


def test_missing_required_data_field_names_its_path():
    record = _valid()
    del record["data"]["title"]

    assert _reason(LEADS_COMMANDS, record) == "data.title: Field required"


def test_missing_envelope_attribute_is_reported():
    record = _valid()
    del record["source"]

    assert _reason(LEADS_COMMANDS, record) == "source: Field required"


def test_wrong_enum_value_names_the_field_the_choices_and_the_input():
    record = _valid()
    record["data"]["need_maturity"] = "hot"

    assert _reason(LEADS_COMMANDS, record) == (
        "data.need_maturity: Input should be 'aware', 'interested' or 'urgent' (got 'hot')"
    )


def test_nested_errors_name_the_list_index():
    record = _valid()
    record["data"]["products"] = [{"product_id": "p1"}, {"quantity": 1}]

    assert _reason(LEADS_COMMANDS, record) == "data.products[1].product_id: Field required"


def test_time_without_offset_is_rejected():
    record = _valid()
    record["time"] = "2025-03-14T09:30:00"

    assert _reason(LEADS_COMMANDS, record).startswith("time: Input should have timezone info")


def test_wrong_specversion_is_rejected():
    record = _valid()
    record["specversion"] = "0.3"

    assert _reason(LEADS_COMMANDS, record).startswith("specversion: Input should be '1.0'")


def test_several_problems_are_all_reported():
    record = _valid()
    del record["id"]
    del record["data"]["title"]

    assert _reason(LEADS_COMMANDS, record) == "id: Field required; data.title: Field required"


def test_unknown_topic_is_reported():
    assert _reason("crm.nope.v1", _valid()).startswith("unknown topic 'crm.nope.v1'")
