"""Helpers for tests on real Kafka and MongoDB: endpoints, producing, collecting, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import Envelope, build_message, parse_message
from contracts.topics import dlq_topic
from crmkit.settings import KafkaSettings


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    mongodb: str
    origin: str
    # Who the suite connects as: the local stack's super user, or the KAFKA_* settings given.
    kafka_auth: KafkaSettings | None = None
    # The local stack's credentials of every principal (ACL tests connect as each); empty elsewhere.
    principals: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kafka_auth is not None:
            _KAFKA_OPTIONS[self.kafka] = self.kafka_auth

    def kafka_settings(self) -> KafkaSettings:
        """The suite's own connection (super user on the local stack)."""
        return self.kafka_auth or KafkaSettings(kafka_bootstrap_servers=self.kafka)

    def settings_as(self, principal: str) -> KafkaSettings:
        """Connection settings for one of the local stack's principals."""
        return KafkaSettings(
            kafka_bootstrap_servers=self.kafka, kafka_sasl_username=principal,
            kafka_sasl_password=self.principals[principal],
        )

    def auth_env(self, env_prefix: str) -> dict[str, str]:
        """Environment variables that make a service process (``env_prefix`` such as ``LEADS_``) connect as the suite does."""
        return {
            f"{env_prefix}{name.upper()}": value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            for name, value in self.auth_overrides().items()
        }

    def auth_overrides(self) -> dict[str, Any]:
        """Service settings fields that make a service connect as the suite does."""
        if self.kafka_auth is None:
            return {}
        auth = self.kafka_auth
        return {
            "kafka_security_protocol": auth.kafka_security_protocol, "kafka_sasl_mechanism": auth.kafka_sasl_mechanism,
            "kafka_sasl_username": auth.kafka_sasl_username, "kafka_sasl_password": auth.kafka_sasl_password,
            "kafka_ssl_cafile": auth.kafka_ssl_cafile, "kafka_ssl_certfile": auth.kafka_ssl_certfile,
            "kafka_ssl_keyfile": auth.kafka_ssl_keyfile,
        }


# Credentials per bootstrap address, so the helpers below take just the address as before.
_KAFKA_OPTIONS: dict[str, KafkaSettings] = {}


def kafka_options(bootstrap: str) -> dict[str, Any]:
    """aiokafka client options for ``bootstrap`` with the credentials the session connects there with."""
    servers = [server.strip() for server in bootstrap.split(",")]
    auth = _KAFKA_OPTIONS.get(bootstrap)
    if auth is None:
        return {"bootstrap_servers": servers}
    return {**auth.kafka_client_options(), "bootstrap_servers": servers}


def register_kafka(auth: KafkaSettings) -> None:
    """Make the helpers connect to ``auth``'s bootstrap servers with its credentials (other suites' stacks)."""
    _KAFKA_OPTIONS[auth.kafka_bootstrap_servers] = auth


@contextlib.contextmanager
def local_stack_endpoints() -> Iterator[Endpoints]:
    """The project's own Kafka and FerretDB; started for the session when not already running."""
    from crmctl.stack import Stack

    stack = Stack()
    was_running = stack.running()
    stack.up()
    try:
        yield Endpoints(
            stack.config.kafka_bootstrap, stack.config.mongodb_url, "local stack",
            kafka_auth=stack.kafka.client_settings(), principals=stack.kafka.credentials(),
        )
    finally:
        if not was_running:
            stack.down()


async def remove_test_data(endpoints: Endpoints, prefix: str) -> None:
    """Delete a test's topics and databases so that a long run keeps the servers small."""
    from aiokafka.admin import AIOKafkaAdminClient

    from crmkit.mongo import make_client

    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(**kafka_options(endpoints.kafka), request_timeout_ms=10_000)
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()
    with contextlib.suppress(Exception):
        client = make_client(endpoints.mongodb)
        try:
            db_prefix = prefix.strip(".") + "_"
            for name in await client.list_database_names():
                if name.startswith(db_prefix):
                    await client.drop_database(name)
        finally:
            await client.close()


async def wait_until(
    predicate: Callable[[], Awaitable[Any] | Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last) or isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class Producer:
    """Publishes contract messages (or raw bytes) to prefixed topics, as an outside system would."""

    def __init__(self, bootstrap: str, prefix: str, *, kafka: KafkaSettings | None = None) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._kafka = kafka  # another principal than the suite's
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Producer:
        options = self._kafka.kafka_client_options() if self._kafka else kafka_options(self._bootstrap)
        self._producer = AIOKafkaProducer(
            **options, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._producer is not None
        await self._producer.stop()

    async def send(self, topic: str, message: Envelope, key: str | None = None) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self._prefix + topic, message.to_json_bytes(), key=(key or message.subject or message.id).encode()
        )

    async def send_many(self, topic: str, messages: list[Envelope]) -> None:
        assert self._producer is not None
        futures = [
            await self._producer.send(self._prefix + topic, m.to_json_bytes(), key=(m.subject or m.id).encode())
            for m in messages
        ]
        await asyncio.gather(*futures)

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = b"raw") -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(self._prefix + topic, value, key=key)


def command(payload: Any, *, actor: str = "alice", subject: str | None = None, id: str | None = None, source: str = "test/client") -> Envelope:
    """A command envelope as an outside system sends it."""
    return build_message(payload, source=source, subject=subject, actorid=actor, id=id or str(uuid.uuid4()))


@dataclass
class Collected:
    records: list[Any] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)

    def of_type(self, type_name: str) -> list[Envelope]:
        return [m for m in self.messages if m.type == type_name]

    def for_subject(self, subject: str) -> list[Envelope]:
        return [m for m in self.messages if m.subject == subject]


class Collector:
    """Reads topics from the beginning in the background, parsing contract messages (raw for DLQs)."""

    def __init__(
        self, bootstrap: str, prefix: str, *topics: str, kafka: KafkaSettings | None = None, group: str = "collector"
    ) -> None:
        self._bootstrap = bootstrap
        self._kafka = kafka  # another principal than the suite's
        self._group = group
        self._prefix = prefix
        self._topics = topics
        self.got = Collected()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Collector:
        self._consumer = AIOKafkaConsumer(
            *[self._prefix + t for t in self._topics],
            **(self._kafka.kafka_client_options() if self._kafka else kafka_options(self._bootstrap)),
            group_id=f"{self._group}-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=1000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batch.values():
                for record in records:
                    self.got.records.append(record)
                    topic = record.topic[len(self._prefix):]
                    if topic.endswith(".dlq"):
                        continue
                    with contextlib.suppress(Exception):
                        self.got.messages.append(parse_message(topic, record.value))

    async def __aexit__(self, *exc: Any) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer:
            await self._consumer.stop()


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers or ())}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def make_topics(endpoints: Endpoints, prefix: str, topics: Sequence[str], partitions: int = 6) -> None:
    """Create a test's topics before anything is produced to them (the brokers create none by themselves)."""
    from crmkit.topics import ensure_topics

    names = [prefix + t for t in topics]
    await ensure_topics(endpoints.kafka_settings(), names + [dlq_topic(n) for n in names], partitions)
