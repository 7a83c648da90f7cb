"""How a service subscribes through FastStream: at-least-once batch subscribers, and the broker's security."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from .messaging import BatchProcessor
from .settings import KafkaSettings, ServiceSettings


async def _raw_records(message: Any) -> None:
    """A FastStream decoder that decodes nothing: ``BatchProcessor`` parses the raw records itself."""
    return None


def subscribe_batches(
    broker: KafkaBroker,
    settings: ServiceSettings,
    processor: BatchProcessor,
    *,
    topics: Sequence[str],
    group_id: str,
    title: str,
    description: str,
    listener: ConsumerRebalanceListener | None = None,
) -> Any:
    """Register an at-least-once batch subscriber: offsets are committed after the batch is done.

    Returns FastStream's subscriber (its ``consumer`` is aiokafka's once the broker started)."""

    subscriber = broker.subscriber(
        *[settings.topic(t) for t in topics],
        group_id=group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset=settings.auto_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # Range assignment gives one instance the same partition number of every topic, and a lead
        # id hashes to the same partition number on every topic: one instance owns all of a lead.
        partition_assignment_strategy=(RangePartitionAssignor,),
        # The handler reads the raw records: FastStream's per-record decoding is skipped.
        decoder=_raw_records,
        listener=listener,
        title=title,
        description=description,
    )

    @subscriber
    async def consume(message: KafkaMessage) -> None:
        raw = message.raw_message
        await processor.process(raw if isinstance(raw, tuple) else (raw,))

    return subscriber


_SASL_SECURITY = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


def faststream_security(kafka: KafkaSettings) -> BaseSecurity | None:
    """The same protocol and credentials as ``kafka_client_options``, in the form FastStream's broker takes."""
    protocol = kafka.security_protocol
    context = kafka.ssl_context()
    if protocol.startswith("SASL"):
        cls = _SASL_SECURITY[kafka.kafka_sasl_mechanism.upper()]
        return cls(kafka.kafka_sasl_username, kafka.kafka_sasl_password.get_secret_value(),
                   ssl_context=context, use_ssl=protocol == "SASL_SSL")
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None
