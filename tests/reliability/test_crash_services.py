"""Scenarios 8-10: SIGKILL the importer, qualification and activity services half way under load.

Each service runs as its own process beside the leads service; it is killed once, restarted at
once, and afterwards every import row, qualification or task has taken effect exactly once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from contracts.topics import ACTIVITY_EVENTS, IMPORTS_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from services.importer.settings import ImporterSettings
from services.qualification.domain import Deal
from services.qualification.repository import ClosingRepository, DealRepository
from tests.reliability.harness import Scenario, scaled, until
from tests.reliability.leads_load import creates, lead_ids
from tests.reliability.services_load import (
    ACTIVITY_DLQ,
    ACTIVITY_TOPICS,
    IMPORT_DLQ,
    IMPORT_TOPICS,
    QUALIFICATION_DLQ,
    QUALIFICATION_TOPICS,
    create_tasks,
    expected_deal,
    imported_lead_ids,
    kill_half_way,
    qualify,
    start_import,
    task_ids,
    tripwire_events,
    typed_events,
    write_import_csv,
)

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

CHUNK_ROWS = ImporterSettings.model_fields["chunk_rows"].default

QUALIFY_STREAM_S = 20.0  # the qualify commands are spread over this long, so the kill lands mid-stream
TASK_STREAM_S = 20.0


async def create_leads(scenario: Scenario, events, ids: list[str], projected: tuple[str, str]) -> None:
    """Leads through the leads service, until it announced each and ``projected`` (service, collection) holds them."""
    await scenario.producer.send(creates(ids), rate=2500)
    await until(lambda: len(events.created) >= len(ids), timeout=120, what=f"{len(ids)} leads created")
    service, collection = projected
    await until(lambda: _at_least(scenario.count_in(service, collection), len(ids)), timeout=60,
                what=f"{len(ids)} leads projected by {service}")


async def _at_least(count, expected: int) -> bool:
    return await count >= expected


async def test_importer_crash_under_load(scenario: Scenario) -> None:
    total = scaled(20_000)
    rng = random.Random()
    await scenario.create_topics(IMPORT_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    # What the importer sent (a resent row keeps its command id); the importer dies from this tail.
    tripwire = await tripwire_events(scenario, LEADS_COMMANDS)
    sent = tripwire.ledger
    imports = await typed_events(scenario, IMPORTS_EVENTS)
    dlq = await scenario.dlq(IMPORT_DLQ)
    run_dir = scenario.stack.config.run_dir
    await scenario.start_service("leads")
    # A job's lease passes to the restarted process once it expires: 5 s instead of 30 s keeps the run short.
    importer = await scenario.start_service(
        "importer", IMPORTER_JOB_LEASE_S="5", IMPORTER_POLL_INTERVAL_S="0.5", IMPORTER_UPLOADS_DIR=str(run_dir / "uploads"),
        IMPORTER_FILE_ROOTS=json.dumps([str(run_dir)]),
    )

    path = run_dir / f"{scenario.prefix}leads.csv"
    rows = await asyncio.to_thread(write_import_csv, path, total, scenario.prefix.strip("."))
    import_id = f"imp-{scenario.prefix.strip('.')}"
    ids = imported_lead_ids(import_id, rows)
    started = time.monotonic()
    await scenario.producer.send([start_import(import_id, path)])
    all_sent = lambda: sent.unique >= total  # noqa: E731
    # Killed as the first command of a chunk half way through reaches the test's tail. The tail lags
    # the importer, so the kill lands either inside that chunk (its checkpoint not stored: the
    # restarted importer sends the chunk again, "rows resent" > 0) or a chunk later (nothing resent);
    # the report names the checkpoint found, and either way every row must be applied exactly once.
    jobs = scenario.collection("importer", "imports")

    async def checkpoint() -> str:
        job = await jobs.find_one({"_id": import_id}) or {}
        return f"checkpoint: {job.get('rows_read')} rows read"

    killed = await kill_half_way(scenario, importer, tripwire, total, sent, all_sent, what="rows sent", rng=rng,
                                 align=CHUNK_ROWS, after_kill=checkpoint)
    finished = lambda: imports.things("crm.import.completed") | imports.things("crm.import.failed")  # noqa: E731
    await until(finished, timeout=240, what=f"import {import_id} to finish")
    took = time.monotonic() - started
    await until(lambda: len(events.created) >= total, timeout=60, what=f"a crm.lead.created for each of {total} leads")

    stored = await scenario.ids_in("leads", "leads")
    expected = set(ids)
    lost = expected - set(stored)
    completed = imports.latest["crm.import.completed"].get(import_id, {})
    job = await jobs.find_one({"_id": import_id}) or {}
    scenario.report(
        sent=total, applied=len(stored), duplicates=events.duplicates, lost=len(lost), dlq=len(dlq.records),
        extra=(f"{killed}; import took {took:.1f}s; rows resent={sent.duplicates}; completed created={completed.get('created')} "
               f"rows_total={completed.get('rows_total')}; job rows_read={job.get('rows_read')} sent={job.get('sent')}; "
               f"rejections={len(events.rejections)}"),
    )
    assert not imports.things("crm.import.failed"), imports.latest["crm.import.failed"]
    assert len(stored) == total and set(stored) == expected, f"lost {sorted(lost)[:5]}, extra {sorted(set(stored) - expected)[:5]}"
    assert set(events.created) == expected
    assert not events.created_twice, f"leads created twice with different event ids: {events.created_twice[:5]}"
    assert not events.rejections, events.rejections[:3]
    assert not imports.doubled("crm.import.completed"), "one crm.import.completed, however often it was published"
    assert (completed["rows_total"], completed["created"], completed["updated"], completed["rejected"]) == (total, total, 0, 0), completed
    assert not imports.things("crm.import.row-rejected")
    assert (job["rows_read"], job["sent"]) == (total, total), "a resent chunk is counted once"
    assert not dlq.records, [r.reason for r in dlq.records[:3]]


async def _all_deals(repo: DealRepository) -> list[Deal]:
    """Every stored deal, read as GET /deals reads them, page by page."""
    found: list[Deal] = []
    cursor = None
    while True:
        page, cursor = await repo.list(cursor=cursor, limit=500)
        found.extend(page)
        if cursor is None:
            return found


async def test_qualification_crash_under_load(scenario: Scenario) -> None:
    total = scaled(1_000)
    rng = random.Random()
    await scenario.create_topics(QUALIFICATION_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    outcomes = await typed_events(scenario, QUALIFICATION_EVENTS)
    dlq = await scenario.dlq(QUALIFICATION_DLQ)
    await scenario.start_service("leads")
    qualification = await scenario.start_service("qualification")

    ids = lead_ids(total, "Q")
    await create_leads(scenario, events, ids, ("qualification", "leads"))
    started = time.monotonic()
    load = asyncio.create_task(scenario.producer.send([qualify(i) for i in ids], rate=total / QUALIFY_STREAM_S, chunk=50))
    done = lambda: len(outcomes.things("crm.lead.qualified")) >= total  # noqa: E731
    killed = await kill_half_way(scenario, qualification, lambda: scenario.count_in("qualification", "closings"), total,
                                 outcomes, done, what="qualifications stored", rng=rng)
    await asyncio.wait_for(load, 120)
    await until(done, timeout=180, what=f"a crm.lead.qualified for each of {total} leads")
    expected = set(ids)

    def unqualified_cards() -> list[str]:
        return [i for i in ids if events.cards.get(i, {}).get("status") != "qualified"]

    await until(lambda: not unqualified_cards(), timeout=120, what="every lead's card to show it qualified")
    took = time.monotonic() - started

    deals = await _all_deals(DealRepository(scenario.collection("qualification", "deals").database))
    deal_leads = [d.lead_id for d in deals]
    companies = await scenario.collection("qualification", "companies").count_documents({"origin": "qualification"})
    stored_closings = await ClosingRepository(scenario.collection("qualification", "closings").database).get_many(ids)
    closings = [{"_id": lid, "state": s.closing.state} for lid, s in stored_closings.items()]
    stored = await scenario.docs_in("leads", "leads", {"status": 1})
    not_qualified = [d["_id"] for d in stored if d.get("status") != "qualified"]
    lost = expected - set(deal_leads)
    doubled = {kind: outcomes.doubled(kind) for kind in ("crm.lead.qualified", "crm.deal.created", "crm.company.created")}
    scenario.report(
        sent=total, applied=len(deals), duplicates=outcomes.duplicates, lost=len(lost), dlq=len(dlq.records),
        extra=(f"{killed}; qualifying took {took:.1f}s; qualified events={len(outcomes.things('crm.lead.qualified'))} "
               f"(+{outcomes.duplicates} redelivered) companies={companies} leads not qualified={len(not_qualified)} "
               f"rejected={outcomes.types['crm.qualification.rejected'] + outcomes.types['crm.command.rejected']}"),
    )
    assert len(deals) == total and set(deal_leads) == expected, f"lost {sorted(lost)[:5]}, deals {len(deals)}"
    assert all((d.deal_id, d.company_id) == expected_deal(d.lead_id) for d in deals)
    assert companies == total
    assert len(closings) == total and all(c["state"] == "done" for c in closings), [c for c in closings if c["state"] != "done"][:3]
    assert outcomes.things("crm.lead.qualified") == expected
    assert outcomes.things("crm.deal.created") == expected and outcomes.things("crm.company.created") == expected
    assert not any(doubled.values()), f"one event per lead and type after dedupe by id: {doubled}"
    assert not outcomes.types["crm.qualification.rejected"] and not outcomes.types["crm.command.rejected"], (
        list(outcomes.latest["crm.qualification.rejected"].values())[:3]
    )
    assert len(stored) == total and not not_qualified, f"not qualified in the leads service: {not_qualified[:5]}"
    assert all(events.cards[i].get("qualified_deal_id") == expected_deal(i)[0] for i in ids)
    assert not events.created_twice and not events.rejections, events.rejections[:3]
    assert not dlq.records, [r.reason for r in dlq.records[:3]]


async def test_activity_crash_under_load(scenario: Scenario) -> None:
    total = scaled(5_000)
    lead_count = max(10, total // 10)
    rng = random.Random()
    await scenario.create_topics(ACTIVITY_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    activity_events = await typed_events(scenario, ACTIVITY_EVENTS)
    dlq = await scenario.dlq(ACTIVITY_DLQ)
    await scenario.start_service("leads")
    activity = await scenario.start_service("activity")

    leads = lead_ids(lead_count, "A")
    await create_leads(scenario, events, leads, ("activity", "leads"))
    ids = task_ids(total)
    records, per_lead = create_tasks(ids, leads)
    started = time.monotonic()
    load = asyncio.create_task(scenario.producer.send(records, rate=total / TASK_STREAM_S))
    done = lambda: len(activity_events.things("crm.task.created")) >= total  # noqa: E731
    killed = await kill_half_way(scenario, activity, lambda: scenario.count_in("activity", "tasks"), total,
                                 activity_events, done, what="tasks stored", rng=rng)
    await asyncio.wait_for(load, 120)
    await until(done, timeout=180, what=f"a crm.task.created for each of {total} tasks")

    summaries = activity_events.latest["crm.lead.activity-summary"]

    def stale_summaries() -> list[str]:
        return [i for i in leads if summaries.get(i, {}).get("open_count") != per_lead[i]]

    await until(lambda: not stale_summaries(), timeout=60, what="each lead's latest activity summary to count all its tasks")
    took = time.monotonic() - started

    stored = await scenario.ids_in("activity", "tasks")
    expected = set(ids)
    lost = expected - set(stored)
    doubled = activity_events.doubled("crm.task.created")
    rejected = activity_events.types["crm.command.rejected"]
    scenario.report(
        sent=total, applied=len(stored), duplicates=activity_events.duplicates, lost=len(lost), dlq=len(dlq.records),
        extra=(f"{killed}; tasks took {took:.1f}s; created events={len(activity_events.things('crm.task.created'))} "
               f"doubled={len(doubled)} rejected={rejected} leads={lead_count}"),
    )
    assert len(stored) == total and set(stored) == expected, f"lost {sorted(lost)[:5]}, extra {sorted(set(stored) - expected)[:5]}"
    assert activity_events.things("crm.task.created") == expected
    assert not doubled, f"tasks with two different crm.task.created ids: {list(doubled.items())[:5]}"
    assert not rejected, list(activity_events.latest["crm.command.rejected"].values())[:3]
    assert not events.created_twice and not events.rejections, events.rejections[:3]
    assert not dlq.records, [r.reason for r in dlq.records[:3]]
