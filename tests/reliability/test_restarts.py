"""Scenarios 2 and 3: Kafka, then FerretDB, away for ten seconds mid-stream; nothing lost, doubled or dead-lettered."""

from __future__ import annotations

import asyncio
import time

import pytest

from contracts.topics import LEADS_EVENTS
from tests.reliability.harness import Fault, Scenario, scaled, until
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS, creates, lead_ids

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

OUTAGE_S = 10.0
STREAM_S = 25.0  # the creates are spread over this long, so the stream still flows when the server comes back


async def hold(since: float, seconds: float) -> None:
    """Keep a server down for the rest of the outage (this is the fault, not a wait for a result)."""
    rest = since + seconds - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)


async def answers(instance, status: int) -> bool:
    return await asyncio.to_thread(instance.ready_status) == status


async def check_everything_once(scenario: Scenario, events, dlq, ids: list[str]) -> None:
    total = len(ids)
    await until(lambda: len(events.created) >= total, timeout=240, what=f"a crm.lead.created for each of {total} leads")
    stored = await scenario.ids_in("leads", "leads")
    lost = set(ids) - set(stored)
    scenario.report(
        sent=scenario.producer.sent, applied=len(stored), duplicates=events.duplicates, lost=len(lost),
        dlq=len(dlq.records), extra=f"producer resends={scenario.producer.resends} rejections={len(events.rejections)}",
    )
    assert len(stored) == total and not lost, f"lost {sorted(lost)[:5]}"
    assert set(events.created) == set(ids)
    assert not events.created_twice, events.created_twice[:5]
    assert not events.order_violations, events.order_violations[:5]
    assert not events.rejections, events.rejections[:3]
    assert not dlq.records, [r.reason for r in dlq.records[:3]]


async def test_broker_restart(scenario: Scenario) -> None:
    total = scaled(8_000)
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    await scenario.start_service("leads")
    ids = lead_ids(total)
    load = asyncio.create_task(scenario.producer.send(creates(ids), rate=total / STREAM_S))
    done = lambda: len(events.created) >= total  # noqa: E731

    await until(lambda: len(events.created) >= total // 4, timeout=120, what="a quarter of the leads created")
    stopped_at = time.monotonic()
    await scenario.stack.stop_kafka()
    await hold(stopped_at, OUTAGE_S)
    await scenario.stack.start_kafka()
    back_at, back_wall = time.monotonic(), time.time()
    recovered = await scenario.recovery(events, back_wall, done)
    scenario.faults.append(Fault("Kafka stopped", back_at - stopped_at, recovered))

    await asyncio.wait_for(load, 240)
    await check_everything_once(scenario, events, dlq, ids)


async def test_database_restart(scenario: Scenario) -> None:
    total = scaled(8_000)
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    leads = await scenario.start_service("leads")
    ids = lead_ids(total)
    load = asyncio.create_task(scenario.producer.send(creates(ids), rate=total / STREAM_S))
    done = lambda: len(events.created) >= total  # noqa: E731

    await until(lambda: len(events.created) >= total // 4, timeout=120, what="a quarter of the leads created")
    stopped_at = time.monotonic()
    await scenario.stack.stop_ferretdb()
    # While the database is away the service says so (503), stays up, and retries.
    await until(lambda: answers(leads, 503), timeout=30, what="/health/ready to answer 503")
    assert leads.running()
    await hold(stopped_at, OUTAGE_S)
    await scenario.stack.start_ferretdb()
    back_at, back_wall = time.monotonic(), time.time()
    await until(lambda: answers(leads, 200), timeout=60, what="/health/ready to answer 200 again")
    recovered = await scenario.recovery(events, back_wall, done)
    scenario.faults.append(Fault("FerretDB stopped", back_at - stopped_at, recovered))

    await asyncio.wait_for(load, 240)
    await check_everything_once(scenario, events, dlq, ids)
