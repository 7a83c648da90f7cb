"""The bus's principals and what each may do (Kafka ACLs), their credentials, and applying both to a cluster."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    ALL_TOPICS,
    DIRECTORY_EVENTS,
    IMPORTS_COMMANDS,
    IMPORTS_EVENTS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
    dlq_topic,
)
from crmkit.topics import topic_config
from crmkit.settings import KafkaSettings

# The nodes' own principal (broker to broker, and the super user that provisions topics and ACLs).
ADMIN = "admin"
COMMANDS_TOPICS = (LEADS_COMMANDS, QUALIFICATION_COMMANDS, IMPORTS_COMMANDS, ACTIVITY_COMMANDS)
EVENTS_TOPICS = (LEADS_EVENTS, QUALIFICATION_EVENTS, IMPORTS_EVENTS, ACTIVITY_EVENTS, DIRECTORY_EVENTS)


@dataclass(frozen=True)
class Access:
    """What one principal may do: topics it reads and writes, and the consumer groups (by prefix) it uses."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # consumer group prefixes
    read_all: bool = False  # every topic and group of the deployment (the operator)
    dlqs: tuple[str, ...] = field(default=())  # topics whose <topic>.dlq it writes (a consumer parks bad records)


# Each service reads its inputs and writes its own events, the commands it sends and its DLQs. The
# leads service also reads its own events topic (its duplicate index follows it without a group).
SERVICES: dict[str, Access] = {
    "leads": Access(
        reads=(LEADS_COMMANDS, DIRECTORY_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS, LEADS_EVENTS),
        # Its own commands topic too: a changed contact or product is fanned out as internal
        # crm.lead.refresh-snapshot commands, one per lead, in the lead's partition.
        # Its stage actions read its own events topic in the group crm-leads-actions (inside the prefix).
        writes=(LEADS_EVENTS, LEADS_COMMANDS), groups=("crm-leads",),
        dlqs=(LEADS_COMMANDS, DIRECTORY_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS, LEADS_EVENTS),
    ),
    "qualification": Access(
        reads=(QUALIFICATION_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS),
        writes=(QUALIFICATION_EVENTS,), groups=("crm-qualification",),
        dlqs=(QUALIFICATION_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS),
    ),
    "importer": Access(
        reads=(IMPORTS_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS),
        writes=(IMPORTS_EVENTS, LEADS_COMMANDS), groups=("crm-importer",),
        dlqs=(IMPORTS_COMMANDS, LEADS_EVENTS, DIRECTORY_EVENTS),
    ),
    "activity": Access(
        reads=(ACTIVITY_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS, DIRECTORY_EVENTS),
        writes=(ACTIVITY_EVENTS, QUALIFICATION_COMMANDS), groups=("crm-activity",),
        dlqs=(ACTIVITY_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS, DIRECTORY_EVENTS),
    ),
    # Reads the three events topics by hand (every partition, no group) and licences with its group;
    # publishes nothing but DLQ copies.
    "analytics": Access(
        reads=(LEADS_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS, DIRECTORY_EVENTS), groups=("crm-analytics",),
        dlqs=(LEADS_EVENTS, QUALIFICATION_EVENTS, ACTIVITY_EVENTS, DIRECTORY_EVENTS),
    ),
}

# Topics some consumer parks bad records from: each has a <topic>.dlq.
CONSUMED_TOPICS = tuple(t for t in ALL_TOPICS if any(t in a.dlqs for a in SERVICES.values()))

PRINCIPALS: dict[str, Access] = {
    **SERVICES,
    # Outside systems: send the four kinds of commands, follow every events topic.
    "integrator": Access(reads=EVENTS_TOPICS, writes=COMMANDS_TOPICS, groups=("integrator",)),
    # Master data (contacts, licences, roles) comes only from here.
    "directory": Access(writes=(DIRECTORY_EVENTS,)),
    # Reads everything; replays a DLQ record to the topic it came from (not the directory's: a
    # parked directory record is sent again by the directory side).
    "operator": Access(read_all=True, writes=tuple(t for t in CONSUMED_TOPICS if t != DIRECTORY_EVENTS)),
}


# --- credentials ----------------------------------------------------------------------------


def generate_credentials() -> dict[str, str]:
    return {name: secrets.token_urlsafe(24) for name in [ADMIN, *PRINCIPALS]}


def load_or_create_credentials(path: Path) -> dict[str, str]:
    """The run folder's principals and passwords, made (readable by this user only) on first use."""
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    found = generate_credentials()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(found, out, indent=2)
    return found


def scram_arguments(credentials: Mapping[str, str]) -> list[str]:
    """``StorageTool format`` arguments that write every principal's SCRAM-SHA-512 credential."""
    args: list[str] = []
    for name, password in credentials.items():
        args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
    return args


# --- ACLs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One ALLOW ACL: principal, operation, resource type ('topic', 'group'), name and pattern."""

    principal: str
    operation: str  # READ, WRITE, CREATE, DESCRIBE
    resource: str
    name: str
    prefixed: bool = False


def grants(prefix: str = "", principals: Iterable[str] | None = None) -> list[Grant]:
    """Every ACL of the deployment whose topics and groups start with ``prefix`` ('' in production)."""
    found: list[Grant] = []
    for name in principals or PRINCIPALS:
        access = PRINCIPALS[name]
        user = f"User:{name}"
        if access.read_all:
            found.append(Grant(user, "READ", "topic", prefix, prefixed=True))
            found.append(Grant(user, "READ", "group", prefix, prefixed=True))
        for topic in access.reads:
            found.append(Grant(user, "READ", "topic", prefix + topic))
        own = [*access.writes, *(dlq_topic(t) for t in access.dlqs)]
        for topic in own:
            found.append(Grant(user, "WRITE", "topic", prefix + topic))
        if name in SERVICES:  # a service creates the topics it names at start (ensure_topics) if missing
            for topic in dict.fromkeys([*access.reads, *own]):
                found.append(Grant(user, "CREATE", "topic", prefix + topic))
        for group in access.groups:
            found.append(Grant(user, "READ", "group", prefix + group, prefixed=True))
    return found


def admin_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka configuration (confluent-kafka's admin client) for the same connection as ``kafka``."""
    config: dict[str, Any] = {"bootstrap.servers": kafka.kafka_bootstrap_servers, "security.protocol": kafka.security_protocol}
    if kafka.security_protocol.startswith("SASL"):
        config.update({
            "sasl.mechanism": kafka.kafka_sasl_mechanism.upper(),
            "sasl.username": kafka.kafka_sasl_username,
            "sasl.password": kafka.kafka_sasl_password.get_secret_value(),
        })
    if kafka.kafka_ssl_cafile:
        config["ssl.ca.location"] = kafka.kafka_ssl_cafile
    if kafka.kafka_ssl_certfile:
        config["ssl.certificate.location"] = kafka.kafka_ssl_certfile
    if kafka.kafka_ssl_keyfile:
        config["ssl.key.location"] = kafka.kafka_ssl_keyfile
    return config


def admin_client(kafka: KafkaSettings):
    from confluent_kafka.admin import AdminClient

    return AdminClient({**admin_config(kafka), "log_level": 0})


def _bindings(found: Iterable[Grant], cls: Any) -> list[Any]:
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return [
        cls(
            ResourceType[g.resource.upper()], g.name or "*",
            ResourcePatternType.PREFIXED if g.prefixed and g.name else ResourcePatternType.LITERAL,
            g.principal, "*", AclOperation[g.operation], AclPermissionType.ALLOW,
        )
        for g in found
    ]


def apply_grants(kafka: KafkaSettings, found: Iterable[Grant], timeout: float = 30.0) -> int:
    """Create the ACLs (creating one that exists is a no-op); return how many were asked for."""
    from confluent_kafka.admin import AclBinding

    bindings = _bindings(found, AclBinding)
    if bindings:
        client = admin_client(kafka)  # held until every answer is in: a collected client cancels them
        for future in client.create_acls(bindings, request_timeout=timeout).values():
            future.result(timeout)
    return len(bindings)


def revoke_grants(kafka: KafkaSettings, found: Iterable[Grant], timeout: float = 30.0) -> None:
    """Delete exactly these ACLs (tests remove the ones they made for their topic prefix)."""
    from confluent_kafka.admin import AclBindingFilter

    filters = _bindings(found, AclBindingFilter)
    if filters:
        client = admin_client(kafka)
        for future in client.delete_acls(filters, request_timeout=timeout).values():
            future.result(timeout)


def create_topics(
    kafka: KafkaSettings, prefix: str = "", partitions: int = 6, replication: int = -1, timeout: float = 30.0
) -> list[str]:
    """Create the contract topics and the DLQs of consumed topics that are missing; return the new ones."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    client = admin_client(kafka)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = {prefix + t: topic_config(t) for t in ALL_TOPICS}
    wanted.update({dlq_topic(prefix + t): {} for t in CONSUMED_TOPICS})
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    futures = client.create_topics(
        [NewTopic(name, partitions, replication, config=dict(wanted[name])) for name in missing],
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return missing
