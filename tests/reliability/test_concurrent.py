"""Scenario 6: one lead changed from three directions at once; the final card holds all three changes."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from contracts import build_message
from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_EVENTS
from services.leads.repository import LeadRepository
from tests.integration.leads_helpers import directory_event, payload
from tests.reliability.harness import LoadProducer, Scenario, envelope_record, scaled, until
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS, create, lead_ids, move

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(240)]


def contact(lead_id: str, name: str, version: int):
    record = directory_event("crm.contact.upserted", contact_id=f"C-{lead_id}", name=name, version=version)
    return envelope_record(DIRECTORY_EVENTS, record.model_copy(update={"subject": f"C-{lead_id}"}))


def summary(lead_id: str, due_at: datetime):
    data = payload("crm.lead.activity-summary", lead_id=lead_id, next_due_at=due_at, next_task_id=f"T-{lead_id}",
                   open_count=2, overdue_count=0, state="on_time")
    return envelope_record(ACTIVITY_EVENTS, build_message(data, source="crm/activity"))


async def test_three_directions_at_once(scenario: Scenario) -> None:
    # Each lead is changed from three directions at once; the point is the race, not the volume.
    total = scaled(300, minimum=30)
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    for _ in range(2):  # the directory record and the lead may belong to different instances
        await scenario.start_service("leads")

    ids = lead_ids(total, "X")
    await scenario.producer.send([contact(i, f"Old Name {i}", 1) for i in ids])
    await scenario.producer.send([create(i, contact={"contact_id": f"C-{i}"}) for i in ids])
    await until(lambda: len(events.created) >= total, timeout=120, what="the leads created")

    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    streams = [
        [move(i, "processing") for i in ids],
        [summary(i, due) for i in ids],
        [contact(i, f"New Name {i}", 2) for i in ids],
    ]
    for stream in streams:
        random.shuffle(stream)
    producers = [LoadProducer(scenario.stack.kafka, scenario.prefix) for _ in streams]
    try:
        await asyncio.gather(*(p.send(s, chunk=50) for p, s in zip(producers, streams)))
    finally:
        for p in producers:
            await p.close()

    def complete(card: dict) -> bool:
        return (
            card.get("stage_id") == "processing"
            and (card.get("activity") or {}).get("open_count") == 2
            and (card.get("contact") or {}).get("name", "").startswith("New Name")
        )

    def missing() -> str:
        cards = [events.cards.get(i, {}) for i in ids]
        return (f"not moved {sum(c.get('stage_id') != 'processing' for c in cards)}, "
                f"no summary {sum((c.get('activity') or {}).get('open_count') != 2 for c in cards)}, "
                f"not renamed {sum(not (c.get('contact') or {}).get('name', '').startswith('New Name') for c in cards)}")

    try:
        await until(lambda: all(complete(events.cards.get(i, {})) for i in ids), timeout=120,
                    what="every lead's latest card to hold the move, the summary and the rename")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {missing()}") from None
    repository = LeadRepository(scenario._mongo[scenario.db("leads")])
    stored = {i: await repository.get(i) for i in ids}
    stored_ok = [i for i, lead in stored.items() if lead is not None and lead.stage_id == "processing"
                 and lead.activity is not None and lead.activity.open_count == 2
                 and lead.contact is not None and lead.contact.name == f"New Name {i}"]
    scenario.report(sent=total * 3, applied=len(stored_ok), duplicates=events.duplicates, lost=total - len(stored_ok),
                    dlq=len(dlq.records), extra=f"versions={sorted(set(events.last_version[i] for i in ids))}")
    assert len(stored_ok) == total, [stored[i] for i in ids if i not in stored_ok][:1]
    assert not events.order_violations and not events.rejections and not dlq.records
