"""Kafka plumbing shared by the services: batch consumption with a DLQ, bulk-confirmed publishing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from contracts import ContractError, Envelope, parse_message
from contracts.topics import DLQ_GROUP, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_REASON_CODE
from contracts.topics import DLQ_REPLAY_GROUP, DLQ_SERVICE, DLQ_TOPIC, dlq_topic

from .followups import PublishThen
from .errors import UNSENDABLE, is_transient
from .metrics import Metrics
from .records import rejection_of, routing_of
from .logs import message_fields
from .tracing import MessageSpans, carry_traces, traceparent_for
from .partitioning import partition_for
from .settings import ServiceSettings

log = logging.getLogger("crmkit.messaging")

# A DLQ copy larger than this is cut so that the DLQ record itself always fits a Kafka request.
_DLQ_VALUE_LIMIT = 900_000

_CONTENT_TYPE = b"application/cloudevents+json"
# The producer's request limit; a record larger than this is refused as aiokafka's send refuses it.
_MAX_REQUEST_BYTES = 2 * 1024 * 1024
_RECORD_OVERHEAD = 4096  # headers and batch framing, generously
# Header naming the process that produced a record (see Bus.instance_id).
PRODUCER_INSTANCE = "crm-producer-instance"


class Published(Protocol):
    """What the bus and the handlers read of a message to publish: an ``Envelope``, or a service's
    lighter form of one, made from attributes it built itself and serialised by it."""

    traceparent: str | None
    tracestate: str | None

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def causationid(self) -> str | None: ...
    @property
    def data(self) -> Any: ...
    def to_json_bytes(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    """One parsed record handed to a service handler."""

    topic: str  # the contract topic name, without any deployment prefix
    partition: int
    offset: int
    message: Envelope


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message a handler asks to publish once its effects are stored."""

    topic: str  # contract topic name
    message: Published
    key: str | None = None  # defaults to the subject (lead id), else the message id
    value: bytes | None = None  # the message already serialized, when the handler has it at hand

    def key_bytes(self) -> bytes:
        return (self.key or self.message.subject or self.message.id).encode()


BatchHandler = Callable[[list[Inbound]], Awaitable[Sequence[Outbound]]]
# Asked once per batch, before any record is parsed: the message types the handler will act on now
# (None: every type). A record whose ``ce-type`` header names another type is passed over unparsed.
TypeSelector = Callable[[], Awaitable[Container[str] | None]]
# How a record's value (of a contract topic) becomes the message its handler reads; raises ContractError
# for a record it cannot read. The default reads the whole contract model.
RecordParser = Callable[[str, bytes], Envelope]


class Bus:
    """Publishes messages with an idempotent producer, confirming a whole batch at once.

    It drives aiokafka directly rather than through the FastStream broker: a handler's batch is
    a thousand messages, and the broker's per-message publish machinery cost more than the send.
    """

    def __init__(self, settings: ServiceSettings, metrics: Metrics, client_id: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        # Sent as a header on every record, so this process can tell its own records apart when it
        # reads a topic it also writes (the leads index feed skips what it already applied).
        self.instance_id = uuid.uuid4().hex
        self._instance_header = (PRODUCER_INSTANCE, self.instance_id.encode())

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self._settings.kafka_client_options(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=_MAX_REQUEST_BYTES,
            request_timeout_ms=30_000,
            # KAFKA_COMPRESSION_TYPE (off by default). zstd, measured: bench/bench_bus_compression.py (60,000
            # import-shaped records, four alternated rounds, one node, twice) Kafka 6.0-6.2 -> 4.3-4.7 µs a record,
            # the producer the same (17.4 / 17.6), the consumer 7.9 -> 5.3; stored 1,487 -> 96 bytes a record.
            compression_type=None if self._settings.kafka_compression_type == "none" else self._settings.kafka_compression_type,
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaConnectionError("the producer is not started")
        return self._producer

    async def _send(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        return await self._started().send(topic, value, key=key, headers=headers)

    async def publish(self, outbound: Sequence[Outbound]) -> None:
        """Send every message and return only when the broker has acknowledged all of them.

        The records are packed into one batch per partition here and each batch handed to the
        producer whole: one acknowledgement future a batch instead of one a record (a leads batch
        publishes a thousand events; aiokafka's per-record ``send`` cost 17 µs each, this 9 µs).
        A key's records keep their order: they share a partition, and a partition's batches go out
        in the order they were handed over.
        """
        if not outbound:
            return
        producer = self._started()
        partitions: dict[str, list[int]] = {}
        records = []
        counts: Counter[tuple[str, str]] = Counter()
        rejections: Counter[tuple[str, str]] = Counter()
        refused_commands: set[str | None] = set()
        for item in outbound:  # everything is checked before anything is sent
            topic = self._settings.topic(item.topic)
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            key = item.key_bytes()
            kind = item.message.type
            value = item.value
            if item.message.traceparent is None:
                # Published on the service's own initiative (a due-task pass, a job's event): it starts its trace.
                item.message.traceparent, value = traceparent_for(item.message.id), None
            if value is None:
                value = item.message.to_json_bytes()
            if len(value) + len(key) > _MAX_REQUEST_BYTES - _RECORD_OVERHEAD:
                raise MessageSizeTooLargeError(
                    f"a {kind} of {len(value):,} bytes (subject {item.message.subject or '-'}) exceeds the "
                    f"{_MAX_REQUEST_BYTES:,}-byte record limit"
                )
            headers = [("content-type", _CONTENT_TYPE), ("ce-type", kind.encode()), self._instance_header]
            records.append((topic, partition_for(key, partitions[topic]), key, value, headers))
            counts[(item.topic, kind)] += 1
            refused = rejection_of(item.message)
            if refused is not None:
                # A qualify refused before anything is read is answered twice (crm.command.rejected and
                # crm.qualification.rejected): one refused command, counted once. Asked of refusals only:
                # a payload without the field answers by raising, which made publish 6.0 against 3.3 µs a record.
                command_id = getattr(item.message.data, "command_id", None)
                if command_id not in refused_commands:
                    refused_commands.add(command_id)
                    rejections[refused] += 1
        batches: dict[tuple[str, int], Any] = {}
        futures = []
        for topic, partition, key, value, headers in records:
            batch = batches.get((topic, partition))
            if batch is None or batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                if batch is not None:  # full: hand it over, start the partition's next one
                    futures.append(await self._send_batch(batch, topic, partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)  # a first record always fits
        for (topic, partition), batch in batches.items():
            futures.append(await self._send_batch(batch, topic, partition))
        await asyncio.gather(*futures)
        self._count(counts, rejections)

    def _count(self, published: Counter[tuple[str, str]], rejections: Counter[tuple[str, str]]) -> None:
        for (topic, kind), count in published.items():
            self._metrics.published.labels(topic=topic, type=kind).inc(count)
        # Counted here, the one path every refusal of every service takes, once it is acknowledged.
        for (kind, code), count in rejections.items():
            self._metrics.rejected.labels(type=kind, reason_code=code).inc(count)

    async def _send_batch(self, batch: Any, topic: str, partition: int) -> Any:
        batch.close()
        return await self._started().send_batch(batch, topic, partition=partition)

    async def dead_letter(self, records: Sequence[tuple[Any, str, str]], group: str) -> None:
        """Copy bad records to ``<topic>.dlq`` with the reason, where they came from and which group parked them.

        ``records`` are (record, reason code, reason text); the code is one of ``DLQ_REASON_CODES``.
        """
        futures = []
        for record, code, reason in records:
            value = record.value or b""
            if len(value) > _DLQ_VALUE_LIMIT:
                reason = f"{reason} (record of {len(value)} bytes cut to {_DLQ_VALUE_LIMIT})"
                value = value[:_DLQ_VALUE_LIMIT]
            headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for k, v in (record.headers or ())}
            headers.update(
                {
                    DLQ_REASON: reason[:2000],
                    DLQ_TOPIC: record.topic,
                    DLQ_PARTITION: str(record.partition),
                    DLQ_OFFSET: str(record.offset),
                    DLQ_GROUP: group,
                    DLQ_SERVICE: self._client_id.removeprefix("crm-"),
                    DLQ_REASON_CODE: code,
                }
            )
            headers.pop(DLQ_REPLAY_GROUP, None)  # a replayed record that fails again is parked afresh
            futures.append(
                await self._send(dlq_topic(record.topic), value, record.key, [(k, v.encode()) for k, v in headers.items()])
            )
            self._metrics.dead_lettered.labels(topic=self._settings.contract_topic(record.topic), group=group, reason=code).inc()
            log.warning("dead-lettered %s[%s]@%s for group %s: %s", record.topic, record.partition, record.offset, group, reason)
        await asyncio.gather(*futures)


class Health:
    """What the service last saw of its dependencies, for readiness and logs."""

    def __init__(self) -> None:
        self.started = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.retrying = False

    def outage(self, exc: BaseException) -> None:
        self.retrying = True
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.last_error_at = time.time()

    def recovered(self) -> None:
        self.retrying = False


class BatchProcessor:
    """Parses a batch, dead-letters what cannot be read, runs the handler, publishes, retries outages.

    The offsets of a batch are committed by FastStream only after ``process`` returns, that is
    after the handler stored its effects and every resulting message was acknowledged.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        bus: Bus,
        handler: BatchHandler,
        metrics: Metrics,
        health: Health,
        name: str,
        group: str = "",
        service: str = "",
        select: TypeSelector | None = None,
        parse: RecordParser = parse_message,
    ) -> None:
        self._select = select
        self._parse = parse
        self._settings = settings
        self._bus = bus
        self._handler = handler
        self._metrics = metrics
        self._health = health
        self._name = name
        self.group = group or settings.group_id
        self._service = service or name

    async def process(self, records: Sequence[Any]) -> None:
        good: list[tuple[Any, Inbound]] = []
        bad: list[tuple[Any, str, str]] = []
        consumed: Counter[str] = Counter()
        wanted = await self._wanted()
        topics: dict[str, str] = {}  # physical -> contract name, worked out once a batch
        for record in records:
            meant_for, kind = routing_of(record)
            if meant_for is not None:
                # A DLQ replay is for the group that parked the record; the others handled it already.
                applies = meant_for == self.group
                self._metrics.replays.labels(group=self.group, outcome="applied" if applies else "skipped").inc()
                if not applies:
                    continue
            topic = topics.get(record.topic)
            if topic is None:
                topic = topics[record.topic] = self._settings.contract_topic(record.topic)
            if wanted is not None and kind is not None and kind.decode(errors="replace") not in wanted:
                consumed[topic] += 1  # read and passed over: this handler does nothing with its type now
                continue
            try:
                message = self._parse(topic, record.value if record.value is not None else b"")
            except ContractError as exc:
                bad.append((record, "invalid_message", str(exc)))
                continue
            good.append((record, Inbound(topic, record.partition, record.offset, message)))
            consumed[topic] += 1
        for topic, count in consumed.items():
            self._metrics.consumed.labels(topic=topic).inc(count)
        if bad:
            await self._retrying(lambda: self._bus.dead_letter(bad, self.group))
        if good:
            spans = MessageSpans(self._service, self.group)
            for _, inbound in good:
                spans.begin(inbound.topic, inbound.message)
            started = time.perf_counter()
            try:
                await self._run(good, spans.contexts)
            finally:
                spans.end()
            elapsed = time.perf_counter() - started
            self._metrics.batch_seconds.labels(handler=self._name).observe(elapsed)
            self._metrics.handled_batch((inbound.message.type for _, inbound in good), elapsed)

    async def _wanted(self) -> Container[str] | None:
        select = self._select
        if select is None:
            return None
        wanted: Container[str] | None = None

        async def ask() -> None:  # retried through an outage, as the handler is
            nonlocal wanted
            wanted = await select()

        await self._retrying(ask)
        return wanted

    async def _run(self, items: list[tuple[Any, Inbound]], traces: dict[str, tuple[str | None, str | None]]) -> None:
        async def attempt() -> None:
            outbound = await self._handler([inbound for _, inbound in items])
            await self._bus.publish(carry_traces(outbound, traces))
            if isinstance(outbound, PublishThen):
                await outbound.then()

        try:
            await self._retrying(attempt)
        except Exception as exc:  # a bug or data the handler cannot take: isolate the culprit
            if len(items) == 1:
                record, inbound = items[0]
                log.exception("handler %s failed on %s@%s", self._name, record.topic, record.offset,
                              extra=message_fields(inbound.message))
                code = "too_large" if isinstance(exc, UNSENDABLE) else "handler_error"
                reason = f"handler failed: {type(exc).__name__}: {exc}"
                await self._retrying(lambda: self._bus.dead_letter([(record, code, reason)], self.group))
                return
            for item in items:
                await self._run([item], traces)

    async def _retrying(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn``; on an outage wait with capped exponential backoff and try again, forever."""
        delay = 0.1
        while True:
            try:
                await fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._health.outage(exc)
                self._metrics.retries.labels(handler=self._name).inc()
                log.warning("%s: dependency unavailable (%s: %s); retrying in %.1fs", self._name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._settings.retry_backoff_max_s)
                continue
            if self._health.retrying:
                self._health.recovered()
            return
