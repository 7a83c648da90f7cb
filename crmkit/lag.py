"""Consumer lag read from the brokers: committed offsets of a group against the log end of its partitions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .metrics import Metrics
from .settings import ServiceSettings

log = logging.getLogger("crmkit.lag")


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far one consumer group is behind on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing there yet
    end: int
    lag: int


class LagReader:
    """An admin client and an offsets-only consumer (no group): reads lag without joining any group."""

    def __init__(self, client_options: dict) -> None:
        """``client_options``: aiokafka's connection keywords (bootstrap servers, protocol, credentials)."""
        self._admin = AIOKafkaAdminClient(request_timeout_ms=10_000, **client_options)
        self._offsets = AIOKafkaConsumer(enable_auto_commit=False, **client_options)
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._admin.start()
            await self._offsets.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._offsets.stop()
            await self._admin.close()

    async def groups(self, prefix: str = "") -> list[str]:
        """Consumer groups the brokers know, optionally only those starting with ``prefix``."""
        found = await self._admin.list_consumer_groups()
        return sorted({g[0] for g in found if g[0].startswith(prefix)})

    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        """The group's lag on every partition of ``topics`` (default: the topics it has committed on).

        A partition the group never committed on counts from the log start: its whole content is
        still ahead of the group (it starts from the earliest offset).
        """
        committed = await self._admin.list_consumer_group_offsets(group)
        names = list(topics) if topics is not None else sorted({tp.topic for tp in committed})
        if not names:
            return []
        partitions = []
        for described in await self._admin.describe_topics(names):
            if described.get("error_code", 0):
                continue  # not created yet
            partitions += [TopicPartition(described["topic"], p["partition"]) for p in described["partitions"]]
        if not partitions:
            return []
        ends = await self._offsets.end_offsets(partitions)
        starts = await self._offsets.beginning_offsets([tp for tp in partitions if tp not in committed])
        result = []
        for tp in sorted(partitions):
            at = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None
            start = at if at is not None else starts.get(tp, 0)
            result.append(PartitionLag(group, tp.topic, tp.partition, at, ends[tp], max(0, ends[tp] - start)))
        return result


class LagMonitor:
    """Refreshes ``crm_consumer_lag`` for a service's consumer groups every ``lag_interval_s`` seconds."""

    def __init__(self, settings: ServiceSettings, metrics: Metrics, client_options: dict | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._client_options = client_options or {}
        self.groups: dict[str, list[str]] = {}  # group id -> physical topic names

    def watch(self, group: str, topics: Sequence[str]) -> None:
        self.groups.setdefault(group, []).extend(t for t in topics if t not in self.groups.get(group, []))

    async def refresh(self, reader: LagReader) -> None:
        for group, topics in self.groups.items():
            for row in await reader.lag(group, topics):
                self._metrics.lag.labels(
                    group=group, topic=self._settings.contract_topic(row.topic), partition=str(row.partition)
                ).set(row.lag)

    async def run_forever(self) -> None:
        reader = LagReader(self._client_options or self._settings.kafka_client_options())
        try:
            while True:
                try:
                    await reader.start()
                    await self.refresh(reader)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the next pass tries again; lag is a view, never a reason to stop
                    log.info("consumer lag not read this time (%s: %s)", type(exc).__name__, exc)
                await asyncio.sleep(self._settings.lag_interval_s)
        finally:
            await reader.stop()
