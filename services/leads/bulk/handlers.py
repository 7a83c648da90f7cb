"""Mass-action commands (start, cancel) and the record of how each lead answered its own command."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from contracts import Envelope, build_message
from contracts.bulk import BulkUpdateStarted
from contracts.topics import LEADS_EVENTS
from crmkit import access
from crmkit.ids import uuid5
from crmkit.messaging import Outbound, Published
from crmkit.principals import Principal, PrincipalRepository
from services.leads import domain as d
from services.leads.bulk.repository import Answer, BulkJob, BulkRepository
from services.leads.domain import bulk as rules
from services.leads.messages import ID_NAMESPACE, rejection
from services.leads.repository import LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings

BULK_COMMANDS = frozenset({"crm.leads.bulk-update", "crm.leads.bulk-cancel"})
_LEAD_COMMANDS = frozenset(rules.ACTION_COMMANDS.values())
_PAGE = 200
# The CloudEvents extension attribute naming the job on each lead's command of a mass action.
BULK_ATTRIBUTE = "bulkid"


def command_id(bulk_id: str, lead_id: str) -> str:
    """The id of the command a job sends one lead: the same whenever it is sent again."""
    return uuid5(ID_NAMESPACE, f"bulk\x1f{bulk_id}\x1f{lead_id}")


def bulk_id_of(message: Envelope) -> str:
    return getattr(message.data, "bulk_id", None) or uuid5(ID_NAMESPACE, f"bulk\x1f{message.id}")


class BulkHandlers:
    """Starts jobs (their leads listed once and kept, so a redelivery sends the same leads) and cancels them."""

    def __init__(
        self, settings: LeadsSettings, jobs: BulkRepository, leads: LeadRepository, principals: PrincipalRepository,
        source: str, clock: Callable[[], datetime], wake: Callable[[], None], pipelines: PipelineRepository,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.leads = leads
        self.pipelines = pipelines
        self.principals = principals
        self.source = source
        self.clock = clock
        self.wake = wake  # tells the runner (services/leads/bulk/runner.py) a job wants it

    async def on_command(self, message: Envelope) -> list[Outbound]:
        bulk_id = bulk_id_of(message)
        principal = await self.principals.get(message.actorid)
        refused = access.licence_refusal(message, {principal.user_id: principal})
        try:
            if refused is not None:
                raise d.Rejected(refused.code, refused.message, refused.errors)  # type: ignore[arg-type]
            if message.type == "crm.leads.bulk-cancel":
                await self._cancel(message, bulk_id, principal.user_id, principal.is_admin)
                return []
            event = await self._start(message, bulk_id, principal)
        except d.Rejected as exc:
            if message.type == "crm.leads.bulk-update":
                # Kept where its requester looks (GET /bulk/{id}): over HTTP the refusal is not theirs to read otherwise.
                await self.jobs.refuse(bulk_id, message.id, message.actorid or "", _text(exc.code), exc.message, exc.errors, self.clock())
            return [Outbound(LEADS_EVENTS, rejection(message, exc, self.source, None), key=bulk_id)]
        self.wake()
        return [Outbound(LEADS_EVENTS, event, key=bulk_id)]

    async def on_screened_out(self, message: Envelope, refusal: access.Refusal) -> None:
        """A `crm.leads.bulk-update` refused before anything was read (1,001 `lead_ids`, an over-long field) is
        kept in state `refused`, as a refusal found later is, so GET /bulk/{id} says why rather than 404.

        Not when the refusal is about the job's id or its actor: there is no id to keep it under, or no one it is for.
        """
        if message.type != "crm.leads.bulk-update" or any(field in ("bulk_id", "actorid", "subject") for field, _ in refusal.errors):
            return
        await self.jobs.refuse(bulk_id_of(message), message.id, message.actorid or "", _text(refusal.code), refusal.message,
                               refusal.errors, self.clock())

    async def _start(self, message: Envelope, bulk_id: str, principal: Principal) -> Envelope:
        data = message.data
        job = await self.jobs.get(bulk_id)
        if job is not None and job.state == "refused":
            if job.command_id == message.id:  # a redelivery: the same answer
                raise d.Rejected(job.refused_code or "validation", job.refused_message or "", job.refused_errors)  # type: ignore[arg-type]
            job = None  # a refused command started nothing: its id is free
        if job is not None and job.command_id != message.id:
            raise d.Rejected("conflict", f"mass action {bulk_id} exists; give another bulk_id", [("bulk_id", "in use")])
        if job is None or job.state == "expanding":  # first time here, or a redelivery after a crash while listing
            request = rules.check_request(bulk_id, data.model_dump(mode="json", exclude={"bulk_id"}), message.actorid or "")
            # Listed before anything is stored: a filter that matches too much leaves no job behind.
            lead_ids = request.lead_ids if request.lead_ids is not None else await self._matching(request.filter or {}, principal)
            job = await self.jobs.start(request, message.id, message.correlationid or message.id, self.clock())
            await self.jobs.store_leads(bulk_id, list(lead_ids))
            job = await self.jobs.get(bulk_id) or job
        return self._started(job, message)

    async def _matching(self, found_filter: dict, principal: Principal) -> list[str]:
        """Every lead the filter matches now that ``principal`` may see, page by page through the list endpoint's own query.

        As GET /leads does: leads of pipelines hidden from the requester are not listed, so their ids
        never show among the job's refusals.
        """
        found = await self.pipelines.all(include_deleted=True)
        shown = sorted(pid for pid, p in found.items() if d.can_see(principal, p))
        restricted = len(shown) < len(found)
        if restricted and found_filter.get("pipeline_id") and found_filter["pipeline_id"] not in shown:
            return []
        ids: list[str] = []
        cursor = None
        limit = self.settings.bulk_max_leads
        while True:
            page, cursor = await self.leads.search(
                pipeline_id=found_filter.get("pipeline_id"), stage_id=found_filter.get("stage_id"),
                status=found_filter.get("status"), responsible_id=found_filter.get("responsible_id"),
                source=found_filter.get("source"), text=found_filter.get("q"),
                include_deleted=bool(found_filter.get("include_deleted")), cursor=cursor, limit=_PAGE,
                pipeline_ids=shown if restricted else None,
            )
            ids += [lead.lead_id for lead in page]
            if len(ids) > limit:
                raise d.Rejected("validation", f"the filter matches more than {limit:,} leads; narrow it, or split the job",
                                 [("filter", f"more than {limit:,} leads")])
            if not cursor:
                return list(dict.fromkeys(ids))

    async def _cancel(self, message: Envelope, bulk_id: str, actor_id: str, is_admin: bool) -> None:
        job = await self.jobs.get(bulk_id)
        if job is not None and job.cancel_command_id == message.id:
            return  # a redelivery of the cancel that took effect
        rules.check_cancel(job.state if job else None, bulk_id, job.requested_by if job else None, actor_id, is_admin)
        # Only the runner turns the job's waiting items to cancelled: it alone sends them, so an item it
        # is sending right now is never marked cancelled while its command goes out.
        await self.jobs.request_cancel(bulk_id, message.id)
        self.wake()

    def _started(self, job: BulkJob, cause: Envelope) -> Envelope:
        payload = BulkUpdateStarted(bulk_id=job.bulk_id, action=job.action, total=job.total, requested_by=job.requested_by)
        return build_message(
            payload, source=self.source, time=self.clock(), id=uuid5(ID_NAMESPACE, f"{job.bulk_id}\x1fstarted"),
            correlationid=cause.correlationid or cause.id, causationid=cause.id, actorid=cause.actorid,
        )


class BulkTracker:
    """Around a batch's lead messages: leave out those of cancelled jobs, then record how each job's lead answered."""

    def __init__(self, jobs: BulkRepository, source: str, wake: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), leads: LeadRepository | None = None) -> None:
        self.jobs = jobs
        self.leads = leads  # where a redelivered command is found applied already (the lead's applied messages)
        self.source = source
        self.clock = clock  # when an answer came: the order a job's refusals are listed in
        self.wake = wake  # answers recorded: the runner may send the next wave now rather than at its next pass

    def _tracked(self, messages: list[Envelope]) -> dict[str, tuple[str, str]]:
        """The job commands among ``messages``: command id -> (job, lead).

        A job's command carries the job in the extension attribute `bulkid`; it counts only when its id
        is the one the job gives that lead, so a stray attribute cannot add an answer to a job.
        """
        found = {}
        for m in messages:
            bulk_id = (m.model_extra or {}).get(BULK_ATTRIBUTE)
            if m.source == self.source and m.type in _LEAD_COMMANDS and isinstance(bulk_id, str):
                lead_id = m.data.lead_id
                if m.id == command_id(bulk_id, lead_id):
                    found[m.id] = (bulk_id, lead_id)
        return found

    async def screen(self, messages: list[Envelope]) -> tuple[list[Envelope], dict[str, tuple[str, str]]]:
        """The messages to apply, and the job commands among them (command id -> (job, lead))."""
        tracked = self._tracked(messages)
        if not tracked:
            return messages, {}
        cancelled = await self.jobs.cancelled(bulk_id for bulk_id, _ in tracked.values())
        if not cancelled:
            return messages, tracked
        of_cancelled = [cid for cid, (bulk_id, _) in tracked.items() if bulk_id in cancelled]
        answered = await self.jobs.answers(of_cancelled)
        # A lead that applied its command before a crash kept the answer from being recorded has changed:
        # it goes through, as an answered one does, so the redelivery publishes its events again and
        # its answer is counted from them, not as `cancelled`.
        applied = await self._applied({cid: tracked[cid][1] for cid in of_cancelled if cid not in answered})
        # Not answered yet and not applied, or answered `cancelled` (sent just before the cancel): left alone.
        skip = {cid for cid in of_cancelled if answered.get(cid, rules.CANCELLED) == rules.CANCELLED and cid not in applied}
        await self.jobs.record({cid: tracked[cid][0] for cid in skip},
                               [Answer(cid, tracked[cid][1], rules.CANCELLED) for cid in skip if cid not in answered], self.clock())
        return [m for m in messages if m.id not in skip], {cid: t for cid, t in tracked.items() if cid not in skip}

    async def _applied(self, lead_of: dict[str, str]) -> set[str]:
        """Which of these commands (command id -> lead) their lead applied already, from its applied messages."""
        if not lead_of or self.leads is None:
            return set()
        stored = await self.leads.get_many(lead_of.values())
        return {cid for cid, lead_id in lead_of.items() if lead_id in stored and stored[lead_id].recent_for(cid) is not None}

    async def record(self, tracked: dict[str, tuple[str, str]], out: list[Published]) -> None:
        if not tracked:
            return
        caused: dict[str, list[Published]] = defaultdict(list)
        for event in out:
            if event.causationid in tracked:
                caused[event.causationid].append(event)
        answers = []
        for cid, (_, lead_id) in tracked.items():
            events = caused.get(cid, [])
            refusal = next((e.data for e in events if e.type == "crm.command.rejected"), None)
            answers.append(Answer(cid, lead_id, rules.outcome_of([e.type for e in events]),
                                  _text(refusal.reason_code) if refusal else None, refusal.message if refusal else None))
        await self.jobs.record({cid: bulk_id for cid, (bulk_id, _) in tracked.items()}, answers, self.clock())
        self.wake()


def _text(value) -> str:
    return getattr(value, "value", value)
