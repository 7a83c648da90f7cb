"""Test fixtures: real Kafka and MongoDB endpoints, per-test isolation, in-process services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from crmkit.settings import KafkaSettings
from tests.support import Endpoints, local_stack_endpoints, remove_test_data


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    """Kafka and MongoDB: from the environment, else testcontainers where Docker answers, else the local stack."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URL")
    if kafka and mongo:  # credentials, if the cluster wants them, from KAFKA_SASL_USERNAME and the rest
        yield Endpoints(kafka, mongo, "environment", kafka_auth=KafkaSettings())
        return
    if os.environ.get("CRM_TESTS_USE_DOCKER", "1") == "1" and _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer().with_kraft() as kafka_c, MongoDbContainer("mongo:7") as mongo_c:
            yield Endpoints(kafka_c.get_bootstrap_server(), mongo_c.get_connection_url(), "testcontainers")
        return
    with local_stack_endpoints() as found:
        yield found


@dataclass
class Isolation:
    """Names private to one test: topic prefix, database names, consumer groups."""

    prefix: str

    def db(self, name: str) -> str:
        return f"{self.prefix.strip('.')}_{name}"

    def group(self, name: str) -> str:
        return f"{self.prefix}{name}"


@pytest.fixture
async def isolation(endpoints: Endpoints) -> AsyncIterator[Isolation]:
    """Private names for one test; its topics and databases are removed afterwards."""
    found = Isolation(prefix=f"t{uuid.uuid4().hex[:10]}.")
    yield found
    await remove_test_data(endpoints, found.prefix)


@pytest.fixture
def settings_for(endpoints: Endpoints, isolation: Isolation) -> Callable:
    """Build a service's settings pointed at the test endpoints and the test's own names."""

    def make(cls, name: str, **overrides):
        values = dict(
            kafka_bootstrap_servers=endpoints.kafka,
            mongodb_url=endpoints.mongodb,
            topic_prefix=isolation.prefix,
            database=isolation.db(name),
            group_id=isolation.group(name),
            batch_timeout_ms=20,
            **endpoints.auth_overrides(),
            retry_backoff_max_s=1.0,
            gc_freeze=False,  # one test process starts hundreds of services: freeze nothing it later drops
        )
        values.update(overrides)
        return cls(**values)

    return make


@pytest.fixture
async def run_service() -> AsyncIterator[Callable]:
    """Start services in this process (their real consumers, repositories and database) and stop them after."""
    started = []

    async def start(service):
        await service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.stop(), 30)
