"""Authentication and ACLs on the real cluster: who may connect, and each principal does only its job."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from collections.abc import AsyncIterator

import pytest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError

from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    DIRECTORY_EVENTS,
    IMPORTS_COMMANDS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
    dlq_topic,
)
from crmctl import bus
from crmkit.principals import PrincipalRepository
from crmkit.settings import KafkaSettings
from services.activity.app import create_app as create_activity
from services.activity.settings import ActivitySettings
from services.importer.app import create_app as create_importer
from services.importer.settings import ImporterSettings
from services.leads.app import create_app as create_leads
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from services.qualification.app import create_app as create_qualification
from services.qualification.settings import QualificationSettings
from tests.integration.leads_helpers import directory_event, payload
from tests.support import Collector, Producer, command, dumps, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def acl_prefix(endpoints, isolation) -> AsyncIterator[str]:
    """The deployment's topics and every principal's ACLs, under this test's topic prefix."""
    if not endpoints.principals:
        pytest.skip("needs the local stack, whose principals and ACLs this suite knows")
    admin = endpoints.kafka_settings()
    grants = bus.grants(isolation.prefix)
    await asyncio.to_thread(bus.create_topics, admin, isolation.prefix)
    await asyncio.to_thread(bus.apply_grants, admin, grants)
    # New ACLs reach each broker's authorizer up to a second later: until every principal's are in
    # force on every broker, a refusal below would prove nothing.
    probes = {"leads": LEADS_EVENTS, "integrator": LEADS_COMMANDS, "directory": DIRECTORY_EVENTS, "operator": LEADS_COMMANDS}
    for principal, topic in probes.items():
        kafka = endpoints.settings_as(principal)
        await wait_until(lambda: _authorized_everywhere(kafka, isolation.prefix + topic), what=f"{principal}'s ACLs in force")
    try:
        yield isolation.prefix
    finally:
        await asyncio.to_thread(bus.revoke_grants, admin, grants)


async def send_as(kafka: KafkaSettings, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(**kafka.kafka_client_options(), acks="all", enable_idempotence=True, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def end_offsets(kafka: KafkaSettings, topic: str) -> int:
    consumer = AIOKafkaConsumer(**kafka.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets([TopicPartition(topic, p) for p in range(6)])).values())
    finally:
        await consumer.stop()


async def test_a_client_without_credentials_is_refused(endpoints, acl_prefix):
    anonymous = AIOKafkaProducer(bootstrap_servers=endpoints.kafka.split(","), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await anonymous.start()
    await anonymous.stop()
    wrong = KafkaSettings(kafka_bootstrap_servers=endpoints.kafka, kafka_sasl_username="integrator", kafka_sasl_password="not-it")
    impostor = AIOKafkaProducer(**wrong.kafka_client_options(), request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await impostor.start()
    await impostor.stop()


async def test_the_integrator_writes_commands_but_no_events_topic(endpoints, acl_prefix):
    integrator = endpoints.settings_as("integrator")
    await send_as(integrator, acl_prefix + LEADS_COMMANDS, b"{}")  # its job: accepted
    for topic in bus.EVENTS_TOPICS:
        with pytest.raises(TopicAuthorizationFailedError):
            await send_as(integrator, acl_prefix + topic, b"{}")


async def test_a_licence_the_integrator_grants_does_not_take_effect(endpoints, acl_prefix, settings_for, run_service):
    leads_kafka = endpoints.settings_as("leads")
    leads = await run_service(create_leads(settings_for(
        LeadsSettings, "leads", group_id=acl_prefix + "crm-leads", **_auth("leads", endpoints),
    )))
    forged = directory_event("crm.user.licence-granted", user_id="mallory", licence="crm")
    with pytest.raises(TopicAuthorizationFailedError):
        await send_as(endpoints.settings_as("integrator"), acl_prefix + DIRECTORY_EVENTS, forged.to_json_bytes(), b"mallory")
    # The directory's own grant to bob is applied: the leads service has read the directory topic.
    async with Producer(endpoints.kafka, acl_prefix, kafka=endpoints.settings_as("directory")) as directory:
        await directory.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="bob", licence="crm"), key="bob")
    principals = PrincipalRepository(leads.db, [])
    await wait_until(lambda: _licensed(principals, "bob"), what="bob's licence from the directory applied")
    assert not (await principals.get("mallory")).licensed
    assert await end_offsets(leads_kafka, acl_prefix + DIRECTORY_EVENTS) == 1  # only the directory's record


async def test_the_leads_principal_cannot_write_the_qualification_topic(endpoints, acl_prefix):
    leads = endpoints.settings_as("leads")
    await send_as(leads, acl_prefix + LEADS_EVENTS, b"{}")
    with pytest.raises(TopicAuthorizationFailedError):
        await send_as(leads, acl_prefix + QUALIFICATION_EVENTS, b"{}")
    with pytest.raises(TopicAuthorizationFailedError):
        await send_as(leads, acl_prefix + DIRECTORY_EVENTS, b"{}")


async def test_the_operator_reads_every_topic_and_replays_but_writes_no_directory_record(endpoints, acl_prefix):
    operator = endpoints.settings_as("operator")
    assert await end_offsets(operator, dlq_topic(acl_prefix + LEADS_COMMANDS)) == 0
    await send_as(operator, acl_prefix + LEADS_COMMANDS, b"{}")
    with pytest.raises(TopicAuthorizationFailedError):
        await send_as(operator, acl_prefix + DIRECTORY_EVENTS, b"{}")


async def test_every_service_does_its_job_with_its_own_principal(endpoints, acl_prefix, settings_for, run_service):
    """Leads, qualification, activity and importer each on its own principal and group: a lead is created,
    its contact renamed upstream, it gets a task, is qualified into a deal, and a bad import command is
    parked on the importer's DLQ."""
    def own(cls, name, **extra):
        return settings_for(cls, name, group_id=acl_prefix + f"crm-{name}", **_auth(name, endpoints), **extra)

    leads = await run_service(create_leads(own(LeadsSettings, "leads")))
    await run_service(create_qualification(own(QualificationSettings, "qualification")))
    await run_service(create_activity(own(ActivitySettings, "activity", due_pass_interval_s=0)))
    await run_service(create_importer(own(ImporterSettings, "importer")))
    integrator = endpoints.settings_as("integrator")
    async with contextlib.AsyncExitStack() as stack:
        directory = await stack.enter_async_context(Producer(endpoints.kafka, acl_prefix, kafka=endpoints.settings_as("directory")))
        commands = await stack.enter_async_context(Producer(endpoints.kafka, acl_prefix, kafka=integrator))
        events = await stack.enter_async_context(Collector(
            endpoints.kafka, acl_prefix, QUALIFICATION_EVENTS, ACTIVITY_EVENTS, LEADS_EVENTS, kafka=integrator, group="integrator",
        ))
        dlq = await stack.enter_async_context(Collector(
            endpoints.kafka, acl_prefix, dlq_topic(IMPORTS_COMMANDS), kafka=endpoints.settings_as("operator"), group="operator",
        ))
        await directory.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="alice", licence="crm"), key="alice")
        await directory.send(DIRECTORY_EVENTS, directory_event("crm.user.role-granted", user_id="alice", role="admin"), key="alice")
        await wait_until(lambda: _licensed(PrincipalRepository(leads.db, []), "alice"), what="alice licensed")
        lead_id = "acl-lead-1"
        await commands.send(LEADS_COMMANDS, command(payload(
            "crm.lead.create", lead_id=lead_id, title="ACL lead", contact={"contact_id": "K-acl"}), actor="alice"))
        await wait_until(lambda: LeadRepository(leads.db).get(lead_id), what="lead created")
        # A contact renamed upstream reaches the card through the leads service's own refresh commands.
        await directory.send(DIRECTORY_EVENTS, directory_event("crm.contact.upserted", contact_id="K-acl", name="Анна", version=1), key="K-acl")

        async def renamed() -> bool:
            lead = await LeadRepository(leads.db).get(lead_id)
            return lead.contact is not None and lead.contact.name == "Анна"

        await wait_until(renamed, what="the contact's name on the lead card")
        due = datetime.now(UTC) + timedelta(days=1)
        await commands.send(ACTIVITY_COMMANDS, command(payload(
            "crm.task.create", task_id="acl-task-1", lead_id=lead_id, type="call", title="Call back",
            start_at=(due - timedelta(hours=1)).isoformat(), due_at=due.isoformat(), assignee_id="alice",
        ), actor="alice"))
        await wait_until(lambda: events.got.of_type("crm.task.created"), what="task created on the activity topic")
        await commands.send(QUALIFICATION_COMMANDS, command(payload(
            "crm.lead.qualify", lead_id=lead_id, qualification_type="deal_and_company",
            new_company={"name": "ACL Ltd"}, deal_pipeline_id="default",
        ), actor="alice"))
        await wait_until(lambda: events.got.of_type("crm.deal.created"), timeout=60, what="deal on the qualification topic")
        await commands.send_raw(IMPORTS_COMMANDS, dumps({"not": "a command"}))
        await wait_until(lambda: dlq.got.records, what="the bad import command on the importer's DLQ")
        assert events.got.for_subject(lead_id)


async def _authorized_everywhere(kafka: KafkaSettings, topic: str) -> bool:
    """Whether every broker lets ``kafka``'s principal see ``topic`` (asked of each broker in turn)."""
    client = AIOKafkaClient(**kafka.kafka_client_options())
    try:
        await client.bootstrap()
        for broker in client.cluster.brokers():
            response = await client.send(broker.nodeId, MetadataRequest([topic], False))
            if any(entry[0] != 0 for entry in response.topics):  # an entry starts with its error code
                return False
        return True
    except KafkaError:
        return False
    finally:
        await client.close()


def _auth(principal: str, endpoints) -> dict:
    return {"kafka_sasl_username": principal, "kafka_sasl_password": endpoints.principals[principal]}


async def _licensed(principals: PrincipalRepository, user_id: str) -> bool:
    return (await principals.get(user_id)).licensed
