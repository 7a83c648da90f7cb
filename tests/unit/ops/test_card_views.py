"""Activity's and qualification's reading of the leads topic: card events as a narrow view, the same facts as the contract's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contracts import ContractError, build_message, parse_message
from contracts.leads import CreateLead
from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from services.activity import messages as activity
from services.leads import domain as d
from services.leads.messages import CardEvent, Cards
from services.qualification import messages as qualification

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ACTOR = d.Actor(user_id="u-1", licensed=True)
READERS = [
    pytest.param(activity.parse_record, activity.CardFacts, lambda m: activity.lead_facts(m.data, m.type), id="activity"),
    pytest.param(qualification.parse_record, qualification.CardFacts, qualification.lead_change, id="qualification"),
]


def _values() -> list[bytes]:
    """A created card with contact and products, then its assignment: the updated card and the stage change."""
    pipeline = d.default_pipeline(NOW)
    command = build_message(CreateLead(lead_id="L1", title="Form"), source="test", actorid="u-1")
    fields = {"title": "Form", "contact": {"name": "Ann", "email": "ann@example.com"}, "source": "expo",
              "products": [{"product_id": "P1", "quantity": 2}]}
    created = d.create_lead(ACTOR, "L1", fields, pipeline, NOW)
    assigned = d.assign_lead(ACTOR, created.lead, pipeline, "u-2", NOW)
    messages = Cards().messages([*created.events, *assigned.events], command, "crm/leads", "L1", NOW)
    return [m.value() if isinstance(m, CardEvent) else m.to_json_bytes() for m in messages]


@pytest.mark.parametrize(("parse", "view", "facts"), READERS)
def test_card_events_are_read_as_the_view_with_the_facts_the_contract_gives(parse, view, facts) -> None:
    values = _values()
    kinds = [parse_message(LEADS_EVENTS, v).type for v in values]
    assert {"crm.lead.created", "crm.lead.updated", "crm.lead.stage-changed"} <= set(kinds)
    for value in values:
        read, whole = parse(LEADS_EVENTS, value), parse_message(LEADS_EVENTS, value)
        assert isinstance(read, view) == (whole.type in ("crm.lead.created", "crm.lead.updated"))
        assert (read.id, read.type, read.time, read.subject) == (whole.id, whole.type, whole.time, whole.subject)
        assert facts(read) == facts(whole)


@pytest.mark.parametrize(("parse", "view", "facts"), READERS)
def test_an_unreadable_card_is_refused_by_the_contract_and_other_topics_are_read_whole(parse, view, facts) -> None:
    broken = json.loads(_values()[0])
    broken["data"]["version"] = "one"
    with pytest.raises(ContractError, match="version"):
        parse(LEADS_EVENTS, json.dumps(broken).encode())
    command = build_message(CreateLead(lead_id="L1", title="Form"), source="test", actorid="u-1").to_json_bytes()
    assert parse(LEADS_COMMANDS, command) == parse_message(LEADS_COMMANDS, command)
