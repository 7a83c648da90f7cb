"""Mass actions on real Kafka and FerretDB: past 1,000 refusals every one is read once, page by page; a refused job says why."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import httpx
from typer.testing import CliRunner

from contracts.topics import LEADS_COMMANDS
from crmctl.leads import leads_app
from tests.integration.leads_helpers import payload
from tests.integration.test_bulk import _completed, _count, _served
from tests.integration.test_leads import expect_rejected, leads_stack
from tests.support import command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}


async def _pages(http, path, limit):
    """Every item of a paged list, following `next_cursor`, and how many pages it took."""
    found, cursor, pages = [], None, 0
    while True:
        reply = await http.get(path, params={"limit": limit, **({"cursor": cursor} if cursor else {})}, headers=BOB)
        assert reply.status_code == 200, reply.text
        found += reply.json()["items"]
        pages += 1
        cursor = reply.json()["next_cursor"]
        if not cursor:
            return found, pages


async def test_more_than_a_thousand_refusals_are_each_read_once_across_pages(settings_for, run_service, endpoints, isolation):
    total = 1_050
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await producer.send_many(LEADS_COMMANDS, [
            command(payload("crm.lead.create", lead_id=f"R{i:04d}", title=f"Lead {i}", source="fair"), actor="bob") for i in range(total)
        ])
        await wait_until(lambda: _count(service, total), timeout=180, what=f"{total} leads created")
        everyone = sorted(f"R{i:04d}" for i in range(total))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            # A move cannot reach a final stage: every lead refuses it, with its own reason.
            reply = await http.post("/bulk", json={"action": "move", "stage_id": "qualified", "filter": {"source": "fair"}}, headers=BOB)
            assert reply.status_code == 202, reply.text
            bulk_id = reply.json()["bulk_id"]
            done = await wait_until(lambda: _completed(events, bulk_id), timeout=300, what="the bulk move completed")
            report = done[0].data
            assert (report.counts.total, report.counts.refused, report.counts.applied) == (total, total, 0)

            # 200 a page: six pages, each refused lead once, in the order the report's first 1,000 came in.
            refusals, pages = await _pages(http, f"/bulk/{bulk_id}/refusals", 200)
            assert pages == 6
            assert sorted(r["lead_id"] for r in refusals) == everyone
            assert {r["reason_code"] for r in refusals} == {"invalid_transition"}
            assert all("final stage" in r["message"] for r in refusals)
            assert [r.lead_id for r in report.refusals] == [r["lead_id"] for r in refusals[:1_000]]

            # The status holds the first page (50 by default) and the cursor of the rest.
            status = (await http.get(f"/bulk/{bulk_id}", headers=BOB)).json()
            assert (status["state"], status["counts"]["refused"], len(status["refusals"])) == ("completed", total, 50)
            rest = (await http.get(f"/bulk/{bulk_id}/refusals", params={"cursor": status["refusals_next_cursor"], "limit": 200},
                                   headers=BOB)).json()
            assert [r["lead_id"] for r in status["refusals"] + rest["items"]] == [r["lead_id"] for r in refusals[:250]]

            bad = await http.get(f"/bulk/{bulk_id}/refusals", params={"cursor": "not-one"}, headers=BOB)
            assert bad.status_code == 400 and bad.json()["message"].startswith("cursor:")
            assert (await http.get(f"/bulk/{bulk_id}/refusals", params={"limit": 0}, headers=BOB)).status_code == 400
            assert (await http.get("/bulk/nope/refusals", headers=BOB)).status_code == 404

        # The CLI reads them whole: `show --json` and `refusals` (CSV), each lead once.
        async with _served(service) as url:
            shown = await asyncio.to_thread(CliRunner().invoke, leads_app, ["bulk", "show", bulk_id, "--json", "--url", url, "--token", "tok-bob"])
            listed = await asyncio.to_thread(CliRunner().invoke, leads_app, ["bulk", "refusals", bulk_id, "--url", url, "--token", "tok-bob"])
        assert shown.exit_code == 0, shown.output
        assert sorted(r["lead_id"] for r in json.loads(shown.stdout)["refusals"]) == everyone
        assert listed.exit_code == 0, listed.output
        rows = list(csv.DictReader(io.StringIO(listed.stdout)))
        assert sorted(row["lead_id"] for row in rows) == everyone and {row["reason_code"] for row in rows} == {"invalid_transition"}


async def test_a_refused_mass_action_says_why_and_frees_its_id(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation, bulk_max_leads=3) as (service, producer, events):
        await producer.send_many(LEADS_COMMANDS, [
            command(payload("crm.lead.create", lead_id=f"X{i}", title=f"Lead {i}", source="expo"), actor="bob") for i in range(5)
        ])
        await wait_until(lambda: _count(service, 5), what="5 leads created")
        async with _served(service) as url:
            # The CLI stops at the refusal with its reason, rather than waiting for a job that never starts.
            args = ["bulk", "assign", "--responsible", "carol", "--where", "source=expo", "--url", url, "--token", "tok-bob"]
            result = await asyncio.to_thread(CliRunner().invoke, leads_app, args)
            assert result.exit_code == 1, result.output
            assert "refused" in result.output and "more than 3 leads" in result.output

            async with httpx.AsyncClient(base_url=url) as http:
                # A filter name the request does not know (a typo would take every lead) is refused at once.
                typo = await http.post("/bulk", json={"action": "delete", "filter": {"stage": "new"}}, headers=BOB)
                assert typo.status_code == 400 and typo.json()["message"].startswith("filter.stage: not a field")
                body = {"bulk_id": "narrow", "action": "assign", "responsible_id": "carol", "filter": {"source": "expo"}}
                assert (await http.post("/bulk", json=body, headers=BOB)).status_code == 202
                status = await wait_until(lambda: _state(http, "narrow", "refused"), what="the job refused")
                assert status["error"]["reason_code"] == "validation" and "more than 3" in status["error"]["message"]
                assert status["total"] == 0 and status["done"] == 0
                assert (await http.post("/bulk/narrow/cancel", headers=BOB)).status_code == 409

                # The refused command started nothing: a narrower request may take the same id.
                body = {"bulk_id": "narrow", "action": "assign", "responsible_id": "carol", "lead_ids": ["X0", "X1"]}
                assert (await http.post("/bulk", json=body, headers=BOB)).status_code == 202
                status = await wait_until(lambda: _state(http, "narrow", "completed"), what="the narrower job completed")
                assert (status["total"], status["counts"]["applied"], status["error"]) == (2, 2, None)
                # Now the id is taken: another request naming it is refused at once.
                taken = await http.post("/bulk", json={**body, "lead_ids": ["X2"]}, headers=BOB)
                assert taken.status_code == 409 and "bulk_id" in taken.json()["message"]


async def test_a_mass_action_refused_for_its_fields_is_kept_refused_with_why(settings_for, run_service, endpoints, isolation):
    # 1,001 lead ids over Kafka are refused before anything is read; the job was not kept, so its
    # requester (and bench_bulk.py, waiting on the job) found nothing at GET /bulk/{id}, ever.
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        too_many = command(payload("crm.leads.bulk-update", bulk_id="too-many", action="move", stage_id="processing",
                                   lead_ids=[f"N{i}" for i in range(1_001)]), actor="bob")
        refused = await expect_rejected(producer, events, too_many, "validation")
        assert refused.data.errors[0].field == "lead_ids"
        # A bulk_id out of bounds is answered too, but no job can be kept under it.
        bad_id = command(payload("crm.leads.bulk-update", bulk_id="x" * 300, action="delete", lead_ids=["N1"]), actor="bob")
        await expect_rejected(producer, events, bad_id, "validation")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            status = await wait_until(lambda: _state(http, "too-many", "refused"), what="the job shown refused")
            assert status["error"]["reason_code"] == "validation"
            assert "lead_ids: 1,001 items, at most 1,000" in status["error"]["message"]
            assert (status["total"], status["done"]) == (0, 0)
            assert (await http.get("/bulk/too-many", headers={"Authorization": "Bearer tok-alice"})).json()["state"] == "refused"
            assert (await http.get("/bulk/" + "x" * 300, headers=BOB)).status_code == 404
            # It started nothing: the same id is free for a request that fits.
            fits = command(payload("crm.leads.bulk-update", bulk_id="too-many", action="delete", lead_ids=["N1"]), actor="bob")
            await producer.send(LEADS_COMMANDS, fits)
            status = await wait_until(lambda: _state(http, "too-many", "completed"), what="the job that fits completed")
            assert (status["total"], status["counts"]["refused"], status["error"]) == (1, 1, None)


async def _state(http, bulk_id, state):
    reply = await http.get(f"/bulk/{bulk_id}", headers=BOB)
    return reply.json() if reply.status_code == 200 and reply.json()["state"] == state else None
