"""Kafka topic names of the public contract and the dead-letter conventions."""

LEADS_COMMANDS = "crm.leads.commands.v1"
LEADS_EVENTS = "crm.leads.events.v1"
QUALIFICATION_COMMANDS = "crm.qualification.commands.v1"
QUALIFICATION_EVENTS = "crm.qualification.events.v1"
IMPORTS_COMMANDS = "crm.imports.commands.v1"
IMPORTS_EVENTS = "crm.imports.events.v1"
ACTIVITY_COMMANDS = "crm.activity.commands.v1"
ACTIVITY_EVENTS = "crm.activity.events.v1"
DIRECTORY_EVENTS = "crm.directory.events.v1"

ALL_TOPICS: tuple[str, ...] = (
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
    IMPORTS_COMMANDS,
    IMPORTS_EVENTS,
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    DIRECTORY_EVENTS,
)

DLQ_SUFFIX = ".dlq"

# Headers a consumer adds when it parks a record on `<topic>.dlq`.
DLQ_REASON = "dlq-reason"
DLQ_TOPIC = "dlq-topic"
DLQ_PARTITION = "dlq-partition"
DLQ_OFFSET = "dlq-offset"
DLQ_GROUP = "dlq-group"  # the consumer group that parked it
DLQ_SERVICE = "dlq-service"  # the service (crm/<name>) whose consumer parked it
DLQ_REASON_CODE = "dlq-reason-code"  # invalid_message | handler_error | too_large
# Set by `crm dlq replay` on a record put back on its original topic: only this consumer group
# applies it; every other group reading that topic skips it (it applied or parked it already).
DLQ_REPLAY_GROUP = "dlq-replay-group"


def dlq_topic(topic: str) -> str:
    """Return the dead-letter topic for `topic`."""
    return f"{topic}{DLQ_SUFFIX}"
