"""The read side keeps principals and pipelines (LEADS_READ_ACCESS_CACHE_S), yet a change this instance applies counts at once."""

from __future__ import annotations

import httpx

from contracts.topics import DIRECTORY_EVENTS
from crmkit.principals import PrincipalRepository
from tests.integration.leads_helpers import directory_event, payload
from tests.integration.test_leads import leads_stack, send_and_wait
from tests.support import command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}
EVE = {"Authorization": "Bearer tok-eve"}


async def _stored(principals: PrincipalRepository, user_id: str, *, licensed: bool, groups: frozenset[str]) -> bool:
    found = await principals.get(user_id)
    return found.licensed == licensed and found.groups == groups


async def test_grants_revokes_and_visibility_applied_here_count_at_once_however_long_reads_are_kept(
    settings_for, run_service, endpoints, isolation,
):
    async with leads_stack(settings_for, run_service, endpoints, isolation, read_access_cache_s=60) as (service, producer, events):
        principals = PrincipalRepository(service.db, [])
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="eve", licence="crm"), key="eve")
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="vip", name="VIP", visible_to={"groups": ["vip-team"]}), actor="alice"))
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="B1", title="Open"), actor="bob"))
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="V1", title="Secret", pipeline_id="vip"), actor="alice"))
        await wait_until(lambda: _stored(principals, "eve", licensed=True, groups=frozenset()), what="eve licensed")

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            # Read (and so kept) before each change.
            assert (await http.get("/leads/V1", headers=EVE)).status_code == 404
            assert (await http.get("/leads/V1", headers=BOB)).status_code == 404
            assert (await http.get("/pipelines/vip/board", headers=BOB)).status_code == 404

            await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.group-granted", user_id="eve", group="vip-team"), key="eve")
            await wait_until(lambda: _stored(principals, "eve", licensed=True, groups=frozenset({"vip-team"})), what="eve's group")
            assert (await http.get("/leads/V1", headers=EVE)).json()["lead_id"] == "V1"

            await send_and_wait(producer, events, command(payload("crm.pipeline.update", pipeline_id="vip", visible_to={"groups": []}), actor="alice"))
            assert (await http.get("/leads/V1", headers=BOB)).status_code == 200
            assert (await http.get("/pipelines/vip/board", headers=BOB)).status_code == 200
            assert "vip" in {p["pipeline_id"] for p in (await http.get("/pipelines", headers=BOB)).json()["items"]}

            await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-revoked", user_id="eve", licence="crm"), key="eve")
            await wait_until(lambda: _stored(principals, "eve", licensed=False, groups=frozenset({"vip-team"})), what="eve's licence revoked")
            for path in ("/leads/B1", "/leads", "/pipelines", "/pipelines/default/board"):
                refused = await http.get(path, headers=EVE)
                assert refused.status_code == 403 and refused.json()["error"] == "not_licensed", path
