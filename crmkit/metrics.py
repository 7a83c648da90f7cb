"""Prometheus metrics of one service instance, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """Counters for consumption, publishing, DLQ and retries; one registry per service instance."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"service": service}
        self.consumed = _bound(Counter("crm_consumed", "Records parsed from Kafka", ["service", "topic"], registry=self.registry), labels)
        self.published = _bound(Counter("crm_published", "Messages published and acknowledged", ["service", "topic", "type"], registry=self.registry), labels)
        self.dead_lettered = _bound(Counter("crm_dead_lettered", "Records sent to a DLQ", ["service", "topic"], registry=self.registry), labels)
        self.rejected = _bound(Counter("crm_commands_rejected", "Commands refused", ["service", "type", "reason_code"], registry=self.registry), labels)
        self.retries = _bound(Counter("crm_batch_retries", "Batch retries after an outage", ["service", "handler"], registry=self.registry), labels)
        self.batch_seconds = _bound(Histogram("crm_batch_seconds", "Time to handle one batch", ["service", "handler"], registry=self.registry), labels)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _bound:
    """A metric with some labels fixed, so call sites pass only the varying ones."""

    def __init__(self, metric, fixed: dict[str, str]) -> None:
        self._metric = metric
        self._fixed = fixed

    def labels(self, **labels: str):
        return self._metric.labels(**self._fixed, **labels)
