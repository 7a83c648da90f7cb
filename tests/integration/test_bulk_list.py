"""GET /bulk and `crm leads bulk list` on real Kafka and FerretDB: one's own mass actions newest first, paged; everyone's for an administrator."""

from __future__ import annotations

import asyncio
import json

import httpx
from typer.testing import CliRunner

from contracts.topics import LEADS_COMMANDS
from crmctl.leads import leads_app
from services.leads.bulk.repository import BulkRepository
from tests.integration.leads_helpers import grant, payload
from tests.integration.test_bulk import _count, _served
from tests.integration.test_leads import leads_stack
from tests.support import command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}
ALICE = {"Authorization": "Bearer tok-alice"}
EVE = {"Authorization": "Bearer tok-eve"}


async def _listed(http, headers, **params):
    reply = await http.get("/bulk", params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def _all_pages(http, headers, limit):
    found, cursor = [], None
    while True:
        page = await _listed(http, headers, limit=limit, **({"cursor": cursor} if cursor else {}))
        found += [job["bulk_id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return found


async def test_a_user_lists_their_own_mass_actions_newest_first_and_an_admin_everyones(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await producer.send_many(LEADS_COMMANDS, [
            command(payload("crm.lead.create", lead_id=f"K{i}", title=f"Lead {i}"), actor="bob") for i in range(3)
        ])
        await wait_until(lambda: _count(service, 3), what="3 leads created")
        await grant(producer, "eve")  # licensed, with no mass action of her own
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            # Each job is seen stored before the next is asked for: their order is the order they were asked in.
            for bulk_id, headers in (("bob-1", BOB), ("alice-1", ALICE), ("bob-2", BOB), ("bob-3", BOB)):
                body = {"bulk_id": bulk_id, "action": "assign", "responsible_id": "bob", "lead_ids": ["K0", "K1"]}
                assert (await http.post("/bulk", json=body, headers=headers)).status_code == 202
                await wait_until(lambda b=bulk_id, h=headers: _has(http, h, b), what=f"{bulk_id} listed")
            # A job refused as a whole is the requester's too, listed refused with why.
            too_many = command(payload("crm.leads.bulk-update", bulk_id="bob-4", action="delete",
                                       lead_ids=[f"N{i}" for i in range(1_001)]), actor="bob")
            await producer.send(LEADS_COMMANDS, too_many)
            await wait_until(lambda: _has(http, BOB, "bob-4"), what="the refused job listed")

            assert await _all_pages(http, BOB, 2) == ["bob-4", "bob-3", "bob-2", "bob-1"]
            first = await _listed(http, BOB, limit=2)
            assert [j["bulk_id"] for j in first["items"]] == ["bob-4", "bob-3"] and first["next_cursor"]
            refused, newest = first["items"]
            assert (refused["state"], refused["error"]["reason_code"]) == ("refused", "validation")
            assert "lead_ids" in refused["error"]["message"]
            assert (newest["action"], newest["params"], newest["requested_by"], newest["total"]) == ("assign", {"responsible_id": "bob"}, "bob", 2)
            assert newest["status_url"] == "/bulk/bob-3" and newest["error"] is None

            # An administrator sees everyone's, or one user's; another user sees none of them.
            assert await _all_pages(http, ALICE, 3) == ["bob-4", "bob-3", "bob-2", "alice-1", "bob-1"]
            only_bob = await _listed(http, ALICE, requested_by="bob")
            assert [j["bulk_id"] for j in only_bob["items"]] == ["bob-4", "bob-3", "bob-2", "bob-1"]
            assert [j["bulk_id"] for j in (await _listed(http, BOB, requested_by="bob"))["items"]][:1] == ["bob-4"]
            eve = await wait_until(lambda: _licensed_list(http, EVE), what="eve licensed")
            assert eve == {"items": [], "next_cursor": None}

            # Bad parameters are named.
            for params, named in (({"limit": 0}, "limit"), ({"limit": "ten"}, "limit"), ({"cursor": "nope"}, "cursor"),
                                  ({"requested_by": ""}, "requested_by")):
                reply = await http.get("/bulk", params=params, headers=BOB)
                assert reply.status_code == 400 and named in reply.json()["message"], (params, reply.text)
            other = await http.get("/bulk", params={"requested_by": "alice"}, headers=BOB)
            assert other.status_code == 403 and other.json()["message"].startswith("requested_by:")

            # A job stored before the list keys existed gets them once, and is listed in its place.
            await service.db["bulk_jobs"].update_one({"_id": "bob-2"}, {"$unset": {"ix_owner": "", "ix_all": ""}})
            await service.db["bulk_meta"].delete_one({"_id": "job_keys"})
            assert await _all_pages(http, BOB, 10) == ["bob-4", "bob-3", "bob-1"]
            assert await BulkRepository(service.db).migrate_job_keys() == 1
            assert await _all_pages(http, BOB, 10) == ["bob-4", "bob-3", "bob-2", "bob-1"]

        async with _served(service) as url:
            listed = await asyncio.to_thread(CliRunner().invoke, leads_app, ["bulk", "list", "--json", "--url", url, "--token", "tok-bob"])
            table = await asyncio.to_thread(CliRunner().invoke, leads_app, ["bulk", "list", "--limit", "2", "--url", url, "--token", "tok-bob"])
        assert listed.exit_code == 0, listed.output
        assert [j["bulk_id"] for j in json.loads(listed.stdout)["items"]] == ["bob-4", "bob-3", "bob-2", "bob-1"]
        assert table.exit_code == 0, table.output
        assert "bob-4" in table.output and "bob-2" not in table.output and "--cursor" in table.output


async def _licensed_list(http, headers):
    reply = await http.get("/bulk", headers=headers)
    return reply.json() if reply.status_code == 200 else None


async def _has(http, headers, bulk_id):
    return bulk_id in [j["bulk_id"] for j in (await _listed(http, headers, limit=200))["items"]]
