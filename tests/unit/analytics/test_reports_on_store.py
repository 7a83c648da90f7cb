"""Every report figure of the known set of leads, on an in-memory DuckDB store fed through the handlers (no Kafka)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from crmkit.messaging import Inbound
from services.analytics.filters import parse_filters
from services.analytics import reports
from services.analytics.handlers import AnalyticsHandlers
from services.analytics.repository import AnalyticsStore
from tests import analytics_data as data

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def inbound(events, offset0: int = 0) -> list[Inbound]:
    return [Inbound(topic, 0, offset0 + i, message) for i, (topic, message) in enumerate(events)]


def fed(events) -> AnalyticsStore:
    store = AnalyticsStore(":memory:")
    handlers = AnalyticsHandlers(store, principals=None)  # type: ignore[arg-type]  # no directory records here
    store.apply(handlers.changes(inbound(events)))
    return store


def figures(store: AnalyticsStore, name: str, **params) -> list[tuple]:
    report = reports.build(store, name, parse_filters(params), NOW)
    return [tuple(row[c] for c in reports.COLUMNS[name] if c not in ("name", "status")) for row in report.rows]


def test_every_figure_of_the_known_leads() -> None:
    check_figures(fed(data.all_events()))


def check_figures(store: AnalyticsStore) -> None:
    assert figures(store, "funnel") == data.FUNNEL_DEFAULT
    assert figures(store, "funnel", pipeline_id="p2") == data.FUNNEL_P2
    assert figures(store, "funnel", source="web") == data.FUNNEL_DEFAULT_WEB
    assert figures(store, "funnel", responsible_id="bob") == data.FUNNEL_DEFAULT_BOB
    assert figures(store, "funnel", created_from="2025-03-10", created_to="2025-03-17") == data.FUNNEL_DEFAULT_MAR10_17
    assert figures(store, "sources") == data.SOURCES
    assert figures(store, "sources", by="utm_source") == data.SOURCES_BY_UTM
    assert figures(store, "sources", pipeline_id="p2") == data.SOURCES_P2
    assert figures(store, "reasons") == data.REASONS
    assert figures(store, "reasons", source="web") == data.REASONS_WEB
    assert figures(store, "stages") == data.STAGES_DEFAULT
    assert figures(store, "stages", pipeline_id="p2") == data.STAGES_P2
    assert figures(store, "responsible") == data.RESPONSIBLE
    assert figures(store, "responsible", pipeline_id="p2") == data.RESPONSIBLE_P2
    assert figures(store, "trend") == data.TREND_WEEK
    day = figures(store, "trend", period="day", source="phone")
    assert len(day) == data.TREND_DAY_PHONE_DAYS
    assert {p: (c, q) for p, c, q in day if c or q} == data.TREND_DAY_PHONE


def test_any_order_and_duplicates_give_the_same_figures() -> None:
    events = data.all_events()
    shuffled = events * 2  # every record twice, newer card versions before older ones
    random.Random(7).shuffle(shuffled)
    check_figures(fed(shuffled))


def test_records_before_the_checkpoint_are_skipped() -> None:
    store = fed(data.all_events())
    handlers = AnalyticsHandlers(store, principals=None)  # type: ignore[arg-type]
    # The same offsets again, carrying an older card of L1: a redelivery, skipped by offset.
    stale = [(t, m) for t, m in data.all_events()]
    stale[4] = stale[2]
    changes = handlers.changes(inbound(stale))
    assert changes.leads == [] and changes.offsets == {}
    check_figures(store)


def test_unknown_pipeline_is_refused() -> None:
    with pytest.raises(reports.UnknownPipeline):
        reports.build(fed(data.all_events()), "funnel", parse_filters({"pipeline_id": "nope"}), NOW)


def test_a_store_that_cannot_be_written_is_an_outage_not_bad_data() -> None:
    from crmkit.errors import is_transient
    from services.analytics.repository import StoreUnavailable

    assert is_transient(StoreUnavailable("disk full"))  # retried; the records are not parked in the DLQ
