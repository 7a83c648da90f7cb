"""Prometheus metrics of one service instance, on a registry of its own (with the process collector)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector, generate_latest

# HTTP latency buckets: reads answer in milliseconds, uploads and reports take seconds.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric a service exposes on ``/metrics``; each one declared here is counted somewhere.

    The registry is private so that several services in one test process do not collide; the process
    and platform collectors are registered on it explicitly (the default registry would have them).
    """

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        labels = {"service": service}
        r = self.registry
        self.consumed = _bound(Counter("crm_consumed", "Records parsed from Kafka", ["service", "topic"], registry=r), labels)
        self.published = _bound(Counter("crm_published", "Messages published and acknowledged", ["service", "topic", "type"], registry=r), labels)
        self.dead_lettered = _bound(Counter(
            "crm_dead_lettered", "Records this service's consumer group parked on a DLQ, by reason code",
            ["service", "topic", "group", "reason"], registry=r), labels)
        self.rejected = _bound(Counter(
            "crm_commands_rejected", "Commands refused (crm.command.rejected published), by command type and reason code",
            ["service", "type", "reason_code"], registry=r), labels)
        self.replays = _bound(Counter(
            "crm_dlq_replays", "Replayed DLQ records this service's consumers met: applied (meant for their group) or skipped",
            ["service", "group", "outcome"], registry=r), labels)
        self.retries = _bound(Counter("crm_batch_retries", "Batch retries after an outage", ["service", "handler"], registry=r), labels)
        self.batch_seconds = _bound(Histogram("crm_batch_seconds", "Time to handle one batch", ["service", "handler"], registry=r), labels)
        self.handled = _bound(Counter("crm_handled", "Messages handed to a handler, by message type", ["service", "type"], registry=r), labels)
        self.handler_seconds = _bound(Counter(
            "crm_handler_seconds",
            "Handler time by message type: each batch's time shared among its messages (divide by crm_handled_total)",
            ["service", "type"], registry=r), labels)
        self.lag = _bound(Gauge(
            "crm_consumer_lag", "Records behind the log end, per consumer group and partition (refreshed every few seconds)",
            ["service", "group", "topic", "partition"], registry=r), labels)
        self.idle = _bound(Gauge(
            "crm_consumer_idle",
            "1 while a consumer group of this instance fetches nothing (nothing to do; its offsets kept at the log end)",
            ["service", "group"], registry=r), labels)
        self.http_requests = _bound(Counter(
            "crm_http_requests", "HTTP requests answered, by route template, method and status",
            ["service", "route", "method", "status"], registry=r), labels)
        self.http_seconds = _bound(Histogram(
            "crm_http_request_seconds", "HTTP request latency by route template and method",
            ["service", "route", "method"], registry=r, buckets=_HTTP_BUCKETS), labels)

    def handled_batch(self, types: Iterable[str], seconds: float) -> None:
        """Count a batch's messages by type and share its handler time among them."""
        counts = Tally(types)
        total = sum(counts.values())
        if not total:
            return
        for kind, count in counts.items():
            self.handled.labels(type=kind).inc(count)
            self.handler_seconds.labels(type=kind).inc(seconds * count / total)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _bound:
    """A metric with some labels fixed, so call sites pass only the varying ones."""

    def __init__(self, metric, fixed: dict[str, str]) -> None:
        self.metric = metric
        self._fixed = fixed

    def labels(self, **labels: str):
        return self.metric.labels(**self._fixed, **labels)
