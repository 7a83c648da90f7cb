"""Composition root of the analytics service: ``create_app(settings)`` wires the store, the feed and the HTTP side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from contracts.topics import ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.messaging import BatchProcessor
from crmkit.principals import PrincipalRepository
from crmkit.service import Service
from services.analytics import api, openapi
from services.analytics.feed import TopicFeed
from services.analytics.handlers import AnalyticsHandlers
from services.analytics.repository import AnalyticsStore
from services.analytics.settings import AnalyticsSettings

# The directory topic too: the HTTP side admits only licensed users, and licences arrive there.
CONSUMES = (LEADS_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS, DIRECTORY_EVENTS)
PUBLISHES: tuple[str, ...] = ()  # reports over HTTP only; DLQ copies aside


def create_app(settings: AnalyticsSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Service:
    service = Service(
        settings,
        name="analytics",
        description="Reports on the funnel, sources, reasons, time in stage and responsible users; a dashboard.",
        publishes=PUBLISHES,
    )
    store = AnalyticsStore(settings.store_file(), memory_limit=settings.store_memory_limit, threads=settings.store_threads)
    principals = PrincipalRepository(service.db, settings.service_principals)
    handlers = AnalyticsHandlers(store, principals)
    processor = BatchProcessor(settings, service.bus, handlers.on_batch, service.metrics, service.health, "analytics")
    service.batch_handlers["analytics"] = handlers.on_batch  # the component tests feed it batches without Kafka
    feed = TopicFeed(settings, CONSUMES, store, handlers, processor)
    service.consumes.extend(CONSUMES)  # read by the feed, not a consumer group: topics and DLQs still made at start
    service.store = store  # type: ignore[attr-defined]  # tests and the benchmark read the store directly
    service.feed = feed  # type: ignore[attr-defined]

    def status() -> dict:
        return {"store": store.path, "lag": feed.lag(), "rebuilds": feed.rebuilds, "feed_error": feed.last_error, **store.counts()}

    async def close_store() -> None:
        await asyncio.to_thread(store.close)

    service.background(feed.run)
    service.readiness_detail(
        lambda: {"analytics_lag": feed.lag(), "analytics_rebuilds": feed.rebuilds, "analytics_feed_error": feed.last_error}
    )
    service.on_shutdown(close_store)
    service.add_routes(api.routes(settings, store, principals, status, feed.request_rebuild, clock))
    service.describe_http(openapi.OPERATIONS)
    return service
