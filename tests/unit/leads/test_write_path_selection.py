"""The leads write path parses only the upstream events it acts on: a qualification's company and deal, and task events, pass unparsed."""

from __future__ import annotations

from contracts import TOPIC_TYPES, build_message
from contracts.directory import UserLicenceGranted
from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_COMMANDS, QUALIFICATION_EVENTS
from services.leads.handlers import LEAD_SCOPED, PASSED_OVER, LeadsHandlers
from tests.unit.ops.test_batch_select import Record, selected  # the consumed record, and what a processor makes of them


def test_what_is_passed_over_is_what_the_write_path_never_acts_on():
    assert {"crm.company.created", "crm.deal.created", "crm.task.created", "crm.task.completed", "crm.task.overdue"} <= PASSED_OVER
    acted_on = {"crm.lead.qualified", "crm.lead.disqualified", "crm.lead.activity-summary", "crm.company.upserted",
                "crm.user.licence-granted", *LEAD_SCOPED, *TOPIC_TYPES[LEADS_COMMANDS], *TOPIC_TYPES[DIRECTORY_EVENTS]}
    assert not acted_on & PASSED_OVER


async def test_the_selector_passes_company_deal_and_task_events_over_unparsed_and_still_parks_a_broken_qualified_event():
    handlers = LeadsHandlers.__new__(LeadsHandlers)  # only its selector is used here
    grant = build_message(UserLicenceGranted(user_id="bob", licence="crm"), source="test").to_json_bytes()
    seen, parked = await selected(handlers.wanted_types, [
        Record(QUALIFICATION_EVENTS, 0, 0, b"not json", [("ce-type", b"crm.company.created")]),  # never parsed
        Record(QUALIFICATION_EVENTS, 0, 1, b"not json", [("ce-type", b"crm.deal.created")]),  # never parsed
        Record(ACTIVITY_EVENTS, 0, 2, b"not json", [("ce-type", b"crm.task.created")]),  # never parsed
        Record(DIRECTORY_EVENTS, 0, 3, grant, [("ce-type", b"crm.user.licence-granted")]),
        Record(QUALIFICATION_EVENTS, 0, 4, b"{broken", [("ce-type", b"crm.lead.qualified")]),  # wanted: parked
        Record(ACTIVITY_EVENTS, 0, 5, b"{broken", [("ce-type", b"crm.lead.activity-summary")]),  # wanted: parked
        Record(LEADS_COMMANDS, 0, 6, b"{broken", [("ce-type", b"crm.lead.nonsense")]),  # unknown type: parked
    ])
    assert seen == ["crm.user.licence-granted"]
    assert parked == [(4, "invalid_message"), (5, "invalid_message"), (6, "invalid_message")]
