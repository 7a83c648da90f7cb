"""The records the duplicate check publishes, pinned byte for byte.

``crm.lead.created`` with its duplicates and the ``crm.lead.duplicates-found`` notice that follows (a lead
that finds a stored one, two leads of one batch that find each other), and the change of their own they
are for a lead the same batch also moved: every record's key, headers' type and value, as published
before the duplicate check's cost was cut (issue 21). A change that alters one byte of these fails here.
Regenerate ``duplicate_records.json`` only for a change of the contract that means to alter them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS
from tests.component.leads.test_batch import inbound, leads_handlers
from tests.integration.leads_helpers import directory_event, payload
from tests.support import command

GOLDEN = Path(__file__).with_name("duplicate_records.json")
NOW = datetime(2026, 5, 4, 9, 30, 15, 250000, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _create(lead_id: str, n: int, **data):
    message = command(payload("crm.lead.create", lead_id=lead_id, **data), actor="bob", id=f"00000000-0000-4000-8000-{n:012d}")
    if n % 2:  # half the causes carry a trace, half do not: both forms of the envelope are pinned
        message.traceparent, message.tracestate = TRACE, "k=v"
    return message


def _batches():
    grant = directory_event("crm.user.licence-granted", user_id="bob", licence="crm")
    ann = {"name": "Ann Lee", "email": "ann@example.com", "phone": "+7 912 000-00-01"}
    first = [(DIRECTORY_EVENTS, grant), (LEADS_COMMANDS, _create("D1", 1, title="Form", contact=ann))]
    second = [
        # finds D1 stored, by email, phone and name
        (LEADS_COMMANDS, _create("D2", 2, title="Call", source="web", contact={**ann, "email": "ANN@example.com"})),
        # D3 and D4 find each other in this batch (by name), and D1 and D2 by name too
        (LEADS_COMMANDS, _create("D3", 3, title="Chat", contact={"name": "Lee Ann"})),
        (LEADS_COMMANDS, _create("D4", 4, title="Mail", contact={"name": "ann  lee", "email": "other@example.com"})),
        # D5 is created and moved here: its duplicates are a change of their own
        (LEADS_COMMANDS, _create("D5", 5, title="Visit", contact={"phone": "8 (912) 000-00-01"})),
        (LEADS_COMMANDS, command(payload("crm.lead.move", lead_id="D5", stage_id="processing"), actor="bob",
                                 id="00000000-0000-4000-8000-000000000006")),
        # no duplicate: a plain creation beside them
        (LEADS_COMMANDS, _create("D6", 7, title="Alone", contact={"name": "Nobody Else"})),
    ]
    return first, second


def _records(out) -> list[dict]:
    return [
        {"key": o.key_bytes().decode(), "type": o.message.type, "value": (o.value or o.message.to_json_bytes()).decode()}
        for o in out
    ]


async def test_the_duplicate_check_publishes_the_very_bytes_it_did(settings_for):
    first, second = _batches()
    async with leads_handlers(settings_for, "dup_records", clock=lambda: NOW) as (handlers, _):
        await handlers.on_batch(inbound(first))
        records = _records(await handlers.on_batch(inbound(second)))
    by_key: dict[str, list[dict]] = {}
    for record in records:  # Kafka keeps order per key, not across keys
        by_key.setdefault(record["key"], []).append(record)
    expected = json.loads(GOLDEN.read_text())
    assert sorted(by_key) == sorted(expected)
    for key, got in by_key.items():
        assert [r["type"] for r in got] == [r["type"] for r in expected[key]], key
        for mine, theirs in zip(got, expected[key], strict=True):
            assert mine["value"] == theirs["value"], (key, mine["type"])
    # What the golden file holds is what it says: duplicates in the creations, the notices, a change of their own.
    assert {key: [r["type"] for r in found] for key, found in expected.items()} == {
        "D2": ["crm.lead.created", "crm.lead.duplicates-found"],
        "D3": ["crm.lead.created", "crm.lead.duplicates-found"],
        "D4": ["crm.lead.created", "crm.lead.duplicates-found"],
        "D5": ["crm.lead.created", "crm.lead.stage-changed", "crm.lead.updated", "crm.lead.duplicates-found", "crm.lead.updated"],
        "D6": ["crm.lead.created"],
    }
    assert '"traceparent":"%s"' % TRACE in expected["D3"][1]["value"] and "traceparent" not in expected["D2"][1]["value"]
