"""The board's stage counters on real Kafka and FerretDB: equal to the index range counts and to a scan of every
lead, across creates, moves, pipeline changes, deletes, restores and merges by two instances at once, after
batches that failed between their leads and their counters, after a crash there (the batch redelivered to
the other instance), and after a recount."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from pymongo.errors import AutoReconnect
from typer.testing import CliRunner

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from crmkit.mongo import make_client
from services.leads.app import create_app
from services.leads.repository import LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import grant, payload
from tests.integration.test_leads import TOKENS, leads_stack, send_and_wait
from tests.support import Collector, Producer, command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}
P2_STAGES = [
    {"stage_id": "new", "name": "New", "status": "new"},
    {"stage_id": "call", "name": "Call", "status": "in_progress"},
    {"stage_id": "won", "name": "Won", "status": "qualified"},
    {"stage_id": "lost", "name": "Lost", "status": "unqualified"},
]


async def _scan(service) -> Counter:
    """Live leads per (pipeline, stage), read from every stored lead document."""
    docs = service.db["leads"].find({}, {"pipeline_id": 1, "stage_id": 1, "deleted": 1})
    return Counter([(doc["pipeline_id"], doc["stage_id"]) async for doc in docs if not doc["deleted"]])


async def _compare(service) -> list[str]:
    """Where the counters differ from the index range counts or from the scan (empty: they agree everywhere)."""
    scan = await _scan(service)
    pipelines = await PipelineRepository(service.db).all()
    found = []
    for pipeline in pipelines.values():
        stages = [s.stage_id for s in pipeline.stages]
        counted = await service.counters.board(pipeline.pipeline_id)
        if counted is None:
            return [f"counters not complete ({await service.counters.state()})"]
        ranges = await LeadRepository(service.db).count_by_stage(pipeline.pipeline_id, stages)
        for stage in stages:
            key = (pipeline.pipeline_id, stage)
            if not (counted.get(stage, 0) == ranges[stage] == scan.get(key, 0)):
                found.append(f"{key}: counters {counted.get(stage, 0)}, ranges {ranges[stage]}, scan {scan.get(key, 0)}")
    return found


async def _uncounted(service) -> list[dict]:
    """Board changes stored on leads that the counters have not counted yet (after their partition's offset)."""
    meta = await service.db["lead_counts"].find_one({"_id": "meta"})
    counted = {(d["tp"], d["pipeline_id"], d["stage_id"]): d["o"]
               async for d in service.db["lead_counts"].find({"epoch": meta["epoch"]}) if d["_id"] != "meta"}
    stored = [c async for doc in service.db["leads"].find({"board_changes": {"$exists": True}}) for c in json.loads(doc["board_changes"])]
    return [c for c in stored  # [tp, offset, epoch, before, after]
            if c[2] == meta["epoch"] and any(k and c[1] > counted.get((c[0], *k), -1) for k in (c[3], c[4]))]


async def _board(http, pipeline_id: str) -> dict:
    """The board as the HTTP read side answers it; a read past its time limit (503 on a machine loaded by
    the suite beside) is asked again, any other answer fails the test with its text."""
    for _ in range(3):
        reply = await http.get(f"/pipelines/{pipeline_id}/board", headers=BOB)
        if reply.status_code != 503:
            break
    assert reply.status_code == 200, reply.text
    return reply.json()


async def _send_all(producer, events, commands, what, leads=()):
    """Send the commands, then wait until each is done: until an event caused by it, or (for commands that
    may change nothing, hence answer nothing) by an update sent after them to each of ``leads`` (one
    lead's messages are applied in order; an update answers with an event or a rejection)."""
    markers = [command(payload("crm.lead.update", lead_id=lead_id, title=f"{what} {lead_id}"), actor="bob") for lead_id in leads]
    for cmd in [*commands, *markers]:
        await producer.send(LEADS_COMMANDS, cmd)
    ids = {cmd.id for cmd in (markers or commands)}
    await wait_until(lambda: ids <= {m.causationid for m in events.got.messages}, timeout=90, what=what)


def _changes(round_no: int, leads: list[str]):
    """Moves, assignments, pipeline changes, deletes, restores and merges over the leads (some refused: fine)."""
    c = lambda t, **data: command(payload(t, **data), actor="bob")  # noqa: E731
    out = []
    for i, lead_id in enumerate(leads):
        match (i + round_no) % 7:
            case 0:
                out.append(c("crm.lead.move", lead_id=lead_id, stage_id="processing"))
            case 1:
                out.append(c("crm.lead.change-pipeline", lead_id=lead_id, pipeline_id="p2", stage_id="call"))
            case 2:
                out.append(c("crm.lead.delete", lead_id=lead_id))
            case 3:
                out.append(c("crm.lead.restore", lead_id=lead_id))
            case 4:
                out.append(c("crm.lead.assign", lead_id=lead_id, responsible_id="carol"))
            case 5:
                out.append(c("crm.lead.change-pipeline", lead_id=lead_id, pipeline_id="default"))
            case 6 if i + 1 < len(leads):
                out.append(c("crm.lead.merge", lead_id=lead_id, other_lead_id=leads[(i * 5 + round_no) % len(leads)], fields={}))
    return out


async def test_counters_stay_exact_across_failed_batches_a_crash_and_two_instances(settings_for, run_service, endpoints, isolation):
    settings = settings_for(LeadsSettings, "leads", tokens=TOKENS, board_counters_grace_s=0.5)
    first = await run_service(create_app(settings))
    second = await run_service(create_app(settings))  # the same group: each instance owns some partitions
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(endpoints.kafka, isolation.prefix, LEADS_EVENTS) as events:
        await grant(producer, "alice", admin=True)
        await grant(producer, "bob")
        await wait_until(lambda: events.got.of_type("crm.pipeline.created"), what="default pipeline")
        await send_and_wait(producer, events, command(payload("crm.pipeline.create", pipeline_id="p2", name="Partners", stages=P2_STAGES), actor="alice"))
        await send_and_wait(producer, events, command(payload("crm.pipeline.create", pipeline_id="p3", name="Short-lived"), actor="alice"))
        leads = [f"B{i:02d}" for i in range(40)]
        creates = [command(payload("crm.lead.create", lead_id=lead_id, title=f"Лид {lead_id}", pipeline_id=["default", "p2", "p3"][i % 3]),
                           actor="bob") for i, lead_id in enumerate(leads)]
        await _send_all(producer, events, creates, "40 leads created")
        assert await _compare(first) == []

        # Pipeline changes: p3's leads deleted, p3 deleted; restored, they come back into the default pipeline.
        p3 = [lead_id for i, lead_id in enumerate(leads) if i % 3 == 2]
        await _send_all(producer, events, [command(payload("crm.lead.delete", lead_id=x), actor="bob") for x in p3], "p3 emptied")
        await send_and_wait(producer, events, command(payload("crm.pipeline.delete", pipeline_id="p3"), actor="alice"))
        await _send_all(producer, events, [command(payload("crm.lead.restore", lead_id=x), actor="bob") for x in p3[:6]], "restored")
        await _send_all(producer, events, _changes(0, leads), "round 0", leads)
        assert await _compare(second) == []

        # Batches that fail after storing their leads and before their counters, three times on each
        # instance: retried, they find their messages applied and count the changes stored on the leads.
        failures = {id(first): 3, id(second): 3}

        def failing(instance):
            async def fault():
                if failures[id(instance)] > 0:
                    failures[id(instance)] -= 1
                    raise AutoReconnect("injected: the database went away after the leads were stored")
            return fault

        first.counters.fault, second.counters.fault = failing(first), failing(second)
        await _send_all(producer, events, _changes(1, leads), "round 1, with failing counter writes", leads)
        assert failures == {id(first): 0, id(second): 0}, "every injected failure was hit"
        assert await _compare(first) == []

        # A crash between the leads and their counters: the first instance stops dead there (its handler
        # never returns, so its batch is never committed) and is then shut down; the other instance gets
        # the batch again from Kafka, finds it applied and counts the changes stored on its leads.
        crashed = asyncio.Event()

        async def crash():
            crashed.set()
            await asyncio.Event().wait()  # cancelled when the instance is shut down (after its 20 s grace)

        second.counters.fault = None
        first.counters.fault = crash
        round_two = _changes(2, leads) + [command(payload("crm.lead.move", lead_id=x, stage_id="won"), actor="bob") for x in leads[1::3]]
        round_two += [command(payload("crm.lead.update", lead_id=x, title=f"round 2 {x}"), actor="bob") for x in leads]
        for cmd in round_two:
            await producer.send(LEADS_COMMANDS, cmd)
        await wait_until(crashed.is_set, timeout=60, what="the first instance stored a batch and crashed before its counters")
        stored_uncounted = await _uncounted(second)
        await asyncio.wait_for(first.stop(), 60)
        ids = {cmd.id for cmd in round_two[-len(leads):]}
        await wait_until(lambda: ids <= {m.causationid for m in events.got.messages}, timeout=90, what="round 2 redelivered and applied")
        assert stored_uncounted, "the crash left stored changes uncounted until the redelivery (else the test proves nothing)"
        assert await _compare(second) == [], "after the redelivery"
        assert await _uncounted(second) == []

        transport = httpx.ASGITransport(app=second.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            scan = await _scan(second)
            for pipeline_id in ("default", "p2"):
                board = await _board(http, pipeline_id)
                assert {s["stage_id"]: s["count"] for s in board["stages"]} == {
                    s["stage_id"]: scan.get((pipeline_id, s["stage_id"]), 0) for s in board["stages"]}


async def test_a_recount_and_the_first_start_count_the_stored_leads(settings_for, run_service, endpoints, isolation, monkeypatch):
    from crmctl.cli import app as cli

    async with leads_stack(settings_for, run_service, endpoints, isolation, board_counters_grace_s=0.2) as (service, producer, events):
        creates = [command(payload("crm.lead.create", lead_id=f"C{i}", title="x"), actor="bob") for i in range(12)]
        await _send_all(producer, events, creates, "12 leads")
        await _send_all(producer, events, [command(payload("crm.lead.move", lead_id=f"C{i}", stage_id="processing"), actor="bob")
                                           for i in range(5)], "5 moved")
        assert await _compare(service) == []
        # Counters lost (a database restored from an older backup, say): wrong until a recount.
        await service.db["lead_counts"].delete_many({"_id": {"$ne": "meta"}})
        assert await _compare(service) != []
        monkeypatch.setenv("LEADS_MONGODB_URL", endpoints.mongodb)
        monkeypatch.setenv("LEADS_DATABASE", service.settings.database)
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["leads", "recount", "--json", "--grace", "0.2"])
        assert result.exit_code == 0, result.output
        counted = json.loads(result.stdout)
        assert counted["stages"]["default/new"] == 7 and counted["stages"]["default/processing"] == 5 and counted["leads"] == 12
        assert await _compare(service) == []
        # Stale counts: the board counts index ranges meanwhile, and says the same.
        await service.counters.mark_stale()
        transport = httpx.ASGITransport(app=service.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            board = (await http.get("/pipelines/default/board", headers=BOB)).json()
            assert {s["stage_id"]: s["count"] for s in board["stages"]}["processing"] == 5
        assert await service.counters.board("default") is None
        await service.stop()
    # The first start with counters (a store written before them): counted before the instance consumes.
    client = make_client(endpoints.mongodb)
    try:
        await client[isolation.db("leads")]["lead_counts"].drop()
    finally:
        await client.close()
    fresh = await run_service(create_app(settings_for(LeadsSettings, "leads", tokens=TOKENS)))
    assert await fresh.counters.state() == "complete"
    assert await _compare(fresh) == []
