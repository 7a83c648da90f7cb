"""The importer parses only the lead and directory events it acts on: a stage change or a contact update passes unparsed."""

from __future__ import annotations

from contracts import build_message
from contracts.directory import UserLicenceGranted
from contracts.topics import DIRECTORY_EVENTS, IMPORTS_COMMANDS, LEADS_EVENTS
from crmkit.messaging import BatchProcessor, Health, Inbound
from crmkit.metrics import Metrics
from crmkit.settings import ServiceSettings
from services.importer.handlers import PASSED_OVER, ImporterHandlers
from tests.unit.ops.test_batch_select import FakeBus, Record  # the consumed record and the bus, as the processor sees them


def test_what_is_passed_over_is_what_the_importer_never_acts_on():
    assert {"crm.lead.stage-changed", "crm.lead.assigned", "crm.contact.upserted", "crm.pipeline.updated",
            "crm.lead.deleted", "crm.lead.restored"} <= PASSED_OVER
    acted_on = {"crm.lead.created", "crm.lead.updated", "crm.lead.duplicates-found", "crm.command.rejected", "crm.user.licence-granted",
                "crm.user.role-granted", "crm.import.start", "crm.import.cancel", "crm.import.revert"}
    assert not acted_on & PASSED_OVER


async def test_the_selector_passes_stage_changes_over_unparsed_and_still_parks_a_broken_created_event():
    seen: list[Inbound] = []

    async def handler(batch: list[Inbound]):
        seen.extend(batch)
        return []

    handlers = ImporterHandlers.__new__(ImporterHandlers)  # only its selector is used here
    bus = FakeBus()
    processor = BatchProcessor(ServiceSettings(), bus, handler, Metrics("test"), Health(), "t",  # type: ignore[arg-type]
                               select=handlers.wanted_types)
    grant = build_message(UserLicenceGranted(user_id="bob", licence="crm"), source="test").to_json_bytes()
    await processor.process([
        Record(LEADS_EVENTS, 0, 0, b"not json", [("ce-type", b"crm.lead.stage-changed")]),  # never parsed
        Record(DIRECTORY_EVENTS, 0, 1, b"not json", [("ce-type", b"crm.contact.upserted")]),  # never parsed
        Record(DIRECTORY_EVENTS, 0, 2, grant, [("ce-type", b"crm.user.licence-granted")]),
        Record(LEADS_EVENTS, 0, 3, b"{broken", [("ce-type", b"crm.lead.created")]),  # wanted: parked
        Record(IMPORTS_COMMANDS, 0, 4, b"{broken", [("ce-type", b"crm.import.nonsense")]),  # unknown type: parked
    ])
    assert [item.message.type for item in seen] == ["crm.user.licence-granted"]
    assert bus.parked == [(3, "invalid_message"), (4, "invalid_message")]
