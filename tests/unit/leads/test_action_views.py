"""The stage-actions consumer's reading of the events topic: a narrow view of each entry, the card read whole only when asked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import ContractError, build_message, parse_message
from contracts.leads import CreateLead
from contracts.rejections import CommandRejected
from contracts.topics import LEADS_EVENTS
from services.leads import domain as d
from services.leads.actions.views import EventView, card_of, parse_event
from services.leads.messages import Cards, to_messages

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ACTOR = d.Actor(user_id="u-1", licensed=True)


def _created_value(lead_id: str = "L1") -> bytes:
    pipeline = d.default_pipeline(NOW)
    command = build_message(CreateLead(lead_id=lead_id, title="Form"), source="test", actorid="u-1")
    outcome = d.create_lead(ACTOR, lead_id, {"title": "Form", "contact": {"name": "Ann", "email": "ann@example.com"}}, pipeline, NOW)
    [event] = Cards().messages(outcome.events, command, "crm/leads", lead_id, NOW)
    return event.value()


def test_an_entry_event_is_read_as_its_stage_and_its_card_equals_the_contract_s() -> None:
    value = _created_value()
    view = parse_event(LEADS_EVENTS, value)
    whole = parse_message(LEADS_EVENTS, value)
    assert isinstance(view, EventView)
    assert (view.id, view.type, view.time, view.data.lead_id, view.data.pipeline_id, view.data.stage_id, view.data.version) == (
        whole.id, "crm.lead.created", whole.time, "L1", whole.data.pipeline_id, whole.data.stage_id, 1,
    )
    assert card_of(view) == card_of(whole) == whole.data.model_dump(mode="json", exclude={"changed_fields"})
    assert card_of(view)["contact"]["email"] == "ann@example.com"


def test_a_stage_change_is_read_with_the_stage_it_entered() -> None:
    command = build_message(CreateLead(lead_id="L2", title="x"), source="test", actorid="u-1")
    changed = d.StageChanged("L2", "default", "new", "processing", "new", "in_progress", 3)
    [message] = to_messages([changed], command, "crm/leads", "L2", NOW)
    view = parse_event(LEADS_EVENTS, message.to_json_bytes())
    assert isinstance(view, EventView)
    assert (view.data.pipeline_id, view.data.to_stage_id, view.data.version) == ("default", "processing", 3)


def test_other_types_are_read_whole_and_an_unreadable_entry_is_refused_by_the_contract() -> None:
    refusal = build_message(
        CommandRejected(command_id="c-1", command_type="crm.lead.run-stage-action", reason_code="validation", message="no"),
        source="crm/leads",
    )
    read = parse_event(LEADS_EVENTS, refusal.to_json_bytes())
    assert not isinstance(read, EventView) and read.data.command_id == "c-1"
    broken = _created_value().replace(b'"version":1', b'"version":"one"')
    with pytest.raises(ContractError, match="version"):
        parse_event(LEADS_EVENTS, broken)
