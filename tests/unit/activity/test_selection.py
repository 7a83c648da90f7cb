"""The activity service parses only what it acts on: a qualification's company, deal and outcome pass unparsed."""

from __future__ import annotations

from contracts import build_message
from contracts.directory import UserLicenceGranted
from contracts.topics import ACTIVITY_COMMANDS, DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_EVENTS
from services.activity.handlers import ActivityHandlers
from services.activity.messages import LEAD_FACTS, PASSED_OVER, TASK_COMMANDS
from tests.unit.ops.test_batch_select import Record, selected


def test_what_is_passed_over_is_what_the_activity_service_never_acts_on():
    assert {"crm.company.created", "crm.deal.created", "crm.lead.qualified", "crm.lead.assigned", "crm.contact.upserted"} <= PASSED_OVER
    acted_on = LEAD_FACTS | TASK_COMMANDS | {"crm.task.type.add", "crm.lead.disqualified", "crm.user.licence-granted",
                                             "crm.user.role-revoked"}
    assert not acted_on & PASSED_OVER


async def test_the_selector_passes_a_deal_over_unparsed_and_still_parks_a_broken_disqualification():
    handlers = ActivityHandlers.__new__(ActivityHandlers)  # only its selector is used here
    grant = build_message(UserLicenceGranted(user_id="bob", licence="crm"), source="test").to_json_bytes()
    seen, parked = await selected(handlers.wanted_types, [
        Record(QUALIFICATION_EVENTS, 0, 0, b"not json", [("ce-type", b"crm.deal.created")]),  # never parsed
        Record(LEADS_EVENTS, 0, 1, b"not json", [("ce-type", b"crm.lead.assigned")]),  # never parsed
        Record(DIRECTORY_EVENTS, 0, 2, grant, [("ce-type", b"crm.user.licence-granted")]),
        Record(QUALIFICATION_EVENTS, 0, 3, b"{broken", [("ce-type", b"crm.lead.disqualified")]),  # wanted: parked
        Record(ACTIVITY_COMMANDS, 0, 4, b"{broken", [("ce-type", b"crm.task.nonsense")]),  # unknown type: parked
    ])
    assert seen == ["crm.user.licence-granted"]
    assert parked == [(3, "invalid_message"), (4, "invalid_message")]
