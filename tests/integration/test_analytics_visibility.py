"""The analytics dashboard over HTTP for two users: its pick lists offer nothing that comes only from a pipeline hidden from one."""

from __future__ import annotations

import re

import httpx

from contracts import build_message, payload_class
from contracts.topics import DIRECTORY_EVENTS, LEADS_EVENTS
from services.analytics.app import CONSUMES
from tests import analytics_data as data
from tests.integration.test_analytics import caught_up, grants, start
from tests.support import Producer, make_topics, wait_until

_SELECT = re.compile(r"<select name='(\w+)'>(.*?)</select>", re.S)
_OPTION = re.compile(r"<option value='([^']*)'")


def _directory(type_name: str, **fields):
    return build_message(payload_class(type_name).model_validate(fields), source="test/dir")


def _shown_only_to(pipeline_id: str, name: str, stages, group: str, version: int):
    """The pipeline's card again, now shown to one group only."""
    return build_message(payload_class("crm.pipeline.updated").model_validate({
        "pipeline_id": pipeline_id, "name": name, "transition_mode": "manual", "is_default": pipeline_id == "default",
        "version": version, "visible_to": {"groups": [group]},
        "stages": [{"stage_id": s, "name": n, "status": k, "position": i} for i, (s, n, k) in enumerate(stages)],
    }), source="crm/leads")


async def _page(http: httpx.AsyncClient, token: str) -> tuple[str, dict[str, list[str]]]:
    reply = await http.get("/", params={"token": token})
    assert reply.status_code == 200, reply.text
    return reply.text, {name: _OPTION.findall(body) for name, body in _SELECT.findall(reply.text)}


async def test_the_dashboards_pick_lists_are_narrowed_to_the_pipelines_a_user_sees(endpoints, isolation, settings_for, run_service, tmp_path):
    await make_topics(endpoints, isolation.prefix, CONSUMES)
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        for message in [*grants(), _directory("crm.user.licence-granted", user_id="eve", licence="crm"),
                        _directory("crm.user.group-granted", user_id="eve", group="p2-team")]:
            await producer.send(DIRECTORY_EVENTS, message, key=message.data.user_id)
        for topic, message in data.all_events():
            await producer.send(topic, message)
        # p2 (Partners: carol's leads, the only `partner` source) is shown to the group p2-team only.
        await producer.send(LEADS_EVENTS, _shown_only_to("p2", "Partners", data.P2_STAGES, "p2-team", 2), key="p2")
        service = await start(settings_for, run_service, tmp_path / "visibility.duckdb")
        await caught_up(service)
        await wait_until(lambda: service.store.visibility().get("p2") == (("p2-team",), ()), what="p2 shown to p2-team only")

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://analytics") as http:
            eve_page, eve = await _page(http, "tok-eve")
            bob_page, bob = await _page(http, "tok-bob")
            assert "p2" in eve["pipeline_id"] and "carol" in eve["responsible_id"] and "partner" in eve["source"]
            assert bob["pipeline_id"] == ["default"]
            assert "carol" not in bob["responsible_id"] and "partner" not in bob["source"]
            assert {"alice", "bob"} <= set(bob["responsible_id"]) and "web" in bob["source"]  # his own pipelines' names stay
            for hidden in ("carol", "partner", "Partners"):
                assert hidden not in bob_page, hidden
                assert hidden in eve_page, hidden

            # The default pipeline hidden from bob too: he sees no pipeline, and none of its stage names.
            await producer.send(LEADS_EVENTS, _shown_only_to("default", "Default", data.DEFAULT_STAGES, "p2-team", 2), key="default")
            await wait_until(lambda: service.store.visibility().get("default") == (("p2-team",), ()), what="default hidden from bob")
            bob_page, bob = await _page(http, "tok-bob")
            assert bob["responsible_id"] == [""] and bob["source"] == [""]  # only "anyone" / "any"
            for hidden in ("Processing", "Unqualified", "alice"):
                assert hidden not in bob_page, hidden
            for name in ("funnel", "stages"):
                assert (await http.get(f"/reports/{name}", params={"token": "tok-bob"})).status_code == 404, name
                assert (await http.get(f"/reports/{name}", params={"token": "tok-eve"})).status_code == 200, name
            assert (await http.get("/reports/sources", params={"token": "tok-bob"})).json()["rows"] == []
