"""A task's events are published without a validated envelope; what they send must be what the contract path sends.

The contract path is the one ``outbound_of`` took before (``crmkit.wire``): the event's payload validated
from the task, wrapped by ``build_message`` and written by pydantic. These tests hold the two equal, byte
for byte and attribute for attribute, on tasks with every kind of value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from contracts import build_message, parse_message
from contracts.activity import CreateTask
from contracts.topics import ACTIVITY_EVENTS
from services.activity import domain as d
from services.activity.messages import _TASK_EVENTS, outbound_of, stable_id

NOW = datetime(2025, 3, 10, 9, 0, 0, 123000, tzinfo=UTC)
USER = d.Actor(user_id="u-1", licensed=True, is_admin=True)
LEAD = d.LeadInfo(lead_id="L1", pipeline_id="default", status="new", deleted=False, title="Lead")
_ATTRIBUTES = ("specversion", "id", "type", "source", "time", "subject", "datacontenttype", "correlationid", "causationid",
               "actorid", "traceparent", "tracestate")


def _events() -> list[object]:
    """One event of each kind, on tasks with the optional fields set and unset, odd text and whole-second times."""
    fields = {"lead_id": "L1", "type": "call", "title": "Позвонить «Ивану»\n\"quoted\" \u0000",
              "start_at": NOW + timedelta(days=1), "due_at": NOW.replace(microsecond=0) + timedelta(days=1, hours=1),
              "assignee_id": "u-1", "priority": "high", "contact_id": "c-1"}
    created = d.create_task(USER, LEAD, "t-1", fields, {}, NOW)
    plain = d.create_task(USER, LEAD, "t-2", {**fields, "contact_id": None, "priority": None, "title": "x"}, {}, NOW)
    updated = d.update_task(USER, created.task, LEAD, {"title": "Перезвонить", "priority": "low"}, NOW + timedelta(minutes=1))
    completed = d.complete_task(USER, updated.task, LEAD, outcome="no_answer", comment="нет ответа", next_call_at=None,
                                reason_id=None, call_id="t-1-next", now=NOW + timedelta(minutes=2))
    cancelled = d.cancel_task(USER, plain.task, "не нужно", NOW + timedelta(minutes=3))
    events = [*created.events, *plain.events, *updated.events, *completed.events, *cancelled.events]
    assert {type(e) for e in events} == set(_TASK_EVENTS), "one event of each kind"
    return events


def _causes() -> list[object]:
    command = CreateTask(lead_id="L1", type="call", title="x", start_at=NOW, due_at=NOW, assignee_id="u-1")
    return [
        build_message(command, source="test", actorid="u-1"),
        build_message(command, source="test", actorid="u-2", correlationid="corr-1",
                      traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", tracestate="crm=1"),
    ]


def _validated(event: object, cause, index: int, now: datetime) -> bytes:
    """The contract path: the payload validated from the task, the typed envelope, pydantic's JSON."""
    payload = _TASK_EVENTS[type(event)].model_validate(event.task.model_dump())
    message = build_message(
        payload, source="crm/activity", actorid=cause.actorid, id=stable_id(cause.id, event.task.task_id, str(index), payload.TYPE),
        correlationid=cause.correlationid or cause.id, causationid=cause.id, time=now, traceparent=cause.traceparent,
        tracestate=cause.tracestate,
    )
    return message.to_json_bytes()


def test_task_events_send_the_bytes_of_the_validated_path() -> None:
    for cause in _causes():
        for index, event in enumerate(_events()):
            for now in (NOW, NOW.replace(microsecond=0), NOW + timedelta(microseconds=1)):
                out = outbound_of(event, cause, "crm/activity", index, now)
                assert out.topic == ACTIVITY_EVENTS
                assert out.value == _validated(event, cause, index, now)
                assert out.message.to_json_bytes() == out.value
                assert out.key_bytes() == b"L1", "keyed by the task's lead, as build_message's subject"


def test_a_task_event_reads_as_its_contract_envelope_and_carries_a_later_trace() -> None:
    for cause in _causes():
        for index, event in enumerate(_events()):
            out = outbound_of(event, cause, "crm/activity", index, NOW)
            parsed = parse_message(ACTIVITY_EVENTS, out.value)
            message = out.message
            assert {name: getattr(message, name) for name in _ATTRIBUTES} == {name: getattr(parsed, name) for name in _ATTRIBUTES}
            assert getattr(message.data, "command_id", None) is None and message.data._model is None, "nothing validated to send"
            assert message.data.task_id == event.task.task_id and message.data._model is not None
            assert message.envelope().data.model_dump() == parsed.data.model_dump()
            # The bus starts a trace for a message published without one: the record carries it.
            parsed.traceparent = message.traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
            parsed.tracestate = message.tracestate = None
            assert list(json.loads(message.to_json_bytes()).items()) == list(json.loads(parsed.to_json_bytes()).items())
