"""Translate contract messages into task rules and the rules' results back into contract messages."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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
from contracts.topics import ACTIVITY_EVENTS, QUALIFICATION_COMMANDS
from crmkit import access
from crmkit.conflicts import retry_on_conflict
from crmkit.ids import uuid5
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import Principal, PrincipalRepository
from services.activity import domain as d
from services.activity.repository import LeadProjection, Owed, Recent, StoredTask, TaskRepository, TaskTypeRepository
from services.activity.settings import ActivitySettings

log = logging.getLogger("services.activity")

# Stable ids: the same input message always yields the same task ids and event ids, so a replay
# after a crash publishes identical events that consumers dedupe.
_ID_NAMESPACE = uuid.UUID("3d0c7b1e-6a0f-4a57-b8e4-2f1e9c4d7a21")

TASK_COMMANDS = {"crm.task.create", "crm.task.update", "crm.task.complete", "crm.task.cancel"}
USER_COMMANDS = TASK_COMMANDS | {"crm.task.type.add"}
LEAD_FACTS = {"crm.lead.created", "crm.lead.updated", "crm.lead.deleted", "crm.lead.restored", "crm.lead.stage-changed"}
# Lead facts first, so a task command that shares a batch with its lead's creation finds the lead.
_PHASES = {**{t: 0 for t in LEAD_FACTS}, "crm.lead.disqualified": 1}

Publish = Callable[[Sequence[Outbound]], Awaitable[None]]


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


def _outbound(event: Any, cause: Envelope, source: str, index: int, now: datetime) -> Outbound:
    common = dict(source=source, correlationid=cause.correlationid or cause.id, causationid=cause.id, time=now)
    if isinstance(event, d.DisqualifyRequested):
        payload = DisqualifyLead(lead_id=event.lead_id, reason_id=event.reason_id, comment=event.comment)
        message = build_message(payload, actorid=event.actor_id, id=stable_id(cause.id, "disqualify"), **common)
        return Outbound(QUALIFICATION_COMMANDS, message)
    payload = _TASK_EVENTS[type(event)].model_validate(event.task.model_dump())
    message = build_message(
        payload, actorid=cause.actorid, id=stable_id(cause.id, event.task.task_id, str(index), payload.TYPE), **common
    )
    return Outbound(ACTIVITY_EVENTS, message)


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


def _serialize(outbound: Sequence[Outbound]) -> list[dict[str, str]]:
    return [{"topic": o.topic, "message": o.message.to_json_bytes().decode(), "key": o.key or ""} for o in outbound]


def _replay(recent: Recent) -> list[Outbound]:
    return [Outbound(e["topic"], Envelope.model_validate_json(e["message"]), e.get("key") or None) for e in recent.events]


def lead_facts(data: Any, message_type: str) -> tuple[str, int, dict[str, Any]]:
    """What a lead event says about the lead: its id, its version, and the facts the projection keeps."""
    if message_type in ("crm.lead.created", "crm.lead.updated"):
        facts = {
            "pipeline_id": data.pipeline_id,
            "status": _value(data.status),
            "deleted": data.deleted,
            "title": data.title,
            "data_changed_at": data.data_changed_at,
        }
    elif message_type == "crm.lead.stage-changed":
        facts = {"pipeline_id": data.pipeline_id, "status": _value(data.to_status)}
    else:
        facts = {"deleted": message_type == "crm.lead.deleted"}
    return data.lead_id, data.version, facts


@dataclass
class _Result:
    out: list[Outbound] = field(default_factory=list)
    touched_lead: str | None = None  # a lead whose tasks changed, so its summary is owed


class ActivityHandlers:
    """The activity service's message handling and its periodic due pass."""

    def __init__(
        self,
        settings: ActivitySettings,
        tasks: TaskRepository,
        leads: LeadProjection,
        types: TaskTypeRepository,
        principals: PrincipalRepository,
        source: str,
        publish: Publish,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.leads = leads
        self.types = types
        self.principals = principals
        self.source = source
        self.publish = publish
        self.clock = clock
        # Read once per batch (a batch is handled by one task at a time): the actors of its
        # commands, and the task types until a command of the batch adds one.
        self._actors: dict[str, Principal] = {}
        self._types: dict[str, str] | None = None
        self._leads: dict[str, d.LeadInfo | None] = {}  # the lead projection as this batch's commands read it

    async def on_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Task commands, lead facts and disqualifications in; task events, summaries and disqualify commands out."""
        messages = [item.message for item in batch]
        await self.principals.apply([m for m in messages if PrincipalRepository.handles(m.type)])
        out: list[Outbound] = []
        # A command with no actor, or with a field out of bounds, is answered before anything is read.
        screened = []
        for message in messages:
            refusal = access.screen(message) if message.type in USER_COMMANDS else None
            if refusal is None:
                screened.append(message)
            else:
                out.append(rejection(message, refusal, self.source, getattr(message.data, "lead_id", None) or message.subject))
        messages = screened
        self._actors = await self.principals.get_many(access.actor_ids(m for m in messages if m.type in USER_COMMANDS))
        self._types = None
        self._leads = {}
        touched: dict[str, Envelope] = {}
        for message in sorted(messages, key=lambda m: _PHASES.get(m.type, 2)):
            result = await self._route(message)
            out.extend(result.out)
            if result.touched_lead:
                touched[result.touched_lead] = message
        out.extend(await self._summaries({lead: (m.id, m.correlationid or m.id) for lead, m in touched.items()}, self.clock()))
        return out

    async def _route(self, message: Envelope) -> _Result:
        if message.type in TASK_COMMANDS:
            return await self._task_command(message)
        self._leads.clear()  # a lead fact may change what the next command reads
        if message.type == "crm.task.type.add":
            return await self._add_type(message)
        if message.type in LEAD_FACTS:
            return await self.on_lead_fact(message)
        if message.type == "crm.lead.disqualified":
            data = message.data
            return await self._lead_tasks(
                message, data.lead_id, "open",
                lambda task, now: d.complete_with_lead_disqualified(task, data.reason, data.comment, now),
            )
        return _Result()

    # --- commands on one task -----------------------------------------------------------------

    async def _task_command(self, message: Envelope) -> _Result:
        task_id = task_id_of(message)
        for _attempt in retry_on_conflict(f"task {task_id} under command {message.id}"):
            stored = await self.tasks.get(task_id)
            seen = stored.recent_for(message.id) if stored else None
            if stored and seen:  # a redelivery: publish again what it produced, change nothing
                await self._ensure_follow_up(stored.task)
                return _Result(_replay(seen), stored.task.lead_id)
            lead_id = stored.task.lead_id if stored else getattr(message.data, "lead_id", None)
            refused = await self._licence(message)
            if refused is not None:  # before the task's lead or type is read: nothing is learnt of them
                return _Result([rejection(message, refused, self.source, getattr(message.data, "lead_id", None) or message.subject)])
            now = self.clock()
            try:
                change = await self._decide(message, task_id, stored, now)
            except d.Rejected as exc:
                return _Result([rejection(message, exc, self.source, lead_id)])
            if not change.changed:
                return _Result()
            out = [_outbound(e, message, self.source, i, now) for i, e in enumerate(change.events)]
            recent = [*(stored.recent if stored else []), Recent(message.id, _serialize(out))]
            if stored is None:
                saved = await self.tasks.insert(change.task, recent)
            else:
                saved = await self.tasks.replace(change.task, stored.task, recent)
            if saved:
                await self._ensure_follow_up(change.task)
                return _Result(out, change.task.lead_id)
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    async def _decide(self, message: Envelope, task_id: str, stored: StoredTask | None, now: datetime) -> d.Change:
        """Which rule a command invokes, with the state it needs."""
        data = message.data
        actor = actor_of(await self._actor(message.actorid))
        if message.type == "crm.task.create":
            fields = data.model_dump(exclude={"task_id"}, mode="python")
            fields["priority"] = _value(fields.get("priority"))
            return d.create_task(
                actor, await self._lead(data.lead_id), task_id, fields, await self._task_types(), now,
                existing=stored.task if stored else None,
            )
        d.require_licensed(actor)
        if stored is None:
            raise d.Rejected("not_found", f"task {task_id} does not exist", [("task_id", "unknown task")])
        task = stored.task
        lead = await self._lead(task.lead_id)
        match message.type:
            case "crm.task.update":
                changes = {k: _value(v) for k, v in data.model_dump(exclude_unset=True, exclude={"task_id"}).items()}
                return d.update_task(actor, task, lead, changes, now)
            case "crm.task.complete":
                return d.complete_task(
                    actor, task, lead, outcome=_value(data.outcome), comment=data.comment,
                    next_call_at=data.next_call_at, reason_id=data.reason_id, call_id=next_call_id(task_id), now=now,
                )
            case "crm.task.cancel":
                return d.cancel_task(actor, task, data.comment, now)
        raise AssertionError(f"unrouted message type {message.type}")

    async def _licence(self, message: Envelope) -> access.Refusal | None:
        principal = await self._actor(message.actorid)
        return access.licence_refusal(message, {principal.user_id: principal})

    async def _actor(self, user_id: str | None) -> Principal:
        found = self._actors.get(user_id or "")
        return found if found is not None else await self.principals.get(user_id or "")

    async def _lead(self, lead_id: str) -> d.LeadInfo | None:
        if lead_id not in self._leads:
            self._leads[lead_id] = await self.leads.get(lead_id)
        return self._leads[lead_id]

    async def _task_types(self) -> dict[str, str]:
        if self._types is None:
            self._types = await self.types.all()
        return self._types

    async def _ensure_follow_up(self, task: d.Task) -> None:
        """Store the call a `no_answer` scheduled; derived from the completed task, so a replay stores the same one."""
        call = d.next_call(task, next_call_id(task.task_id))
        if call is not None:
            await self.tasks.insert(call, [])  # False: stored already, by the first delivery

    async def _add_type(self, message: Envelope) -> _Result:
        data = message.data
        if await self.types.added_by(data.type_id) == message.id:
            return _Result()
        refused = await self._licence(message)
        if refused is not None:
            return _Result([rejection(message, refused, self.source, None)])
        try:
            actor = actor_of(await self._actor(message.actorid))
            d.add_task_type(actor, data.type_id, data.name, await self._task_types())
            self._types = None  # read again by the next command that needs them
            if not await self.types.add(data.type_id, data.name, message.id):
                raise d.Rejected("conflict", f"task type {data.type_id!r} already exists", [("type_id", "already exists")])
        except d.Rejected as exc:
            return _Result([rejection(message, exc, self.source, None)])
        return _Result()

    # --- the lead's fate ----------------------------------------------------------------------

    async def on_lead_fact(self, message: Envelope) -> _Result:
        lead_id, version, facts = lead_facts(message.data, message.type)
        lead = await self.leads.apply(lead_id, version, facts)
        if lead is None or not lead.known:
            return _Result()
        # Acting on the state (not on the transition) keeps a redelivery after a crash doing the rest.
        if d.lead_reaction(lead) == "cancel_open":
            return await self._lead_tasks(message, lead_id, "open", d.cancel_with_lead_deleted)
        return await self._lead_tasks(message, lead_id, "cancelled", d.reopen_with_lead_restored, cancelled_with_lead=True)

    async def _lead_tasks(
        self,
        message: Envelope,
        lead_id: str,
        status: str,
        rule: Callable[[d.Task, datetime], d.Change],
        cancelled_with_lead: bool | None = None,
    ) -> _Result:
        """Apply `rule` to every task of a lead in `status`; tasks the message already changed are replayed."""
        out: list[Outbound] = []
        replayed = await self.tasks.applied(message.id, lead_id)
        for stored in replayed:
            seen = stored.recent_for(message.id)
            out.extend(_replay(seen) if seen else [])
        done = {s.task.task_id for s in replayed}
        for _attempt in retry_on_conflict(f"tasks of lead {lead_id} under {message.id}"):
            lost = False
            candidates = await self.tasks.of_lead(lead_id, status, cancelled_with_lead=cancelled_with_lead)
            for stored in candidates:
                if stored.task.task_id in done:
                    continue
                now = self.clock()
                change = rule(stored.task, now)
                if not change.changed:
                    continue
                produced = [_outbound(e, message, self.source, i, now) for i, e in enumerate(change.events)]
                if await self.tasks.replace(change.task, stored.task, [*stored.recent, Recent(message.id, _serialize(produced))]):
                    out.extend(produced)
                    done.add(stored.task.task_id)
                else:
                    lost = True
            if not lost:
                return _Result(out, lead_id if out else None)
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    # --- summaries and the due pass -----------------------------------------------------------

    async def _summaries(self, causes: dict[str, tuple[str, str]], now: datetime) -> list[Outbound]:
        """The current activity summary of each lead, caused by the last message that changed its tasks."""
        if not causes:
            return []
        open_tasks = await self.tasks.open_of_leads(causes)
        return [
            summary_message(d.summarize(lead_id, open_tasks, now), cause_id, correlation_id, self.source, now)
            for lead_id, (cause_id, correlation_id) in sorted(causes.items())
        ]

    async def run_due_pass(self, now: datetime | None = None) -> list[Outbound]:
        """Announce tasks that became due soon or overdue at `now`, once each, and refresh their leads' summaries.

        Each notice is claimed with a conditional update of the task's flags (one instance wins) that
        also records it as owed; it is settled once the broker acknowledged it. Notices owed for long
        (an instance died in between) are published again by the next pass, with the same id.
        """
        now = d.utc(now or self.clock())
        owed = await self.tasks.stale_notices(now - timedelta(seconds=self.settings.owed_notice_grace_s))
        out = [Outbound(ACTIVITY_EVENTS, Envelope.model_validate_json(o.message)) for o in owed]
        causes: dict[str, tuple[str, str]] = {}
        for task in await self.tasks.due_candidates(now, now + d.DUE_SOON_WITHIN, self.settings.due_pass_batch):
            notice = d.due_notice(task, now)
            if notice is None:
                continue
            item = notice_message(task, notice.kind, self.source, now)
            serialized = item.message.to_json_bytes().decode()
            if await self.tasks.claim_notice(task, notice.due_soon_notified, notice.overdue_notified, item.message.id, serialized, now):
                out.append(item)
                owed.append(Owed(task.task_id, item.message.id, serialized))
                causes[task.lead_id] = (item.message.id, item.message.id)
        out.extend(await self._summaries(causes, now))
        if out:
            await self.publish(out)
            await self.tasks.settle_notices(owed)
        return out


def _value(value: Any) -> Any:
    return getattr(value, "value", value)
