"""The replica's own reader of the topics: every partition assigned by hand, resumed from the store's checkpoint.

Each replica holds a whole copy of the read model, so it reads every partition itself instead of
sharing them in a consumer group; the offsets it reached live in the store beside the rows, not
in Kafka, so they can never disagree with the data (a group's committed offsets could run ahead
of a store that was lost, or behind one that was rebuilt).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from crmkit.errors import is_transient
from crmkit.messaging import BatchProcessor
from crmkit.service import stop_if_cancelled
from services.analytics.handlers import AnalyticsHandlers
from services.analytics.repository import AnalyticsStore
from services.analytics.settings import AnalyticsSettings

log = logging.getLogger("services.analytics.feed")


class TopicFeed:
    """Reads the consumed topics from the checkpoint on, through ``BatchProcessor`` (DLQ, retries)."""

    def __init__(
        self,
        settings: AnalyticsSettings,
        topics: Sequence[str],
        store: AnalyticsStore,
        handlers: AnalyticsHandlers,
        processor: BatchProcessor,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._store = store
        self._handlers = handlers
        self._processor = processor
        self._rebuild = asyncio.Event()
        self.rebuilds = 0
        self.last_error: str | None = None
        self.end_offsets: dict[tuple[str, int], int] = {}

    def request_rebuild(self) -> None:
        """Empty the read model and read every topic again from the beginning (at the next poll)."""
        self._rebuild.set()

    def lag(self) -> int:
        """Records on the topics not yet in the read model, as of the last look at the ends."""
        positions = self._handlers.positions
        return sum(max(0, end - positions.get(key, 0)) for key, end in self.end_offsets.items())

    async def _open(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self._settings.kafka_client_options(),
            client_id=f"crm-{self._settings.service_name}-feed",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            consumer.assign(await self._partitions())
            self._seek_to_checkpoint(consumer)
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _partitions(self) -> list[TopicPartition]:
        """Every partition of the consumed topics, as the brokers describe them now."""
        admin = AIOKafkaAdminClient(**self._settings.kafka_client_options(), request_timeout_ms=10_000)
        await admin.start()
        try:
            described = await admin.describe_topics([self._settings.topic(t) for t in self._topics])
        finally:
            await admin.close()
        found = []
        for topic in described:
            if topic.get("error_code"):
                raise KafkaError(f"topic {topic.get('topic')} cannot be described (error {topic['error_code']})")
            found.extend(TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"])
        return sorted(found)

    def _seek_to_checkpoint(self, consumer: AIOKafkaConsumer) -> None:
        positions = self._handlers.positions
        for tp in consumer.assignment():
            consumer.seek(tp, positions.get((self._settings.contract_topic(tp.topic), tp.partition), 0))

    async def _refresh_ends(self, consumer: AIOKafkaConsumer) -> None:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        self.end_offsets = {(self._settings.contract_topic(tp.topic), tp.partition): o for tp, o in ends.items()}

    async def run(self) -> None:
        """Poll, apply, repeat; any failure closes the consumer and opens it again from the checkpoint.

        A failure that is not an outage (a bug) is logged and shown in /health/ready rather than ending
        the loop: the service would otherwise answer with figures that silently stop moving.
        """
        while True:
            try:
                consumer = await self._open()
                try:
                    self.last_error = None
                    await self._poll(consumer)
                finally:
                    await consumer.stop()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                transient = is_transient(exc)
                log.log(logging.WARNING if transient else logging.ERROR, "analytics feed: %s; reopening from the checkpoint",
                        exc, exc_info=not transient)
                await asyncio.sleep(1.0 if transient else 5.0)
            stop_if_cancelled()

    async def _gather(self, consumer: AIOKafkaConsumer) -> list:
        """Records for one transaction: up to ``batch_max_records`` or what ``batch_timeout_ms`` brings.

        Each transaction scans the lead columns once to replace the cards it holds (about 25 ms at a
        million leads here), so batches are large: 20,000 records cost that scan once, not twenty times.
        """
        limit, loop = self._settings.batch_max_records, asyncio.get_running_loop()
        got = await consumer.getmany(timeout_ms=self._settings.poll_timeout_ms, max_records=limit)
        records = [r for part in got.values() for r in part]
        deadline = loop.time() + self._settings.batch_timeout_ms / 1000
        while records and len(records) < limit and loop.time() < deadline:
            got = await consumer.getmany(timeout_ms=max(1, int((deadline - loop.time()) * 1000)), max_records=limit - len(records))
            more = [r for part in got.values() for r in part]
            if not more:
                break
            records.extend(more)
        return records

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        polls = 0
        while True:
            if self._rebuild.is_set():
                self._rebuild.clear()
                await asyncio.to_thread(self._store.reset)
                self._handlers.reload_positions()
                self._seek_to_checkpoint(consumer)
                self.rebuilds += 1
            if polls % 25 == 0:
                await self._refresh_ends(consumer)
            polls += 1
            records = await self._gather(consumer)
            if records:
                await self._processor.process(records)
                await self._handlers.advance([(self._settings.contract_topic(r.topic), r.partition, r.offset) for r in records])
            elif polls % 25 != 1:
                await self._refresh_ends(consumer)  # idle: keep the lag figure current
            stop_if_cancelled()
