"""Scenario 7: SIGTERM under load finishes the batch in hand, commits, exits in time; the restart re-reads nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from contracts.topics import LEADS_EVENTS
from tests.reliability.harness import Fault, Scenario, scaled, until
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS, creates, lead_ids

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

EXIT_LIMIT_S = 30.0


async def test_sigterm_during_load(scenario: Scenario) -> None:
    total = scaled(10_000)
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    leads = await scenario.start_service("leads")
    ids = lead_ids(total)
    load = asyncio.create_task(scenario.producer.send(creates(ids), rate=2500))
    done = lambda: len(events.created) >= total  # noqa: E731

    for share in (0.3, 0.65):
        await until(lambda: len(events.created) >= total * share, timeout=180, what=f"{share:.0%} of the leads created")
        stopped_wall = time.time()
        took, exited = await leads.terminate(limit=EXIT_LIMIT_S)
        assert exited, f"{leads.label} still ran {EXIT_LIMIT_S:.0f}s after SIGTERM:\n{leads.log_tail()}"
        started = time.monotonic()
        await scenario.restart(leads)
        recovered = await scenario.recovery(events, stopped_wall, done)
        scenario.faults.append(Fault(f"SIGTERM (exit took {took:.1f}s)", time.monotonic() - started, recovered))

    await asyncio.wait_for(load, 240)
    await until(done, timeout=240, what=f"a crm.lead.created for each of {total} leads")
    docs = await scenario.docs_in("leads", "leads", {"version": 1})
    scenario.report(sent=scenario.producer.sent, applied=len(docs), duplicates=events.duplicates,
                    lost=total - len(docs), dlq=len(dlq.records), extra=f"rejections={len(events.rejections)}")
    assert {d["_id"] for d in docs} == set(ids) and all(d["version"] == 1 for d in docs)
    assert events.duplicates == 0, "a graceful stop commits what it applied: the restart publishes nothing twice"
    assert not events.created_twice and not events.rejections and not dlq.records
