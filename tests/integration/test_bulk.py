"""Mass actions on real Kafka and FerretDB: 1,000 leads moved as if one by one, refusals reported, a job cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import defaultdict

import httpx
import uvicorn
from typer.testing import CliRunner

from crmctl.leads import leads_app

from contracts.bulk import BulkUpdateLeads, CancelBulkUpdate
from contracts.topics import LEADS_COMMANDS
from services.leads.repository import LeadRepository, stored_lead
from tests.integration.leads_helpers import payload
from tests.integration.test_leads import leads_stack, send_and_wait
from tests.support import command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}
ALICE = {"Authorization": "Bearer tok-alice"}


def _history(lead):
    """The lead's stays without their times: what a move leaves whoever sent it."""
    return [(h.pipeline_id, h.stage_id, h.status, h.actor_id, h.left_at is None) for h in lead.status_history]


def _stage_changes(events):
    """The ids of each lead's stage changes but L0's (a message published again keeps its id)."""
    found = defaultdict(set)
    for m in events.got.of_type("crm.lead.stage-changed"):
        if m.subject != "L0":
            found[m.subject].add(m.id)
    return found


def _completed(events, bulk_id):
    return [m for m in events.got.of_type("crm.leads.bulk-completed") if m.data.bulk_id == bulk_id]


async def _all_leads(service):
    return {lead.lead_id: lead async for lead in _cards(service)}


async def _cards(service):
    async for doc in service.db["leads"].find({}):
        yield stored_lead(doc).lead


async def test_bulk_move_of_a_thousand_leads_with_refusals_and_a_cancel(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation, bulk_chunk=100) as (service, producer, events):
        repo = LeadRepository(service.db)
        await producer.send_many(LEADS_COMMANDS, [
            command(payload("crm.lead.create", lead_id=f"L{i}", title=f"Lead {i}", source="expo"), actor="bob") for i in range(996)
        ])
        await wait_until(lambda: _count(service, 996), timeout=120,
                         what="996 leads created")
        # One lead moved singly: the yardstick of what a move leaves on a lead. Twenty deleted: their move is refused.
        await send_and_wait(producer, events, command(payload("crm.lead.move", lead_id="L0", stage_id="processing"), actor="bob"))
        yardstick = await repo.get("L0")
        await producer.send_many(LEADS_COMMANDS, [command(payload("crm.lead.delete", lead_id=f"L{i}"), actor="bob") for i in range(1, 21)])
        await wait_until(lambda: len(events.got.of_type("crm.lead.deleted")) >= 20, what="20 leads deleted")

        ids = [f"L{i}" for i in range(995)] + [f"missing-{i}" for i in range(5)]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            bad = await http.post("/bulk", json={"action": "move", "lead_ids": ids}, headers=BOB)
            assert bad.status_code == 400 and "stage_id" in bad.json()["message"]
            reply = await http.post("/bulk", json={"action": "move", "lead_ids": ids, "stage_id": "processing"}, headers=BOB)
            assert reply.status_code == 202, reply.text
            bulk_id = reply.json()["bulk_id"]
            done = await wait_until(lambda: _completed(events, bulk_id), timeout=180, what="the bulk move completed")
            report = done[0].data
            assert (report.state.value, report.requested_by) == ("completed", "bob")
            counts = report.counts
            assert (counts.total, counts.applied, counts.unchanged, counts.refused, counts.cancelled) == (1000, 974, 1, 25, 0)
            refused = {r.lead_id: r.reason_code.value for r in report.refusals}
            assert refused == {**{f"L{i}": "invalid_state" for i in range(1, 21)}, **{f"missing-{i}": "not_found" for i in range(5)}}

            status = (await http.get(f"/bulk/{bulk_id}", headers=BOB)).json()
            assert (status["state"], status["total"], status["done"], status["counts"]["applied"]) == ("completed", 1000, 1000, 974)
            assert (await http.get(f"/bulk/{bulk_id}", headers=ALICE)).status_code == 200  # an administrator sees every job
            assert (await http.get("/bulk/nope", headers=BOB)).status_code == 404

        # Each lead as if moved singly: its own stage change, by bob, the same history and version as the yardstick.
        leads = await _all_leads(service)
        moved = [leads[f"L{i}"] for i in range(21, 995)]
        assert all((lead.stage_id, lead.version, _history(lead)) == ("processing", yardstick.version, _history(yardstick)) for lead in moved)
        # The report is keyed by the job, the stage changes by their leads: other partitions, read in no
        # set order with it, so each lead's change is waited for rather than expected with the report.
        moved_ids = {lead.lead_id for lead in moved}
        await wait_until(lambda: _stage_changes(events).keys() >= moved_ids, what="each moved lead's stage change")
        changes = _stage_changes(events)
        assert changes.keys() == moved_ids and all(len(ids) == 1 for ids in changes.values())  # one change each (a resend has its id)
        assert {m.actorid for m in events.got.of_type("crm.lead.stage-changed")} == {"bob"}
        assert all(leads[f"L{i}"].deleted and leads[f"L{i}"].stage_id == "new" for i in range(1, 21))
        assert leads["L995"].stage_id == "new"  # not in the job

        # The bulk command redelivered: the same job, nothing applied twice.
        started = [m for m in events.got.of_type("crm.leads.bulk-started") if m.data.bulk_id == bulk_id]
        cause = command(BulkUpdateLeads(action="move", lead_ids=ids, stage_id="processing"), actor="bob", id=started[0].causationid)
        await producer.send(LEADS_COMMANDS, cause, key=bulk_id)
        await wait_until(lambda: len([m for m in events.got.of_type("crm.leads.bulk-started") if m.data.bulk_id == bulk_id]) > len(started),
                         what="the redelivered bulk command answered")
        assert (await repo.get("L500")).version == yardstick.version

        # A job by filter (the 974 moved leads) cancelled right after it starts: what was not sent yet stays as it was.
        # Both in one produce request on one key, so the consumer takes them in one batch: the cancel is
        # stored before any lead's answer can come back (sent one by one, a loaded machine could let the
        # whole job finish between them, and the job would rightly report completed).
        job = command(BulkUpdateLeads(bulk_id="assign-1", action="assign", responsible_id="carol",
                                      filter={"pipeline_id": "default", "stage_id": "processing", "source": "expo"}),
                      actor="bob", subject="assign-1")
        await producer.send_many(LEADS_COMMANDS, [job, command(CancelBulkUpdate(bulk_id="assign-1"), actor="bob", subject="assign-1")])
        done = await wait_until(lambda: _completed(events, "assign-1"), timeout=120, what="the cancelled job reported")
        counts = done[0].data.counts
        assert done[0].data.state.value == "cancelled"
        assert counts.total == 975 and counts.cancelled > 0  # the 974 moved and the yardstick
        assert counts.applied + counts.unchanged + counts.refused + counts.cancelled == counts.total
        leads = await _all_leads(service)
        assert sum(lead.responsible_id == "carol" for lead in leads.values()) == counts.applied
        # A finished job cannot be cancelled again.
        late = command(CancelBulkUpdate(bulk_id="assign-1"), actor="bob")
        await producer.send(LEADS_COMMANDS, late, key="assign-1")
        found = await wait_until(lambda: [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == late.id],
                                 what="the late cancel refused")
        assert found[0].data.reason_code.value == "invalid_state"

        # The CLI: three deleted leads restored, followed to the end, the final status as JSON.
        async with _served(service) as url:
            args = ["bulk", "restore", "--id", "L1", "--id", "L2", "--id", "L3", "--json", "--url", url, "--token", "tok-bob"]
            result = await asyncio.to_thread(CliRunner().invoke, leads_app, args)
        assert result.exit_code == 0, result.output
        status = json.loads(result.stdout)
        assert (status["state"], status["total"], status["counts"]["applied"]) == ("completed", 3, 3)
        restored = [await repo.get(lid) for lid in ("L1", "L2", "L3")]
        assert not any(lead.deleted for lead in restored)


async def _count(service, expected):
    return await service.db["leads"].count_documents({}) >= expected


@contextlib.asynccontextmanager
async def _served(service):
    """The leads HTTP app under a real uvicorn on a free loopback port, for the CLI to call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(service.asgi(), host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="uvicorn to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_a_jobs_lease_its_pages_and_its_answers_on_ferretdb(endpoints, isolation):
    """The repository under the runner: one holder per job until its lease lapses, pages read across, answers kept first."""
    from datetime import UTC, datetime, timedelta

    from crmkit.mongo import make_client
    from services.leads.bulk.repository import Answer, BulkRepository
    from services.leads.domain import bulk as rules

    client = make_client(endpoints.mongodb)
    try:
        jobs = BulkRepository(client[isolation.db("bulkrepo")])
        await jobs.ensure_indexes()
        now = datetime.now(UTC)
        ids = [f"L{i}" for i in range(2_500)]
        request = rules.check_request("b1", {"action": "delete", "lead_ids": ids}, "bob")
        await jobs.start(request, "cmd-1", "cmd-1", now)
        await jobs.store_leads("b1", ids)
        assert (await jobs.get("b1")).total == 2_500
        assert await jobs.leads_between("b1", 950, 2_050) == ids[950:2_050]  # three pages
        assert await jobs.leads_between("b1", 2_400, 2_600) == ids[2_400:]

        lease = timedelta(seconds=10)
        assert await jobs.claim("b1", "a", now, lease) and await jobs.claim("b1", "a", now, lease)
        assert not await jobs.claim("b1", "b", now + timedelta(seconds=5), lease)
        assert await jobs.claim("b1", "b", now + timedelta(seconds=11), lease)

        await jobs.record({"c1": "b1", "c2": "b1"}, [Answer("c1", "L0", rules.APPLIED), Answer("c2", "L1", rules.REFUSED, "not_found", "gone")], now)
        await jobs.record({"c1": "b1"}, [Answer("c1", "L0", rules.CANCELLED)], now)  # a second answer is ignored
        assert await jobs.answered("b1") == 2
        assert (await jobs.counts("b1")) == {rules.APPLIED: 1, rules.UNCHANGED: 0, rules.REFUSED: 1, rules.CANCELLED: 0}
        assert await jobs.refusals("b1", 10) == ([Answer("c2", "L1", rules.REFUSED, "not_found", "gone")], None)

        # Refusals come a page at a time from the index, in the order they came; another job's stay out.
        refused = [Answer(f"r{i}", f"L{i}", rules.REFUSED, "invalid_state", "deleted") for i in range(2, 1_202)]
        for n, start in enumerate(range(0, len(refused), 300)):  # four batches, each a millisecond after the one before
            wave = refused[start:start + 300]
            await jobs.record({a.command_id: "b1" for a in wave}, wave, now + timedelta(milliseconds=n + 1))
        await jobs.record({"x1": "b2"}, [Answer("x1", "L5", rules.REFUSED, "not_found", "gone")], now)
        seen, cursor = [], None
        while True:
            page, cursor = await jobs.refusals("b1", 250, cursor)
            seen += [a.lead_id for a in page]
            if cursor is None:
                break
        # Each once, batch after batch in the order they came (within one millisecond, by lead id).
        batch_of = {"L1": -1, **{a.lead_id: i // 300 for i, a in enumerate(refused)}}
        assert len(seen) == len(batch_of) and set(seen) == set(batch_of)
        assert [batch_of[lead_id] for lead_id in seen] == sorted(batch_of.values())
        assert (await jobs.counts("b1"))[rules.REFUSED] == 1_201 and (await jobs.counts("b2"))[rules.REFUSED] == 1
    finally:
        await client.close()
