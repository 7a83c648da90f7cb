"""One batch of qualify and disqualify commands: read its leads and processes once, decide, store in bulk.

A process is stored first (the claim on its lead, with the events it owes), then every company and
deal of the batch in one insert each, then the processes are marked done; the events are published
after, by the consumer. A crash anywhere in between leaves each process stored with its events: the
redelivered command finds it, stores again what may be missing (inserts under ids fixed by the plan)
and publishes the same events, so nothing applies twice and nothing is lost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from contracts import Envelope
from crmkit import access
from crmkit.conflicts import retry_on_conflict
from crmkit.principals import Principal, PrincipalRepository
from services.qualification import domain as d
from services.qualification.messages import (
    actor_of,
    command_rejected,
    disqualification_events,
    qualification_events,
    qualification_rejected,
    qualify_request,
    refused,
)
from services.qualification.repository import (
    ClosingRepository,
    CompanyRepository,
    DealRepository,
    LeadProjection,
    ReasonRepository,
    StoredClosing,
)
from services.qualification.settings import QualificationSettings

CLOSING_COMMANDS = frozenset({"crm.lead.qualify", "crm.lead.disqualify"})

# A command of the batch with its position in it: answers go out in the order the commands came.
Placed = tuple[int, Envelope]


@dataclass(frozen=True)
class ClosingStores:
    """The stores a batch of closing commands reads and writes."""

    leads: LeadProjection
    closings: ClosingRepository
    companies: CompanyRepository
    deals: DealRepository
    reasons: ReasonRepository
    principals: PrincipalRepository


@dataclass(frozen=True)
class Reads:
    """What one round of commands is decided against, read once for all of them."""

    closings: dict[str, StoredClosing]
    leads: dict[str, d.Lead]
    actors: dict[str, Principal]
    companies: set[str]  # the ids named by company_id that are known
    reasons: dict[str, list[d.Reason]]  # by pipeline, for the disqualifications


@dataclass
class Decided:
    """What a round decided: answers ready now, and processes to store (new, replacing a reopened one, resumed)."""

    answers: dict[int, list[Envelope]] = field(default_factory=dict)
    starts: dict[str, tuple[int, StoredClosing, list[Envelope]]] = field(default_factory=dict)
    replacing: dict[str, tuple[int, StoredClosing, list[Envelope], d.Closing]] = field(default_factory=dict)
    resumed: dict[str, tuple[int, StoredClosing]] = field(default_factory=dict)


def rounds(commands: list[Placed]) -> list[list[Placed]]:
    """The commands in rounds of at most one per lead, each lead's commands in the order they came.

    A lead's second command must be decided against what its first one stored."""
    per_lead: dict[str, list[Placed]] = defaultdict(list)
    for placed in commands:
        per_lead[placed[1].data.lead_id].append(placed)
    depth = max((len(v) for v in per_lead.values()), default=0)
    return [[found[i] for found in per_lead.values() if len(found) > i] for i in range(depth)]


def outbox_of(stored: StoredClosing) -> list[Envelope]:
    return [Envelope.model_validate_json(e) for e in stored.outbox]


@dataclass
class ClosingBatch:
    """Qualify and disqualify commands of one consumed batch, worked through to the events they owe."""

    settings: QualificationSettings
    stores: ClosingStores
    source: str
    now: datetime
    after_step: Callable[[str], None]  # called after each bulk write with the state it reached; tests crash there
    # Each owed event's record value by message id: serialized once, for the process's outbox and the bus.
    wire: dict[str, bytes] = field(default_factory=dict)

    async def run(self, commands: list[Placed]) -> dict[int, list[Envelope]]:
        """Each command's answer, by its position in the batch."""
        answers: dict[int, list[Envelope]] = {}
        for placed in rounds(commands):
            answers |= await self._round(placed)
        return answers

    async def _round(self, commands: list[Placed]) -> dict[int, list[Envelope]]:
        answers: dict[int, list[Envelope]] = {}
        pending = commands
        for _attempt in retry_on_conflict(lambda: f"leads {sorted(m.data.lead_id for _, m in pending)[:5]} under this batch"):
            reads = await self._read([m for _, m in pending])
            decided = Decided()
            for position, message in pending:
                self._decide(position, message, reads, decided)
            lost = await self._start(decided)
            await self._finish(
                [s for lid, (_, s, _) in decided.starts.items() if lid not in lost]
                + [s for lid, (_, s, _, _) in decided.replacing.items() if lid not in lost]
                + [s for _, s in decided.resumed.values()]
            )
            answers |= decided.answers
            answers |= {p: out for lid, (p, _, out) in decided.starts.items() if lid not in lost}
            answers |= {p: out for lid, (p, _, out, _) in decided.replacing.items() if lid not in lost}
            answers |= {p: self._replayed(s) for p, s in decided.resumed.values()}
            # Another command got to these leads first: decide them again against what it stored.
            pending = [(p, m) for p, m in pending if m.data.lead_id in lost]
            if not pending:
                return answers
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")

    async def _read(self, commands: list[Envelope]) -> Reads:
        stores = self.stores
        lead_ids = {m.data.lead_id for m in commands}
        leads = await stores.leads.get_many(lead_ids)
        named = {m.data.company_id for m in commands if m.type == "crm.lead.qualify" and m.data.company_id}
        pipelines = {leads[m.data.lead_id].pipeline_id for m in commands if m.type == "crm.lead.disqualify" and m.data.lead_id in leads}
        return Reads(
            closings=await stores.closings.get_many(lead_ids),
            leads=leads,
            actors=await stores.principals.get_many(access.actor_ids(commands)),
            companies=await stores.companies.known(named),
            reasons={pid: (await stores.reasons.get(pid)).reasons for pid in sorted(pipelines)},
        )

    def _decide(self, position: int, message: Envelope, reads: Reads, decided: Decided) -> None:
        lead_id = message.data.lead_id
        stored = reads.closings.get(lead_id)
        if stored is not None and stored.closing.command_id == message.id:
            # A redelivery: finish what is left, publish the same events.
            if stored.closing.state == "done":
                decided.answers[position] = self._replayed(stored)
            else:
                decided.resumed[lead_id] = (position, stored)
            return
        if (refusal := access.licence_refusal(message, reads.actors)) is not None:  # the lead's state stays unsaid
            decided.answers[position] = refused(message, refusal, self.source)
            return
        planned = self._plan(message, reads, stored.closing if stored else None)
        if isinstance(planned, list):
            decided.answers[position] = planned
            return
        closing, outbox = planned
        values = [e.to_json_bytes() for e in outbox]
        self.wire |= {e.id: v for e, v in zip(outbox, values, strict=True)}
        started = StoredClosing(closing, [v.decode() for v in values])
        if stored is None:
            decided.starts[lead_id] = (position, started, outbox)
        else:  # the process of a lead since reopened makes way for this one
            decided.replacing[lead_id] = (position, started, outbox, stored.closing)

    def _replayed(self, stored: StoredClosing) -> list[Envelope]:
        """The events a stored process owes, published again as its outbox holds them."""
        outbox = outbox_of(stored)
        self.wire |= {e.id: v.encode() for e, v in zip(outbox, stored.outbox, strict=True)}
        return outbox

    def _plan(self, message: Envelope, reads: Reads, previous: d.Closing | None) -> tuple[d.Closing, list[Envelope]] | list[Envelope]:
        """The process a command starts with the events it owes, or the refusal to send instead."""
        data = message.data
        actor = actor_of(reads.actors[message.actorid or ""])
        lead = reads.leads.get(data.lead_id)
        if message.type == "crm.lead.qualify":
            request = qualify_request(data)
            known = request.company_id in reads.companies if request.company_id else None
            problems = d.check_qualification(request, lead, actor, previous, message.id, self.settings.deal_pipelines, known)
            if problems:
                return [qualification_rejected(message, problems, self.source)]
            closing = d.plan_qualification(request, lead, actor, message.id, self.now, previous=previous)
            return closing, qualification_events(closing, message, self.source)
        reasons = reads.reasons.get(lead.pipeline_id, []) if lead else []
        problems = d.check_disqualification(data.lead_id, data.reason_id, lead, actor, previous, message.id, reasons)
        if problems:
            return [command_rejected(message, problems, self.source)]
        closing = d.plan_disqualification(lead, d.reason_of(reasons, data.reason_id), data.comment, message.id, self.now, previous=previous)
        return closing, disqualification_events(closing, message, self.source)

    async def _start(self, decided: Decided) -> set[str]:
        """Store the new processes; the leads where another command got there first."""
        closings = self.stores.closings
        lost = await closings.start_many([s for _, s, _ in decided.starts.values()])
        for lead_id, (_, started, _, previous) in decided.replacing.items():  # rare: one at a time
            if not await closings.start(started.closing, started.outbox, replacing=previous):
                lost.add(lead_id)
        return lost

    async def _finish(self, processes: list[StoredClosing]) -> None:
        """Create every company, then every deal the processes still owe, then mark them done."""
        running = [s.closing for s in processes if s.closing.state != "done"]
        if not running:
            return
        left = {c.lead_id: d.creates_left(c) for c in running}
        await self.stores.companies.create_many([c.new_company for c in running if "company" in left[c.lead_id]])
        self.after_step("company_created")
        await self.stores.deals.create_many([c.deal for c in running if "deal" in left[c.lead_id]])
        self.after_step("deal_created")
        await self.stores.closings.finish_many(running)
        self.after_step("done")
