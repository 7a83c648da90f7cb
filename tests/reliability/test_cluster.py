"""Scenarios on the three-node cluster: a broker SIGKILLed, a rolling restart, the controller killed, all under load."""

from __future__ import annotations

import asyncio
import time

import pytest

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from tests.reliability.harness import BROKERS, Fault, Scenario, scaled, until
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS, creates, lead_ids
from tests.reliability.test_restarts import check_everything_once

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.timeout(420),
    pytest.mark.skipif(BROKERS < 3, reason="needs the three-node cluster (CRM_RELIABILITY_BROKERS=3)"),
]

STREAM_S = 30.0  # the load is spread over this long so that it still flows while nodes come and go


async def start_load(scenario: Scenario, total: int):
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    await scenario.start_service("leads")
    ids = lead_ids(total)
    load = asyncio.create_task(scenario.producer.send(creates(ids), rate=total / STREAM_S))
    return ids, events, dlq, load


async def fully_replicated(scenario: Scenario) -> bool:
    return await asyncio.to_thread(scenario.stack.under_replicated) == []


async def test_broker_killed_during_creates(scenario: Scenario) -> None:
    """One node SIGKILLed a quarter of the way into 20,000 creates, restarted 10 s later: its partitions'
    leadership moves to the others, producers and consumers carry on, nothing is lost or doubled."""
    total = scaled(20_000)
    ids, events, dlq, load = await start_load(scenario, total)
    done = lambda: len(events.created) >= total  # noqa: E731
    commands = scenario.topic(LEADS_COMMANDS)
    await until(lambda: len(events.created) >= total // 4, timeout=120, what="a quarter of the leads created")

    before = await asyncio.to_thread(scenario.stack.leaders, commands)
    victim = max(set(before.values()), key=lambda n: list(before.values()).count(n))  # the node leading most
    killed_at, killed_wall = time.monotonic(), time.time()
    await scenario.stack.kill_node(victim)
    moved = await until(
        lambda: _led_without(scenario, commands, victim), timeout=60, what=f"leaders moved off node {victim}"
    )
    moved_after = time.monotonic() - killed_at
    recovered = await scenario.recovery(events, killed_wall, done)
    await asyncio.sleep(max(0.0, killed_at + 10 - time.monotonic()))  # the node stays dead 10 s: the fault itself
    await scenario.stack.start_node(victim)
    scenario.faults.append(Fault(f"SIGKILL kafka node {victim}", time.monotonic() - killed_at, recovered))

    await asyncio.wait_for(load, 240)
    await until(lambda: fully_replicated(scenario), timeout=120, what="every partition back in sync")
    await check_everything_once(scenario, events, dlq, ids)
    print(f"[reliability] leaders of {commands} before {before} after {moved} (moved in {moved_after:.1f}s)")
    assert victim in before.values() and victim not in moved.values()


async def test_rolling_restart_of_every_broker(scenario: Scenario) -> None:
    """Each node in turn stopped (controlled shutdown) and started while creates flow; the next only once
    every partition is back in sync, as an operator rolls an upgrade. Nothing is lost."""
    total = scaled(12_000)
    ids, events, dlq, load = await start_load(scenario, total)
    await until(lambda: len(events.created) >= total // 10, timeout=120, what="a tenth of the leads created")
    for node in range(1, BROKERS + 1):
        began = time.monotonic()
        await scenario.stack.stop_node(node)
        await scenario.stack.start_node(node)
        await until(lambda: fully_replicated(scenario), timeout=120, what=f"partitions in sync after node {node}")
        scenario.faults.append(Fault(f"restart kafka node {node}", time.monotonic() - began, None))
    await asyncio.wait_for(load, 240)
    await check_everything_once(scenario, events, dlq, ids)


async def test_controller_killed(scenario: Scenario) -> None:
    """The active controller SIGKILLed under load: the two other voters elect a new leader, and the
    brokers carry on; the old one rejoins as a follower."""
    total = scaled(8_000)
    ids, events, dlq, load = await start_load(scenario, total)
    done = lambda: len(events.created) >= total  # noqa: E731
    await until(lambda: len(events.created) >= total // 4, timeout=120, what="a quarter of the leads created")
    old = await until(lambda: asyncio.to_thread(scenario.stack.quorum_leader), timeout=30, what="a quorum leader")
    killed_at, killed_wall = time.monotonic(), time.time()
    await scenario.stack.kill_node(old)

    async def new_leader() -> int | None:
        leader = await asyncio.to_thread(scenario.stack.quorum_leader)
        return leader if leader is not None and leader >= 0 and leader != old else None

    elected = await until(new_leader, timeout=60, what="another controller elected")
    elected_after = time.monotonic() - killed_at
    recovered = await scenario.recovery(events, killed_wall, done)
    await scenario.stack.start_node(old)
    scenario.faults.append(Fault(f"SIGKILL controller (node {old})", time.monotonic() - killed_at, recovered))
    await asyncio.wait_for(load, 240)
    await until(lambda: fully_replicated(scenario), timeout=120, what="every partition back in sync")
    await check_everything_once(scenario, events, dlq, ids)
    print(f"[reliability] controller node {old} killed; node {elected} elected in {elected_after:.1f}s")
    assert elected not in (old, -1)


async def _led_without(scenario: Scenario, topic: str, node: int) -> dict[int, int] | None:
    leaders = await asyncio.to_thread(scenario.stack.leaders, topic)
    ok = leaders and all(leader not in (node, -1) for leader in leaders.values())
    return leaders if ok else None
