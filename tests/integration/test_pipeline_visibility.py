"""Pipeline visibility on real Kafka and FerretDB: a user outside a pipeline's groups sees none of its leads anywhere, and is refused."""

from __future__ import annotations

import httpx

from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS
from tests.integration.leads_helpers import directory_event, payload
from tests.integration.test_analytics import start as start_analytics
from tests.integration.test_leads import expect_rejected, leads_stack, send_and_wait
from tests.support import command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}  # licensed, in no group
EVE = {"Authorization": "Bearer tok-eve"}  # licensed, in the group vip-team
ALICE = {"Authorization": "Bearer tok-alice"}  # administrator


async def _ids(http, headers, **params):
    reply = await http.get("/leads", params={**params, "limit": "200"}, headers=headers)
    assert reply.status_code == 200, reply.text
    return {item["lead_id"] for item in reply.json()["items"]}


async def test_a_user_outside_a_pipelines_groups_sees_none_of_it_and_is_refused(settings_for, run_service, endpoints, isolation, tmp_path):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="eve", licence="crm"), key="eve")
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.group-granted", user_id="eve", group="vip-team"), key="eve")
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="vip", name="VIP", visible_to={"groups": ["vip-team"]}), actor="alice"))
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="B1", title="Open deal", source="web"), actor="bob"))
        for lead_id in ("V1", "V2"):
            await send_and_wait(producer, events, command(payload(
                "crm.lead.create", lead_id=lead_id, title=f"Secret deal {lead_id}", pipeline_id="vip", source="web",
                responsible_id="bob"), actor="alice"))

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            # Every read endpoint, every filter: bob sees only what is outside the VIP pipeline.
            for params in ({}, {"responsible_id": "bob"}, {"source": "web"}, {"status": "new"}, {"q": "deal"},
                           {"include_deleted": "true"}, {"pipeline_id": "vip"}, {"pipeline_id": "vip", "stage_id": "new"}):
                assert await _ids(http, BOB, **params) <= {"B1"}, params
                assert {"V1", "V2"} <= await _ids(http, ALICE, **params), params  # each filter matches them
            assert await _ids(http, BOB) == {"B1"}
            assert await _ids(http, EVE, pipeline_id="vip") == {"V1", "V2"}
            assert await _ids(http, EVE) == {"B1", "V1", "V2"}
            assert await _ids(http, ALICE, q="secret") == {"V1", "V2"}
            pipelines = await http.get("/pipelines", headers=BOB)
            assert [p["pipeline_id"] for p in pipelines.json()["items"]] == ["default"]
            assert {p["pipeline_id"] for p in (await http.get("/pipelines", headers=EVE)).json()["items"]} == {"default", "vip"}
            # A hidden card or board answers as a missing one.
            hidden, missing = await http.get("/leads/V1", headers=BOB), await http.get("/leads/NOPE", headers=BOB)
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["message"].replace("V1", "X") == missing.json()["message"].replace("NOPE", "X")
            board, no_board = await http.get("/pipelines/vip/board", headers=BOB), await http.get("/pipelines/nope/board", headers=BOB)
            assert board.status_code == no_board.status_code == 404
            assert (await http.get("/leads/V1", headers=EVE)).status_code == 200
            assert (await http.get("/pipelines/vip/board", headers=EVE)).json()["stages"][0]["count"] == 2

        # Commands: refused forbidden, the same answer as for a lead that does not exist.
        seen = await expect_rejected(producer, events, command(payload("crm.lead.move", lead_id="V1", stage_id="processing"), actor="bob"), "forbidden")
        unknown = await expect_rejected(producer, events, command(payload("crm.lead.update", lead_id="NOPE", title="x"), actor="bob"), "forbidden")
        assert seen.data.message.replace("V1", "X") == unknown.data.message.replace("NOPE", "X")
        await expect_rejected(producer, events, command(payload("crm.lead.merge", lead_id="B1", other_lead_id="V2"), actor="bob"), "forbidden")
        # A create under a taken id: the same answer whether the lead holding it is hidden (V1) or not (B1), nothing of the lead in it.
        on_hidden = await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="V1", title="Mine"), actor="bob"), "conflict")
        on_seen = await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="B1", title="Mine"), actor="bob"), "conflict")
        assert on_hidden.data.message.replace("V1", "X") == on_seen.data.message.replace("B1", "X")
        assert on_hidden.data.errors == on_seen.data.errors and on_hidden.data.lead_id == "V1"
        assert "Secret" not in on_hidden.to_json_bytes().decode() and "vip" not in on_hidden.to_json_bytes().decode()
        into = await expect_rejected(producer, events, command(payload("crm.lead.create", title="In", pipeline_id="vip"), actor="bob"), "not_found")
        nowhere = await expect_rejected(producer, events, command(payload("crm.lead.create", title="In", pipeline_id="nope"), actor="bob"), "not_found")
        assert into.data.message.replace("vip", "X") == nowhere.data.message.replace("nope", "X")
        await expect_rejected(producer, events, command(payload("crm.lead.change-pipeline", lead_id="B1", pipeline_id="vip"), actor="bob"), "not_found")
        # A mass action by filter takes only the leads bob may see: the hidden ones never show among its refusals.
        await producer.send(LEADS_COMMANDS, command(payload(
            "crm.leads.bulk-update", bulk_id="bob-web", action="assign", filter={"source": "web"}, responsible_id="bob"), actor="bob"))
        started = await wait_until(lambda: [m for m in events.got.of_type("crm.leads.bulk-started") if m.data.bulk_id == "bob-web"],
                                   what="bob's mass action started")
        assert started[0].data.total == 1, started[0].data
        moved = await send_and_wait(producer, events, command(payload("crm.lead.move", lead_id="V1", stage_id="processing"), actor="eve"))
        assert any(m.type == "crm.lead.stage-changed" for m in moved)

        # The analytics reports, fed from the same topics, narrow the same way.
        analytics = await start_analytics(settings_for, run_service, tmp_path / "analytics.duckdb")
        await wait_until(lambda: analytics.store.counts()["leads"] == 3 and analytics.store.counts()["pipelines"] == 2, timeout=60,
                         what="the analytics read model to catch up")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=analytics.asgi()), base_url="http://analytics") as http:
            async def leads_in_sources(headers):
                reply = await http.get("/reports/sources", headers=headers)
                assert reply.status_code == 200, reply.text
                return sum(row["leads"] for row in reply.json()["rows"])

            assert await leads_in_sources(BOB) == 1
            assert await leads_in_sources(EVE) == 3 and await leads_in_sources(ALICE) == 3
            for name in ("funnel", "stages", "sources", "reasons", "responsible", "trend"):
                assert (await http.get(f"/reports/{name}", params={"pipeline_id": "vip"}, headers=BOB)).status_code == 404, name
                assert (await http.get(f"/reports/{name}", params={"pipeline_id": "vip"}, headers=EVE)).status_code == 200, name
            responsible = (await http.get("/reports/responsible", headers=BOB)).json()["rows"]
            assert sum(r["leads"] for r in responsible) == 1
            page = await http.get("/", params={"token": "tok-bob"})
            assert page.status_code == 200 and "VIP" not in page.text

        # A lead sharing an e-mail with a hidden one: bob's card and list never name the hidden lead as its duplicate.
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="V3", title="Secret buyer", pipeline_id="vip", contact={"name": "Ivan", "email": "ivan@vip.example"}),
            actor="alice"))
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="B2", title="Guess", contact={"name": "Ivan", "email": "ivan@vip.example"}), actor="bob"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            async def duplicates_of(lead_id, headers):
                card = (await http.get(f"/leads/{lead_id}", headers=headers)).json()
                return [m["lead_id"] for m in card["duplicates"]]

            assert await wait_until(lambda: duplicates_of("B2", ALICE), what="B2's duplicate found") == ["V3"]
            assert await duplicates_of("B2", EVE) == ["V3"]
            assert await duplicates_of("B2", BOB) == []
            listed = (await http.get("/leads", params={"q": "guess"}, headers=BOB)).json()["items"]
            assert [(item["lead_id"], item["duplicates"]) for item in listed] == [("B2", [])]

        # Shown to everyone again: bob sees the leads.
        await send_and_wait(producer, events, command(payload("crm.pipeline.update", pipeline_id="vip", visible_to={"groups": []}), actor="alice"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            assert await _ids(http, BOB) == {"B1", "V1", "V2", "B2", "V3"}
            assert [m["lead_id"] for m in (await http.get("/leads/B2", headers=BOB)).json()["duplicates"]] == ["V3"]
        await producer.send(LEADS_COMMANDS, command(payload("crm.lead.update", lead_id="V2", description="now visible"), actor="bob"))
        await wait_until(lambda: [m for m in events.got.of_type("crm.lead.updated") if m.subject == "V2" and m.actorid == "bob"],
                         what="bob's change to V2")
