"""Activity's contract messages: task events, summaries, due notices and refusals, and lead facts read off the leads topic."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

from contracts import Envelope, build_message
from contracts.activity import (
    LeadActivitySummary,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDueSoon,
    TaskOverdue,
    TaskUpdated,
    TaskView,
)
from contracts.qualification import DisqualifyLead
from contracts.registry import TOPIC_TYPES
from contracts.topics import ACTIVITY_COMMANDS, ACTIVITY_EVENTS, DIRECTORY_EVENTS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmkit import access
from crmkit.applied import Applied
from crmkit.ids import uuid5
from crmkit.messaging import Outbound
from crmkit.principals import Principal, PrincipalRepository
from crmkit.views import card_view, view_parser
from crmkit.wire import JsonMessage, JsonPayload, event_attributes
from services.activity import domain as d

# Stable ids: the same input message always yields the same task ids and event ids, so a replay
# after a crash publishes identical events that consumers dedupe.
_ID_NAMESPACE = uuid.UUID("3d0c7b1e-6a0f-4a57-b8e4-2f1e9c4d7a21")

TASK_COMMANDS = {"crm.task.create", "crm.task.update", "crm.task.complete", "crm.task.cancel"}
USER_COMMANDS = TASK_COMMANDS | {"crm.task.type.add"}
LEAD_FACTS = {"crm.lead.created", "crm.lead.updated", "crm.lead.deleted", "crm.lead.restored", "crm.lead.stage-changed"}
# The other services' events this one does nothing with (a qualification's company, deal and outcome; a lead's
# assignment, duplicates, pipelines; directory records other than grants): passed over unparsed (crmkit's
# ``select``), three of the five records each qualification brings here.
PASSED_OVER = frozenset(
    {t for t in TOPIC_TYPES[LEADS_EVENTS] if t not in LEAD_FACTS}
    | {t for t in TOPIC_TYPES[QUALIFICATION_EVENTS] if t != "crm.lead.disqualified"}
    | {t for t in TOPIC_TYPES[DIRECTORY_EVENTS] if not PrincipalRepository.handles(t)}
) - set(TOPIC_TYPES[ACTIVITY_COMMANDS])


class Parsed(Container[str]):
    """The message types worth parsing: all but those passed over (an unknown type is parsed, and parked)."""

    def __contains__(self, kind: object) -> bool:
        return kind not in PASSED_OVER

def stable_id(*parts: str) -> str:
    return uuid5(_ID_NAMESPACE, "\x1f".join(parts))


def task_id_of(message: Envelope) -> str:
    """The task a command is about; a create without `task_id` gets one derived from the message id."""
    if message.type == "crm.task.create":
        return message.data.task_id or stable_id("task", message.id)
    return message.data.task_id


def next_call_id(task_id: str) -> str:
    """uuid5(task_id, "next-call"): the one call a `no_answer` may schedule, whatever the redeliveries."""
    try:
        return uuid5(uuid.UUID(task_id), "next-call")
    except ValueError:  # an outside system chose a task id that is not a UUID
        return stable_id(d.next_call_id(task_id))


def actor_of(principal: Principal) -> d.Actor:
    return d.Actor(user_id=principal.user_id, licensed=principal.licensed, is_admin=principal.is_admin)


# --- domain results → contract messages -----------------------------------------------------

_TASK_EVENTS = {
    d.TaskCreated: TaskCreated,
    d.TaskUpdated: TaskUpdated,
    d.TaskCompleted: TaskCompleted,
    d.TaskCancelled: TaskCancelled,
}


def task_view(task: d.Task) -> TaskView:
    return TaskView.model_validate(task.model_dump())


def outbound_of(event: Any, cause: Envelope, source: str, index: int, now: datetime) -> Outbound:
    """The message a task rule's event becomes, serialized once: the same bytes are kept with the task (its
    applied record) and published, in the trace of the command that caused it (as crmkit would carry it)."""
    if isinstance(event, d.DisqualifyRequested):
        payload = DisqualifyLead(lead_id=event.lead_id, reason_id=event.reason_id, comment=event.comment)
        message = build_message(
            payload, source=source, actorid=event.actor_id, id=stable_id(cause.id, "disqualify"), time=now,
            correlationid=cause.correlationid or cause.id, causationid=cause.id, traceparent=cause.traceparent,
            tracestate=cause.tracestate,
        )
        return Outbound(QUALIFICATION_COMMANDS, message, value=message.to_json_bytes())
    return task_event(event, cause, source, index, to_jsonable_python(now))


def task_event(event: d.TaskCreated | d.TaskUpdated | d.TaskCompleted | d.TaskCancelled, cause: Envelope, source: str,
               index: int, time: Any) -> Outbound:
    """A task's event made from the task, which its rules validated: no contract payload and envelope are
    validated again to send it (``crmkit.wire``; 25-27 against 33-40 µs a ``crm.task.created``, the AMD EPYC
    machine, best of five). Its data is the task's fields the contract's ``TaskView`` names, in its order;
    tests/unit/activity/test_wire.py holds the bytes equal to the validated path's."""
    task = event.task
    cls = _TASK_EVENTS[type(event)]
    values = task.model_dump(include=_VIEW_FIELDS)
    attributes = event_attributes(
        cause, id=stable_id(cause.id, task.task_id, str(index), cls.TYPE), kind=cls.TYPE, source=source,
        subject=task.lead_id, time=time,
    )
    message = JsonMessage(attributes, JsonPayload(cls, {name: values[name] for name in _VIEW_ORDER}))
    return Outbound(ACTIVITY_EVENTS, message, value=message.to_json_bytes())


_VIEW_ORDER = tuple(TaskView.model_fields)
_VIEW_FIELDS = frozenset(_VIEW_ORDER)


def rejection(cause: Envelope, exc: d.Rejected | access.Refusal, source: str, lead_id: str | None) -> Outbound:
    refusal = exc if isinstance(exc, access.Refusal) else access.Refusal(exc.code, exc.message, tuple(exc.errors))
    message = access.rejection(cause, refusal, source=source, namespace=_ID_NAMESPACE, lead_id=lead_id)
    return Outbound(ACTIVITY_EVENTS, message, key=message.subject or cause.id)


def summary_message(summary: d.Summary, cause_id: str, correlation_id: str, source: str, now: datetime) -> Outbound:
    payload = LeadActivitySummary(
        lead_id=summary.lead_id,
        next_due_at=summary.next_due_at,
        next_task_id=summary.next_task_id,
        open_count=summary.open_count,
        overdue_count=summary.overdue_count,
        state=summary.state,
    )
    # The id names the content too: a replay that finds the same state repeats the same message,
    # one that finds a newer state must not be taken for a duplicate.
    digest = hashlib.sha1(payload.model_dump_json().encode()).hexdigest()
    message = build_message(
        payload, source=source, id=stable_id(cause_id, summary.lead_id, "summary", digest),
        correlationid=correlation_id, causationid=cause_id, time=now,
    )
    return Outbound(ACTIVITY_EVENTS, message)


def notice_message(task: d.Task, kind: str, source: str, now: datetime) -> Outbound:
    cls = TaskDueSoon if kind == "due_soon" else TaskOverdue
    payload = cls(task_id=task.task_id, lead_id=task.lead_id, due_at=task.due_at, assignee_id=task.assignee_id)
    message = build_message(payload, source=source, id=stable_id(task.task_id, kind, task.due_at.isoformat()), time=now)
    return Outbound(ACTIVITY_EVENTS, message)


def serialize(outbound: Sequence[Outbound]) -> list[dict[str, str]]:
    return [{"topic": o.topic, "message": (o.value or o.message.to_json_bytes()).decode(), "key": o.key or ""} for o in outbound]


def replay(recent: Applied[dict[str, str]]) -> list[Outbound]:
    """What a message published when it was applied, to be published again as it was (a record kept before its
    trace context was kept with it gets the redelivery's, from crmkit)."""
    return [
        Outbound(e["topic"], Envelope.model_validate_json(e["message"]), e.get("key") or None, e["message"].encode())
        for e in recent.events
    ]


def changes_no_fact(message: Envelope) -> bool:
    """Whether a lead event changes nothing this service projects: the card's update for the lead's own activity
    summary, which this service caused (the leads service refreshes it without touching the facts kept here).

    One in two projection writes under a burst of tasks was this echo of the summary; skipping it leaves the
    projected version behind, which the version guard allows: a later event carries the whole card again."""
    return message.type == "crm.lead.updated" and list(message.data.changed_fields) == ["activity"]


# The card fields ``lead_facts`` keeps: the consumer reads only these of a card event (crmkit/views.py), 11 µs
# an event against 29-36 for the whole card, two card events a qualification and one per lead a batch of tasks.
CardFacts = card_view(
    "ActivityCardFacts", ("pipeline_id", "status", "deleted", "title", "data_changed_at"),
    doc="A lead card event with only what activity projects of the card read.",
)
parse_record = view_parser(CardFacts)


def lead_facts(data: Any, message_type: str) -> tuple[str, int, dict[str, Any]]:
    """What a lead event says about the lead: its id, its version, and the facts the projection keeps."""
    if message_type in ("crm.lead.created", "crm.lead.updated"):
        facts = {
            "pipeline_id": data.pipeline_id,
            "status": plain(data.status),
            "deleted": data.deleted,
            "title": data.title,
            "data_changed_at": data.data_changed_at,
        }
    elif message_type == "crm.lead.stage-changed":
        facts = {"pipeline_id": data.pipeline_id, "status": plain(data.to_status)}
    else:
        facts = {"deleted": message_type == "crm.lead.deleted"}
    return data.lead_id, data.version, facts


def plain(value: Any) -> Any:
    return getattr(value, "value", value)
