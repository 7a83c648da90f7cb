"""Translate contract messages into task rules and the rules' results back into contract messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from contracts import Envelope
from contracts.topics import ACTIVITY_EVENTS
from crmkit import access
from crmkit.applied import Applied, applied_for
from crmkit.conflicts import retry_on_conflict
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import Principal, PrincipalRepository
from services.activity import domain as d
from services.activity.batch import Answer, Placed, TaskBatch
from services.activity.messages import (
    LEAD_FACTS,
    TASK_COMMANDS,
    Parsed,
    USER_COMMANDS,
    actor_of,
    changes_no_fact,
    lead_facts,
    notice_message,
    outbound_of,
    rejection,
    replay,
    serialize,
    summary_message,
)
from services.activity.projection import LeadProjection
from services.activity.repository import Owed, Recent, TaskRepository, TaskTypeRepository
from services.activity.settings import ActivitySettings

_PARSED = Parsed()
# Lead facts first, so a task command that shares a batch with its lead's creation finds the lead.
_PHASES = {**{t: 0 for t in LEAD_FACTS}, "crm.lead.disqualified": 1}

Publish = Callable[[Sequence[Outbound]], Awaitable[None]]


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
        self._agendas: dict[str, dict[str, datetime]] = {}  # the agendas this batch kept, for its summaries

    async def wanted_types(self) -> Container[str]:
        """The types the next batch is parsed for (crmkit's ``select``)."""
        return _PARSED

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
        self._actors = await self.principals.get_many(access.actor_ids(m for m in screened if m.type in USER_COMMANDS))
        self._types = None
        self._agendas = {}
        answers: dict[int, Answer] = {}
        run: list[Placed] = []  # task commands in a row, applied as one batch
        facts: list[Placed] = []  # lead facts, projected as one batch
        for position, message in enumerate(sorted(screened, key=lambda m: _PHASES.get(m.type, 2))):
            if message.type in LEAD_FACTS:  # phase 0: all of them come first
                if not changes_no_fact(message):
                    facts.append((position, message))
                continue
            answers |= await self.on_lead_facts(facts)
            facts = []
            if message.type in TASK_COMMANDS:
                run.append((position, message))
                continue
            answers |= await self._task_commands(run)
            run = []
            answers[position] = await self._route(message)
        answers |= await self.on_lead_facts(facts)
        answers |= await self._task_commands(run)
        touched: dict[str, Envelope] = {}
        for position, message in enumerate(sorted(screened, key=lambda m: _PHASES.get(m.type, 2))):
            if (answer := answers.get(position)) is not None:
                out.extend(answer.out)
                if answer.touched_lead:
                    touched[answer.touched_lead] = message
        causes = {lead: (m.id, m.correlationid or m.id) for lead, m in touched.items()}
        out.extend(await self._summaries(causes, self.clock(), self._agendas))
        return out

    async def _route(self, message: Envelope) -> Answer:
        if message.type == "crm.task.type.add":
            return await self._add_type(message)
        if message.type == "crm.lead.disqualified":
            data = message.data
            return await self._lead_tasks(
                message, data.lead_id, "open",
                lambda task, now: d.complete_with_lead_disqualified(task, data.reason, data.comment, now),
            )
        return Answer()

    async def _task_commands(self, commands: list[Placed]) -> dict[int, Answer]:
        if not commands:
            return {}
        batch = TaskBatch(self.tasks, self.leads, self.source, self.clock(), self._actors, await self._task_types())
        answers = await batch.run(commands)
        self._agendas |= await self._keep_agendas(batch.final, batch.agendas)
        return answers

    async def _licence(self, message: Envelope) -> access.Refusal | None:
        principal = await self._actor(message.actorid)
        return access.licence_refusal(message, {principal.user_id: principal})

    async def _actor(self, user_id: str | None) -> Principal:
        found = self._actors.get(user_id or "")
        return found if found is not None else await self.principals.get(user_id or "")

    async def _task_types(self) -> dict[str, str]:
        if self._types is None:
            self._types = await self.types.all()
        return self._types

    async def _add_type(self, message: Envelope) -> Answer:
        data = message.data
        if await self.types.added_by(data.type_id) == message.id:
            return Answer()
        refused = await self._licence(message)
        if refused is not None:
            return Answer([rejection(message, refused, self.source, None)])
        try:
            actor = actor_of(await self._actor(message.actorid))
            d.add_task_type(actor, data.type_id, data.name, await self._task_types())
            self._types = None  # read again by the next command that needs them
            if not await self.types.add(data.type_id, data.name, message.id):
                raise d.Rejected("conflict", f"task type {data.type_id!r} already exists", [("type_id", "already exists")])
        except d.Rejected as exc:
            return Answer([rejection(message, exc, self.source, None)])
        return Answer()

    # --- the lead's fate ----------------------------------------------------------------------

    async def on_lead_facts(self, facts: list[Placed]) -> dict[int, Answer]:
        """Project a run of lead facts at once; a lead whose tasks do not follow its deleted state yet gets them in line.

        Acting on the state (not on the transition) keeps a redelivery after a crash doing the rest: the
        lead records which state its tasks follow only once they do, with the events that did it."""
        if not facts:
            return {}
        projected = await self.leads.apply_many([lead_facts(m.data, m.type) for _, m in facts])
        answers: dict[int, Answer] = {}
        for position, message in facts:
            found = projected.get(message.data.lead_id)
            if found is None or not found.lead.known:
                continue
            if (seen := applied_for(found.reactions, message.id)) is not None:  # a redelivery
                answers[position] = Answer(replay(seen), found.lead.lead_id if seen.events else None)
                continue
            if found.tasks_deleted == found.lead.deleted:
                continue  # its tasks follow it already: the common case, no task is read
            if d.lead_reaction(found.lead) == "cancel_open":
                answer = await self._lead_tasks(message, found.lead.lead_id, "open", d.cancel_with_lead_deleted)
            else:
                answer = await self._lead_tasks(
                    message, found.lead.lead_id, "cancelled", d.reopen_with_lead_restored, cancelled_with_lead=True
                )
            projected[found.lead.lead_id] = await self.leads.reacted(found, Applied(message.id, serialize(answer.out)))
            answers[position] = answer
        return answers

    async def _lead_tasks(
        self,
        message: Envelope,
        lead_id: str,
        status: str,
        rule: Callable[[d.Task, datetime], d.Change],
        cancelled_with_lead: bool | None = None,
    ) -> Answer:
        """Apply `rule` to every task of a lead in `status`; tasks the message already changed are replayed."""
        out: list[Outbound] = []
        replayed = await self.tasks.applied(message.id, lead_id)
        for stored in replayed:
            seen = stored.recent_for(message.id)
            out.extend(replay(seen) if seen else [])
        done = {s.task.task_id for s in replayed}
        final = [s.task for s in replayed]
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
                produced = [outbound_of(e, message, self.source, i, now) for i, e in enumerate(change.events)]
                if await self.tasks.replace(change.task, stored.task, [*stored.recent, Recent(message.id, serialize(produced))]):
                    out.extend(produced)
                    done.add(stored.task.task_id)
                    final.append(change.task)
                else:
                    lost = True
            if not lost:
                self._agendas |= await self._keep_agendas(final)
                return Answer(out, lead_id if out else None)
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    # --- summaries and the due pass -----------------------------------------------------------

    async def _keep_agendas(
        self, tasks: Sequence[d.Task], read: Mapping[str, dict[str, datetime] | None] | None = None,
    ) -> dict[str, dict[str, datetime]]:
        """Bring the agendas of these tasks' leads in line with them (stored first); the agendas as they are now.

        ``read`` holds agendas already read since they were last written (not read again). Derived from the
        tasks' stored state, so a redelivery after a crash in between puts them right."""
        changes: dict[str, dict[str, datetime | None]] = {}
        for task in tasks:
            changes.setdefault(task.lead_id, {})[task.task_id] = task.due_at if task.is_open else None
        if not changes:
            return {}
        read = read or {}
        current = {lead_id: read[lead_id] for lead_id in changes if lead_id in read}
        current |= await self.leads.agendas([lead_id for lead_id in changes if lead_id not in current])
        missing = [lead_id for lead_id in changes if current.get(lead_id) is None]
        old = await self.leads.old_agendas(missing)  # read before the tasks: see keep_agendas
        rebuilt = await self._open_by_lead(missing)  # leads from before agendas: read their open tasks once
        await self.leads.keep_agendas({lid: c for lid, c in changes.items() if lid not in rebuilt}, rebuilt, old)
        kept = dict(rebuilt)
        for lead_id in changes.keys() - rebuilt.keys():
            agenda = dict(current[lead_id] or {})
            for task_id, due in changes[lead_id].items():
                if due is None:
                    agenda.pop(task_id, None)
                else:
                    agenda[task_id] = due
            kept[lead_id] = agenda
        return kept

    async def _open_by_lead(self, lead_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        agendas: dict[str, dict[str, datetime]] = {lead_id: {} for lead_id in lead_ids}
        for task in await self.tasks.open_of_leads(lead_ids):
            agendas[task.lead_id][task.task_id] = task.due_at
        return agendas

    async def _summaries(
        self, causes: dict[str, tuple[str, str]], now: datetime, kept: dict[str, dict[str, datetime]] | None = None
    ) -> list[Outbound]:
        """The current activity summary of each lead, caused by the last message that changed its tasks."""
        if not causes:
            return []
        agendas = dict(kept or {})
        unread = [lead_id for lead_id in causes if lead_id not in agendas]
        stored = await self.leads.agendas(unread)
        agendas |= {lid: a for lid, a in stored.items() if a is not None}
        agendas |= await self._open_by_lead([lid for lid in unread if lid not in agendas])
        return [
            summary_message(d.summarize_agenda(lead_id, agendas[lead_id], now), cause_id, correlation_id, self.source, now)
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
