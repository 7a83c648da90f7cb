"""Unit tests of the contract models, the envelope and the registry helpers (no I/O)."""

import ast
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel

import contracts
from contracts import (
    ALL_TOPICS,
    LEADS_COMMANDS,
    PAYLOADS,
    CommandRejected,
    ContractError,
    CreateLead,
    CreatePipeline,
    DealCreated,
    LeadStatus,
    MoveLead,
    UserRoleGranted,
    build_message,
    dlq_topic,
    envelope_class,
    parse_message,
    payload_class,
    topics_for,
)

PACKAGE_DIR = Path(contracts.__file__).parent


def _models_reachable_from(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for candidate in _types_in(field.annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                _models_reachable_from(candidate, seen)


def _types_in(annotation: object) -> list[object]:
    args = getattr(annotation, "__args__", ())
    return [annotation, *[t for arg in args for t in _types_in(arg)]]


def _all_models() -> list[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    for type_name in PAYLOADS:
        _models_reachable_from(envelope_class(type_name), seen)
    return sorted(seen, key=lambda m: m.__name__)


@pytest.mark.parametrize("model", _all_models(), ids=lambda m: m.__name__)
def test_every_field_and_model_is_described(model: type[BaseModel]):
    undescribed = [name for name, field in model.model_fields.items() if not field.description]
    assert undescribed == []
    assert model.__doc__ and model.__doc__.strip()


def test_contracts_import_only_pydantic_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"pydantic", "contracts"}
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{path.name} imports {roots}"


def test_every_module_starts_with_a_one_line_docstring():
    for path in PACKAGE_DIR.glob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring and "\n" not in docstring.strip(), path.name


def test_payload_types_are_unique_and_registered():
    for type_name, payload in PAYLOADS.items():
        assert payload.TYPE == type_name
        assert payload_class(type_name) is payload
        assert envelope_class(type_name).model_fields["data"].annotation is payload


def test_unknown_type_lookups_raise_contract_error():
    with pytest.raises(ContractError, match="unknown message type 'crm.nope'"):
        payload_class("crm.nope")
    with pytest.raises(ContractError, match="unknown message type 'crm.nope'"):
        envelope_class("crm.nope")


def test_command_rejected_is_allowed_on_every_events_topic_that_takes_commands():
    assert topics_for(CommandRejected.TYPE) == (
        "crm.leads.events.v1",
        "crm.qualification.events.v1",
        "crm.imports.events.v1",
        "crm.activity.events.v1",
    )


def test_dlq_topic_and_topic_names():
    assert dlq_topic(LEADS_COMMANDS) == "crm.leads.commands.v1.dlq"
    assert len(set(ALL_TOPICS)) == 9
    assert all(topic.startswith("crm.") and topic.endswith(".v1") for topic in ALL_TOPICS)


def test_build_message_fills_id_time_and_subject_from_the_payload():
    before = datetime.now(UTC)

    message = build_message(MoveLead(lead_id="L1", stage_id="processing"), source="crm/ui", actorid="u1")

    assert message.type == "crm.lead.move"
    assert message.specversion == "1.0"
    assert message.subject == "L1"
    assert message.key_bytes() == b"L1"
    assert message.actorid == "u1"
    assert len(message.id) == 36
    assert message.time >= before and message.time.tzinfo is not None
    assert isinstance(message, envelope_class("crm.lead.move"))


def test_build_message_keeps_given_attributes_and_keys_by_id_without_a_lead():
    at = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=3)))

    message = build_message(
        UserRoleGranted(user_id="u1", role="admin"),
        source="ext/directory",
        id="m-1",
        time=at,
        correlationid="c-1",
        causationid="m-0",
    )

    assert (message.id, message.time, message.correlationid, message.causationid) == ("m-1", at, "c-1", "m-0")
    assert message.subject is None
    assert message.key_bytes() == b"m-1"


def test_to_json_bytes_is_compact_keeps_the_offset_and_omits_unset_attributes():
    at = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=3)))
    message = build_message(CreateLead(title="Routers"), source="ext/form", id="m-1", time=at)

    raw = message.to_json_bytes()
    record = json.loads(raw)

    assert b" " not in raw.replace(b'"Routers"', b"")
    assert record["time"] == "2025-03-14T09:30:00+03:00"
    assert "subject" not in record and "actorid" not in record
    assert record["data"]["title"] == "Routers"


def test_required_nullable_fields_survive_serialization():
    deal = DealCreated(
        deal_id="d1", lead_id="L1", company_id="c1", products=[], title="t", responsible_id="u1",
        source=None, utm_source=None, utm_medium=None, utm_campaign=None, deal_pipeline_id="default",
    )
    message = build_message(deal, source="crm/qualification")

    parsed = parse_message("crm.qualification.events.v1", message.to_json_bytes())

    assert parsed.data == deal


def test_cloudevents_extensions_are_kept_and_unknown_data_fields_ignored():
    record = {
        "specversion": "1.0", "id": "m-1", "type": "crm.lead.move", "source": "s",
        "time": "2025-03-14T09:30:00Z", "traceparent": "00-abc-def-01", "partitionkey": "L1",
        "data": {"lead_id": "L1", "stage_id": "new", "added_in_a_later_minor": True},
    }

    message = parse_message(LEADS_COMMANDS, json.dumps(record))

    assert message.model_extra == {"partitionkey": "L1"}  # traceparent is a declared attribute now
    assert message.traceparent == "00-abc-def-01"
    assert json.loads(message.to_json_bytes())["partitionkey"] == "L1"
    assert json.loads(message.to_json_bytes())["traceparent"] == "00-abc-def-01"
    assert message.data == MoveLead(lead_id="L1", stage_id="new")


def test_an_unreadable_secret_is_named_and_not_repeated():
    def refusal(data: dict) -> str:
        record = {"specversion": "1.0", "id": "m-1", "type": data.pop("type"), "source": "s", "data": data}
        with pytest.raises(ContractError) as refused:
            parse_message(LEADS_COMMANDS, json.dumps(record))
        return str(refused.value)

    form = refusal({"type": "crm.capture-form.create", "name": "Form", "secret_key": 1234567890123456789})
    assert "secret_key" in form and "1234567890123456789" not in form
    hook = {"action_id": "h", "kind": "webhook", "url": "https://erp.example.ru/h", "secret": 98765432109876543}
    stages = [{"stage_id": "new", "name": "New", "status": "new", "on_enter": [hook]}]
    pipeline = refusal({"type": "crm.pipeline.create", "pipeline_id": "p", "name": "P", "stages": stages})
    assert "secret" in pipeline and "98765432109876543" not in pipeline
    other = refusal({"type": "crm.capture-form.create", "name": "Form", "rate_limit_per_minute": "many"})
    assert "(got 'many')" in other  # other fields still say what was sent


def test_create_pipeline_gets_the_default_stages_when_none_are_given():
    stages = CreatePipeline(name="Wholesale").stages

    assert [(s.stage_id, s.name, s.status) for s in stages] == [
        ("new", "New", LeadStatus.new),
        ("processing", "Processing", LeadStatus.in_progress),
        ("qualified", "Qualified", LeadStatus.qualified),
        ("unqualified", "Unqualified", LeadStatus.unqualified),
    ]
    assert CreatePipeline(name="Wholesale").transition_mode == "manual"
