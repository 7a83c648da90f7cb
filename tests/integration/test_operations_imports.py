"""Import management: GET /imports by owner and role, paginated; cancel and revert over HTTP and the CLI; job metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import httpx
import uvicorn
from typer.testing import CliRunner

from crmctl.cli import app as crm
from crmkit.principals import PrincipalRepository
from tests.integration.leads_helpers import grant
from tests.integration.test_importer import HEADER, csv_rows, import_stack
from tests.integration.test_operations_metrics import scrape, value
from tests.support import wait_until

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
ALICE, BOB = {"Authorization": "Bearer tok-alice"}, {"Authorization": "Bearer tok-bob"}


async def _upload(http: httpx.AsyncClient, headers: dict, name: str, prefix: str) -> str:
    body = "\r\n".join([HEADER, *csv_rows(2, prefix=prefix)]) + "\r\n"
    response = await http.post("/imports", headers=headers, files={"file": (name, body)})
    assert response.status_code == 202, response.text
    return response.json()["import_id"]


async def _state(http: httpx.AsyncClient, import_id: str, headers: dict = ALICE) -> str:
    return (await http.get(f"/imports/{import_id}", headers=headers)).json()["state"]


@contextlib.asynccontextmanager
async def _served(app):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="uvicorn to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_users_list_their_own_imports_administrators_all_and_act_on_them(settings_for, run_service, endpoints, isolation, tmp_path, monkeypatch):
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path, tokens=TOKENS, lag_interval_s=0.2) as stack:
        await grant(stack.producer, "alice", admin=True)
        await grant(stack.producer, "bob")
        principals = PrincipalRepository(stack.importer.db, [])
        await wait_until(lambda: _is_admin(principals, "alice"), what="alice an administrator at the importer")
        await wait_until(lambda: _licensed(principals, "bob"), what="bob licensed at the importer")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.importer.asgi()), base_url="http://importer") as http:
            bob_first = await _upload(http, BOB, "b1.csv", "b1")
            alices = await _upload(http, ALICE, "a1.csv", "a1")
            bob_second = await _upload(http, BOB, "b2.csv", "b2")
            for import_id in (bob_first, alices, bob_second):
                await wait_until(lambda i=import_id: _is(_state(http, i), "completed"), timeout=90, what=f"{import_id} completed")

            mine = (await http.get("/imports", headers=BOB)).json()
            assert [j["import_id"] for j in mine["items"]] == [bob_second, bob_first] and mine["next_offset"] is None
            page = (await http.get("/imports?limit=1", headers=BOB)).json()
            assert [j["import_id"] for j in page["items"]] == [bob_second] and page["next_offset"] == 1
            rest = (await http.get("/imports?limit=1&offset=1", headers=BOB)).json()
            assert [j["import_id"] for j in rest["items"]] == [bob_first] and rest["next_offset"] is None
            everyone = (await http.get("/imports", headers=ALICE)).json()
            assert {j["import_id"] for j in everyone["items"]} == {bob_first, alices, bob_second}
            assert {j["import_id"] for j in (await http.get("/imports?actor_id=bob", headers=ALICE)).json()["items"]} == {bob_first, bob_second}
            refused = await http.get("/imports?actor_id=alice", headers=BOB)
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
            assert (await http.get("/imports?limit=²", headers=BOB)).status_code == 400
            assert (await http.get("/imports?state=lost", headers=BOB)).status_code == 400
            assert (await http.get("/imports")).status_code == 401

            not_his = await http.post(f"/imports/{alices}/revert", headers=BOB)
            assert not_his.status_code == 404 and not_his.json()["error"] == "not_found", not_his.text
            over = await http.post(f"/imports/{bob_first}/cancel", headers=BOB)
            assert over.status_code == 409 and over.json()["error"] == "invalid_state"
            assert (await http.post("/imports/none-such/cancel", headers=BOB)).status_code == 404

            # The CLI, against the importer on a real socket, with the token from the environment.
            async with _served(stack.importer.asgi()) as url:
                monkeypatch.delenv("CRM_TOKEN", raising=False)
                no_token = await asyncio.to_thread(CliRunner().invoke, crm, ["imports", "list", "--url", url])
                assert no_token.exit_code == 2 and "CRM_TOKEN" in no_token.output
                monkeypatch.setenv("CRM_TOKEN", "tok-bob")
                listed = await asyncio.to_thread(CliRunner().invoke, crm, ["imports", "list", "--json", "--url", url])
                assert listed.exit_code == 0, listed.output
                assert [j["import_id"] for j in json.loads(listed.stdout)["items"]] == [bob_second, bob_first]
                reverted = await asyncio.to_thread(CliRunner().invoke, crm, ["imports", "revert", bob_first, "--url", url])
                assert reverted.exit_code == 0, reverted.output
                await wait_until(lambda: _is(_state(http, bob_first, BOB), "reverted"), timeout=60, what="bob's first import reverted")
                shown = await asyncio.to_thread(CliRunner().invoke, crm, ["imports", "show", bob_first, "--json", "--url", url])
                assert json.loads(shown.stdout)["removed"] == 2
                foreign = await asyncio.to_thread(CliRunner().invoke, crm, ["imports", "show", alices, "--url", url])
                assert foreign.exit_code == 1 and "not_found" in foreign.output, foreign.output

        async def jobs_counted():
            samples = await scrape(stack.importer)
            return (value(samples, "crm_import_jobs", state="completed") == 2
                    and value(samples, "crm_import_jobs", state="reverted") == 1)

        await wait_until(jobs_counted, what="jobs by state on the importer's /metrics")


async def _is(awaitable, expected) -> bool:
    return (await awaitable) == expected


async def _licensed(principals: PrincipalRepository, user: str) -> bool:
    return (await principals.get(user)).licensed


async def _is_admin(principals: PrincipalRepository, user: str) -> bool:
    return (await principals.get(user)).is_admin
