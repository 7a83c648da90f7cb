"""Scenario 1: SIGKILL the leads service twice under load; every lead exactly once, every event at least once."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from contracts.topics import LEADS_EVENTS
from tests.reliability.harness import Fault, Scenario, ServiceInstance, scaled, until
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS, creates, lead_ids

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]


async def kill_and_restart(scenario: Scenario, instance: ServiceInstance, ledger, done) -> None:
    """SIGKILL, restart at once; time until it is ready and until every partition publishes again."""
    killed_at, killed_wall = time.monotonic(), time.time()
    instance.kill()
    await scenario.restart(instance)
    ready_after = time.monotonic() - killed_at
    recovered = await scenario.recovery(ledger, killed_wall, done)
    scenario.faults.append(Fault(f"SIGKILL {instance.label}", ready_after, recovered))


async def test_leads_crash_under_load(scenario: Scenario) -> None:
    total = scaled(20_000)
    rng = random.Random()
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    leads = await scenario.start_service("leads")

    ids = lead_ids(total)
    load = asyncio.create_task(scenario.producer.send(creates(ids), rate=2500))
    done = lambda: len(events.created) >= total  # noqa: E731
    for low, high in ((0.15, 0.40), (0.55, 0.80)):
        mark = int(total * rng.uniform(low, high))
        await until(lambda: len(events.created) >= mark, timeout=180, what=f"{mark} leads created")
        await kill_and_restart(scenario, leads, events, done)
    await load
    await until(done, timeout=240, what=f"a crm.lead.created for each of {total} leads")

    stored = await scenario.ids_in("leads", "leads")
    expected = set(ids)
    lost = expected - set(stored)
    scenario.report(
        sent=scenario.producer.sent, applied=len(stored), duplicates=events.duplicates, lost=len(lost),
        dlq=len(dlq.records), extra=f"producer resends={scenario.producer.resends} rejections={len(events.rejections)}",
    )
    assert len(stored) == total and set(stored) == expected, f"lost {sorted(lost)[:5]}, extra {sorted(set(stored) - expected)[:5]}"
    assert set(events.created) == expected
    assert not events.created_twice, f"leads created twice with different event ids: {events.created_twice[:5]}"
    assert not events.order_violations, events.order_violations[:5]
    assert not events.rejections, events.rejections[:3]
    assert not dlq.records
