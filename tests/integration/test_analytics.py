"""The analytics service on real Kafka and FerretDB: every report figure of a known set of leads, rebuild, redelivery, order."""

from __future__ import annotations

import csv
import io
import random

import httpx

from contracts import build_message, payload_class
from contracts.topics import DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_EVENTS, dlq_topic
from services.analytics import reports
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from tests import analytics_data as data
from services.analytics.app import CONSUMES
from tests.support import Collector, Producer, headers_of, make_topics, wait_until

TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-eve": "eve"}
ALICE = {"Authorization": "Bearer tok-alice"}
BOB = {"Authorization": "Bearer tok-bob"}


def grants() -> list:
    out = []
    for user in ("alice", "bob"):
        out.append(build_message(payload_class("crm.user.licence-granted").model_validate({"user_id": user, "licence": "crm"}), source="test/dir"))
    out.append(build_message(payload_class("crm.user.role-granted").model_validate({"user_id": "alice", "role": "admin"}), source="test/dir"))
    return out


async def start(settings_for, run_service, store_path, prefix_suffix: str = ""):
    overrides = {"store_path": str(store_path), "tokens": TOKENS}
    settings = settings_for(AnalyticsSettings, "analytics", **overrides)
    if prefix_suffix:
        settings = settings.model_copy(update={"topic_prefix": settings.topic_prefix + prefix_suffix})
    return await run_service(create_app(settings))


async def caught_up(service, leads: int = 12) -> None:
    def done() -> bool:
        return service.feed.end_offsets and service.feed.lag() == 0 and service.store.counts()["leads"] == leads

    await wait_until(done, timeout=60, what="the analytics read model to catch up")


def applied(service) -> int:
    """Records the read model has taken (or parked), over every partition."""
    return sum(service.store.positions().values())


def rows_of(payload: dict, name: str) -> list[tuple]:
    return [tuple(r[c] for c in reports.COLUMNS[name] if c not in ("name", "status")) for r in payload["rows"]]


async def get_rows(http: httpx.AsyncClient, name: str, **params) -> list[tuple]:
    response = await http.get(f"/reports/{name}", params=params, headers=ALICE)
    assert response.status_code == 200, response.text
    return rows_of(response.json(), name)


async def every_figure(http: httpx.AsyncClient) -> dict[str, list[tuple]]:
    """Each report as the HTTP side answers it, checked against the hand-computed figures."""
    got = {
        "funnel": await get_rows(http, "funnel"),
        "funnel p2": await get_rows(http, "funnel", pipeline_id="p2"),
        "funnel web": await get_rows(http, "funnel", source="web"),
        "funnel bob": await get_rows(http, "funnel", responsible_id="bob"),
        "funnel period": await get_rows(http, "funnel", created_from="2025-03-10", created_to="2025-03-17"),
        "sources": await get_rows(http, "sources"),
        "sources utm": await get_rows(http, "sources", by="utm_source"),
        "sources p2": await get_rows(http, "sources", pipeline_id="p2"),
        "reasons": await get_rows(http, "reasons"),
        "reasons web": await get_rows(http, "reasons", source="web"),
        "stages": await get_rows(http, "stages"),
        "stages p2": await get_rows(http, "stages", pipeline_id="p2"),
        "responsible": await get_rows(http, "responsible"),
        "responsible p2": await get_rows(http, "responsible", pipeline_id="p2"),
        "trend": await get_rows(http, "trend"),
        "trend day phone": await get_rows(http, "trend", period="day", source="phone"),
    }
    expected = {
        "funnel": data.FUNNEL_DEFAULT, "funnel p2": data.FUNNEL_P2, "funnel web": data.FUNNEL_DEFAULT_WEB,
        "funnel bob": data.FUNNEL_DEFAULT_BOB, "funnel period": data.FUNNEL_DEFAULT_MAR10_17, "sources": data.SOURCES,
        "sources utm": data.SOURCES_BY_UTM, "sources p2": data.SOURCES_P2, "reasons": data.REASONS, "reasons web": data.REASONS_WEB,
        "stages": data.STAGES_DEFAULT, "stages p2": data.STAGES_P2, "responsible": data.RESPONSIBLE,
        "responsible p2": data.RESPONSIBLE_P2, "trend": data.TREND_WEEK,
    }
    for key, want in expected.items():
        assert got[key] == want, key
    day = got["trend day phone"]
    assert len(day) == data.TREND_DAY_PHONE_DAYS
    assert {p: (c, q) for p, c, q in day if c or q} == data.TREND_DAY_PHONE
    return got


async def test_reports_from_the_topics_rebuild_restart_and_redelivery(endpoints, isolation, settings_for, run_service, tmp_path) -> None:
    await make_topics(endpoints, isolation.prefix, CONSUMES)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, dlq_topic(LEADS_EVENTS)
    ) as dlq:
        for message in grants():
            await producer.send(DIRECTORY_EVENTS, message, key=message.data.user_id)
        for topic, message in data.all_events():
            await producer.send(topic, message)
        await producer.send_raw(LEADS_EVENTS, b"{not json", key=b"L1")  # poison: parked, the rest goes on
        service = await start(settings_for, run_service, tmp_path / "a.duckdb")
        await caught_up(service)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://analytics")
        async with http:
            assert (await http.get("/reports/funnel")).status_code == 401
            assert (await http.get("/reports/funnel", headers={"Authorization": "Bearer tok-eve"})).status_code == 403
            await wait_until(lambda: dlq.got.records, what="the poison record in the DLQ")
            assert headers_of(dlq.got.records[0])["dlq-topic"] == isolation.prefix + LEADS_EVENTS
            assert dlq.got.records[0].value == b"{not json"
            first = await every_figure(http)

            # CSV and SVG carry the same figures.
            text = (await http.get("/reports/funnel.csv", headers=ALICE)).text
            table = list(csv.DictReader(io.StringIO(text)))
            assert [(r["stage_id"], int(r["reached"]), int(r["now_in"])) for r in table] == [(s, r, n) for s, r, n, _, _ in data.FUNNEL_DEFAULT]
            svg = await http.get("/reports/sources.svg", headers=ALICE)
            assert svg.headers["content-type"].startswith("image/svg+xml")
            assert "data-label='web' data-value='0.2'" in svg.text and "<script" not in svg.text

            # Bad filters are refused naming the parameter; nothing else changes.
            bad = await http.get("/reports/sources", params={"by": "colour"}, headers=ALICE)
            assert bad.status_code == 400 and "by must be one of" in bad.json()["message"]
            bad = await http.get("/reports/trend", params={"created_from": "yesterday"}, headers=ALICE)
            assert bad.status_code == 400 and "created_from" in bad.json()["message"]
            assert (await http.get("/reports/funnel", params={"pipeline_id": "nope"}, headers=ALICE)).status_code == 404
            assert (await http.get("/reports/profit", headers=ALICE)).status_code == 404

            # The dashboard: the token may come as ?token= (a plain page cannot send a header); bad filters
            # are shown on the page, escaped.
            signed_out = await http.get("/")
            assert signed_out.status_code == 401 and "action='/sign-in'" in signed_out.text  # a sign-in form, not JSON
            # Signing in puts the token into an HttpOnly cookie, so the browser's links carry none.
            refused = await http.post("/sign-in", data={"token": "no-such-token"})
            assert refused.status_code == 401 and "Unknown token" in refused.text
            signed = await http.post("/sign-in", data={"token": "tok-alice"})
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            cookie = signed.headers["set-cookie"]
            assert "crm_token=tok-alice" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            http.cookies.set("crm_token", "tok-alice")
            page = await http.get("/", params={"pipeline_id": "p2"})
            http.cookies.clear()
            assert page.status_code == 200 and "Funnel: p2" in page.text and "tok-alice" not in page.text
            page = await http.get("/", params={"token": "tok-alice", "pipeline_id": "p2"})
            assert page.status_code == 200 and "Funnel: p2" in page.text and "<script" not in page.text
            page = await http.get("/", params={"token": "tok-alice", "by": "<script>alert(1)</script>"})
            assert page.status_code == 400 and "filter-error" in page.text and "<script>" not in page.text
            page = await http.get("/", params={"token": "tok-alice", "pipeline_id": "<b>x</b>"})
            assert page.status_code == 200 and "is not a pipeline" in page.text and "<b>x</b>" not in page.text

            # Redelivered events (the same records again, at new offsets) count once.
            before = applied(service)
            again = [m for t, m in data.all_events() if m.type in ("crm.deal.created", "crm.lead.disqualified")]
            for message in again:
                await producer.send(QUALIFICATION_EVENTS, message)
            for topic, message in data.all_events()[:12]:  # pipelines and older cards of L1..L4
                await producer.send(topic, message)
            await wait_until(lambda: applied(service) == before + len(again) + 12, what="the redelivered records to be read")
            assert await every_figure(http) == first

            # A rebuild from the beginning of the topics gives the same figures; only administrators ask.
            assert (await http.post("/admin/rebuild", headers=BOB)).status_code == 403
            assert (await http.post("/admin/rebuild", headers=ALICE)).status_code == 202
            await wait_until(lambda: service.feed.rebuilds == 1, what="the rebuild to start")
            await caught_up(service)
            assert await every_figure(http) == first
            assert (await http.post("/admin/rebuild", headers=ALICE)).status_code == 202  # idempotent
            await wait_until(lambda: service.feed.rebuilds == 2, what="the second rebuild to start")
            await caught_up(service)
            assert await every_figure(http) == first
        positions = service.store.positions()
        await service.stop()

        # A restart resumes from the checkpoint kept with the data: nothing is read twice.
        service = await start(settings_for, run_service, tmp_path / "a.duckdb")
        assert service.store.positions() == positions
        await caught_up(service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://analytics") as http:
            assert await every_figure(http) == first
            metrics = (await http.get("/metrics")).text
        assert "crm_dead_lettered_total{" not in metrics  # the poison record was checkpointed too: not parked again


async def test_out_of_order_across_partitions_gives_the_same_figures(endpoints, isolation, settings_for, run_service, tmp_path) -> None:
    await make_topics(endpoints, isolation.prefix, CONSUMES)
    """Tasks and deals before the leads they name, and each lead's card versions newest first."""
    events = data.all_events()
    leads = [e for e in events if e[0] == LEADS_EVENTS]
    others = [e for e in events if e[0] != LEADS_EVENTS]
    random.Random(11).shuffle(others)
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        for message in grants():
            await producer.send(DIRECTORY_EVENTS, message, key=message.data.user_id)
        for topic, message in others:
            await producer.send(topic, message)
        for topic, message in reversed(leads):
            await producer.send(topic, message)
        service = await start(settings_for, run_service, tmp_path / "b.duckdb")
        await caught_up(service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://analytics") as http:
            await every_figure(http)
