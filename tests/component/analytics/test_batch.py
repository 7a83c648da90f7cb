"""The analytics handler as ``create_app`` wires it, on its real DuckDB file and database, fed batches without Kafka.

One batch of every kind of event the service reads gives the hand-computed figures of
``tests.analytics_data``; a redelivery, before or after a restart on the same file, changes no
figure; an older version arriving late (a card, a task) and a deal published twice change nothing.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import httpx

from contracts import Envelope, build_message, payload_class
from contracts.topics import DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.messaging import Inbound
from services.analytics import reports
from services.analytics.app import create_app
from services.analytics.filters import Filters
from services.analytics.settings import AnalyticsSettings
from tests import analytics_data as data
from tests.component.support import built

NOW = datetime(2026, 1, 5, tzinfo=UTC)
ALICE = {"Authorization": "Bearer tok-alice"}


def grant(kind: str, **fields) -> tuple[str, Envelope]:
    return DIRECTORY_EVENTS, build_message(payload_class(kind).model_validate(fields), source="test/dir")


GRANTS = [grant("crm.user.licence-granted", user_id="alice", licence="crm"), grant("crm.user.role-granted", user_id="alice", role="admin")]


def batch(messages: list[tuple[str, Envelope]], start: int = 0) -> list[Inbound]:
    """A consumed batch at offsets from ``start`` (one partition per topic, as the feed reads them)."""
    return [Inbound(topic, 0, start + i, message) for i, (topic, message) in enumerate(messages)]


@contextlib.asynccontextmanager
async def analytics(settings_for, store_path):
    """The service on the DuckDB file ``store_path``; the file is closed afterwards (a restart opens it again)."""
    settings = settings_for(AnalyticsSettings, "analytics", store_path=str(store_path), tokens={"tok-alice": "alice"})
    service = create_app(settings, clock=lambda: NOW)
    try:
        async with built(service):
            yield service
    finally:
        service.store.close()


def rows(name: str, service, **filters) -> list[tuple]:
    report = reports.build(service.store, name, Filters(**filters), NOW)
    return [tuple(r[c] for c in reports.COLUMNS[name] if c not in ("name", "status")) for r in report.rows]


def figures(service) -> dict:
    """Every figure a redelivery must leave alone: report rows, row counts and the checkpoint."""
    return {
        "funnel": rows("funnel", service),
        "funnel p2": rows("funnel", service, pipeline_id="p2"),
        "sources": rows("sources", service),
        "reasons": rows("reasons", service),
        "stages": rows("stages", service),
        "responsible": rows("responsible", service),
        "counts": service.store.counts(),
        "positions": service.store.positions(),
    }


async def test_one_batch_of_every_event_stores_the_read_model_the_reports_show(settings_for, tmp_path) -> None:
    async with analytics(settings_for, tmp_path / "a.duckdb") as service:
        handle = service.batch_handlers["analytics"]
        events = [*GRANTS, *data.all_events()]
        assert await handle(batch(events)) == ()  # reports over HTTP only: a batch publishes nothing

        assert service.store.counts() == {"leads": 12, "tasks": 7, "deals": 3, "pipelines": 2}
        # The checkpoint: past each topic's last record, in the same transaction as the rows.
        last = {(topic, 0): offset + 1 for offset, (topic, _) in enumerate(events)}
        assert service.store.positions() == last and len(last) == 4
        got = figures(service)
        assert got["funnel"] == data.FUNNEL_DEFAULT and got["funnel p2"] == data.FUNNEL_P2
        assert got["sources"] == data.SOURCES and got["reasons"] == data.REASONS
        assert got["stages"] == data.STAGES_DEFAULT and got["responsible"] == data.RESPONSIBLE

        # The HTTP side reads the same store, and admits alice because her licence came in the batch.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://analytics") as http:
            answer = await http.get("/reports/sources", headers=ALICE)
            assert answer.status_code == 200, answer.text
            assert [(r["value"], r["leads"], r["deals_created"]) for r in answer.json()["rows"]] == [
                (v, n, deals) for v, n, *_, deals in data.SOURCES
            ]


async def test_a_redelivered_batch_changes_no_figure_even_after_a_restart(settings_for, tmp_path) -> None:
    path = tmp_path / "r.duckdb"
    delivered = batch([*GRANTS, *data.all_events()])
    async with analytics(settings_for, path) as service:
        handle = service.batch_handlers["analytics"]
        await handle(delivered)
        first = figures(service)
        await handle(delivered)  # the feed lost its place before the next poll
        assert figures(service) == first
        await handle(delivered[: len(delivered) // 2])  # a stale part of it: the checkpoint must not go back
        assert figures(service) == first

    async with analytics(settings_for, path) as restarted:  # the checkpoint is in the file, with the rows
        assert restarted.store.positions() == first["positions"]
        await restarted.batch_handlers["analytics"](delivered)
        assert figures(restarted) == first


async def test_late_older_versions_and_a_deal_published_twice_change_nothing(settings_for, tmp_path) -> None:
    async with analytics(settings_for, tmp_path / "o.duckdb") as service:
        handle = service.batch_handlers["analytics"]
        events = [*GRANTS, *data.all_events()]
        await handle(batch(events))
        first = figures(service)

        by_type = {}
        for topic, message in events:
            by_type.setdefault((message.type, getattr(message.data, "lead_id", None)), (topic, message))
        late = [
            by_type[("crm.lead.created", "L1")],  # L1's version 1 (in "new") after its version 3 (qualified)
            by_type[("crm.lead.created", "L7")],  # L7's version 1, after it was disqualified and reopened
            next((t, m) for t, m in events if m.type == "crm.task.created" and m.data.task_id == "K3"),  # K3 open, after it was done
            by_type[("crm.deal.created", "L1")],  # the producer's retry: the same deal at a new offset
        ]
        start = len(events)
        await handle(batch(late, start))

        after = figures(service)
        assert {k: v for k, v in after.items() if k != "positions"} == {k: v for k, v in first.items() if k != "positions"}
        # Those records are new offsets, so the checkpoint does move past them (they are not read again).
        assert after["positions"][(LEADS_EVENTS, 0)] == start + 2
        assert after["positions"][(QUALIFICATION_EVENTS, 0)] == start + 4
