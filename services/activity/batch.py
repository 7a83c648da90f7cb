"""One batch of task commands: read its tasks and their leads once, apply each command in order, store in bulk.

Each task remembers the messages applied to it with what they published, written with the task in the
same document: a redelivered command finds itself there and publishes the same records again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from contracts import Envelope
from crmkit import access
from crmkit.applied import Applied, applied_for
from crmkit.conflicts import retry_on_conflict
from crmkit.messaging import Outbound
from crmkit.principals import Principal
from services.activity import domain as d
from services.activity.messages import actor_of, next_call_id, outbound_of, plain, rejection, replay, serialize, task_id_of
from services.activity.projection import LeadProjection
from services.activity.repository import StoredTask, TaskRepository

# A command of the batch with its position in it: answers go out in the order the commands came.
Placed = tuple[int, Envelope]


@dataclass
class TaskState:
    """A task as it evolves through one batch."""

    stored: StoredTask | None
    task: d.Task | None
    recent: list[Applied[dict[str, str]]]
    dirty: bool = False

    def seen(self, message_id: str) -> Applied[dict[str, str]] | None:
        return applied_for(self.recent, message_id)


@dataclass
class Answer:
    """What one command produced, and the lead whose summary it makes owed (if it changed a task)."""

    out: list[Outbound] = field(default_factory=list)
    touched_lead: str | None = None


@dataclass
class TaskBatch:
    """The task commands of one consumed batch, worked through to the events owed for them."""

    tasks: TaskRepository
    leads: LeadProjection
    source: str
    now: datetime
    actors: Mapping[str, Principal]
    types: Mapping[str, str]  # the custom task types, as the batch reads them
    final: list[d.Task] = field(default_factory=list)  # every task the batch saw, as stored at its end
    # The agendas of the batch's leads as its first read found them (before any of its changes), so that
    # bringing them in line after (handlers._keep_agendas) needs no second read of the same documents.
    agendas: dict[str, dict[str, datetime] | None] = field(default_factory=dict)

    async def run(self, commands: list[Placed]) -> dict[int, Answer]:
        """Each command's answer, by its position in the batch."""
        by_task: dict[str, list[Placed]] = defaultdict(list)
        for placed in commands:
            by_task[task_id_of(placed[1])].append(placed)
        answers: dict[int, Answer] = {}
        pending = set(by_task)
        # A task whose first command here creates it is most likely new: inserted blind, without a read. One
        # stored already (a redelivery, a repeated id) loses its insert and is applied again to what is stored.
        must_load = {tid for tid, placed in by_task.items() if placed[0][1].type != "crm.task.create"}
        for _attempt in retry_on_conflict(lambda: f"tasks {sorted(pending)[:5]} under this batch"):
            stored = await self.tasks.get_many(pending & must_load)
            states = {
                tid: TaskState(s, s.task, list(s.recent)) if (s := stored.get(tid)) else TaskState(None, None, [])
                for tid in pending
            }
            creates = [m.data.lead_id for tid in pending for _, m in by_task[tid] if m.type == "crm.task.create"]
            leads, agendas = await self.leads.read_many([*creates, *(s.task.lead_id for s in stored.values())])
            self.agendas = agendas | self.agendas  # a retry's read may see what the first round stored: kept first
            decided = {p: self._apply(m, tid, states[tid], leads) for tid in pending for p, m in by_task[tid]}
            dirty = [s for s in states.values() if s.dirty]
            lost = await self.tasks.save_many(
                [StoredTask(s.task, s.recent) for s in dirty if s.stored is None],
                [(StoredTask(s.task, s.recent), s.stored.task) for s in dirty if s.stored is not None],
            )
            # The calls `no_answer`s scheduled, derived from the completed tasks (a replay derives the same); the
            # call's id only for those (3 µs a task, most of them not calls that scheduled one).
            calls = [d.next_call(s.task, next_call_id(tid)) for tid, s in states.items()
                     if s.task and tid not in lost and d.schedules_call(s.task)]
            self.final += await self.tasks.insert_follow_ups([c for c in calls if c is not None])
            self.final += [s.task for tid, s in states.items() if s.task and tid not in lost]
            answers |= {p: decided[p] for tid in pending - lost for p, _ in by_task[tid]}
            pending = lost  # another writer got there first: apply their commands again to what it stored
            must_load |= lost
            if not pending:
                return answers
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    def _apply(self, message: Envelope, task_id: str, state: TaskState, leads: Mapping[str, d.LeadInfo]) -> Answer:
        if (seen := state.seen(message.id)) is not None and state.task is not None:
            return Answer(replay(seen), state.task.lead_id)  # a redelivery: publish again what it produced
        named_lead = getattr(message.data, "lead_id", None) or message.subject
        if (refused := access.licence_refusal(message, self.actors)) is not None:
            # Before the task's lead or type is looked at: nothing is learnt of them.
            return Answer([rejection(message, refused, self.source, named_lead)])
        try:
            change = self._decide(message, task_id, state.task, leads)
        except d.Rejected as exc:
            return Answer([rejection(message, exc, self.source, state.task.lead_id if state.task else named_lead)])
        if not change.changed:
            return Answer()
        out = [outbound_of(e, message, self.source, i, self.now) for i, e in enumerate(change.events)]
        state.task, state.dirty = change.task, True
        state.recent.append(Applied(message.id, serialize(out)))
        return Answer(out, change.task.lead_id)

    def _decide(self, message: Envelope, task_id: str, task: d.Task | None, leads: Mapping[str, d.LeadInfo]) -> d.Change:
        """Which rule a command invokes, with the state it needs."""
        data, now = message.data, self.now
        actor = actor_of(self.actors[message.actorid or ""])
        if message.type == "crm.task.create":
            fields = data.model_dump(exclude={"task_id"}, mode="python")
            fields["priority"] = plain(fields.get("priority"))
            return d.create_task(actor, leads.get(data.lead_id), task_id, fields, self.types, now, existing=task)
        d.require_licensed(actor)
        if task is None:
            raise d.Rejected("not_found", f"task {task_id} does not exist", [("task_id", "unknown task")])
        lead = leads.get(task.lead_id)
        match message.type:
            case "crm.task.update":
                changes = {k: plain(v) for k, v in data.model_dump(exclude_unset=True, exclude={"task_id"}).items()}
                return d.update_task(actor, task, lead, changes, now)
            case "crm.task.complete":
                return d.complete_task(
                    actor, task, lead, outcome=plain(data.outcome), comment=data.comment,
                    next_call_at=data.next_call_at, reason_id=data.reason_id, call_id=next_call_id(task_id), now=now,
                )
            case "crm.task.cancel":
                return d.cancel_task(actor, task, data.comment, now)
        raise AssertionError(f"unrouted message type {message.type}")
