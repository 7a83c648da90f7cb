"""Contract topics created where missing, with their configuration (events topics keep every record)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from contracts.topics import ALL_TOPICS

from .settings import KafkaSettings

EVENTS_TOPICS = frozenset(t for t in ALL_TOPICS if ".events." in t)

# Topic-level error codes of a CreateTopics answer that mean "there already" (36) or nothing wrong (0).
_CREATED_OR_THERE = {0, 36}


def topic_config(contract_topic: str) -> dict[str, str]:
    """The configuration a contract topic is created with: events topics keep every record."""
    if contract_topic in EVENTS_TOPICS:
        return {"retention.ms": "-1", "retention.bytes": "-1"}
    return {}


async def ensure_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    partitions: int,
    *,
    replication: int = -1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent); ``replication`` -1 is the cluster's default.

    ``configs`` maps a physical topic name to its topic configuration (see ``topic_config``).
    """
    admin = AIOKafkaAdminClient(**kafka.kafka_client_options(), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return
        # replica_assignments={} because aiokafka's NewTopic insists on one of the two when replication is -1.
        response = await admin.create_topics(
            [
                NewTopic(
                    name=t, num_partitions=partitions, replication_factor=replication,
                    replica_assignments={} if replication == -1 else None,
                    topic_configs=dict((configs or {}).get(t, {})),
                )
                for t in missing
            ]
        )
        failed = [(topic, code) for topic, code, *_ in response.topic_errors if code not in _CREATED_OR_THERE]
        if failed:
            topic, code = failed[0]
            raise for_code(code)(f"creating topic {topic} failed ({len(failed)} of {len(missing)} refused)")
        # The controller has them; the brokers learn of them a moment later (about a second on three
        # nodes), and a reader that asks before would find no partitions.
        deadline = time.monotonic() + 15
        while not set(missing) <= set(await admin.list_topics()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
