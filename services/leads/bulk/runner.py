"""The mass-action runner: sends each running job's per-lead commands in waves and reports the job once all answered."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from contracts import build_message, envelope_class, payload_class
from contracts.bulk import BulkCounts, BulkLeadRefusal, BulkUpdateCompleted
from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from crmkit.ids import uuid5
from crmkit.messaging import Outbound
from crmkit.passes import run_passes
from services.leads.bulk.handlers import BULK_ATTRIBUTE, command_id
from services.leads.bulk.repository import Answer, BulkJob, BulkRepository
from services.leads.domain import bulk as rules
from services.leads.messages import ID_NAMESPACE
from services.leads.settings import LeadsSettings

log = logging.getLogger("services.leads.bulk")

Publish = Callable[[Sequence[Outbound]], Awaitable[None]]
REFUSALS_REPORTED = 1_000  # on the report; GET /bulk/{id}/refusals pages through every one
LEASE = timedelta(seconds=10)


class BulkRunner:
    """One pass per `bulk_poll_s` (or at once when woken): for each running job, the next wave, or its report.

    One instance runs a job at a time (a lease on the job, taken over when its holder stops renewing
    it). Every step may still run twice (a crash between publishing and recording it, or a lease
    taken over mid-pass): a lead's command has a stable id, so the lead applies it once, and the
    report's id is stable too, so consumers dedupe it.
    """

    def __init__(self, settings: LeadsSettings, jobs: BulkRepository, publish: Publish, source: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.jobs = jobs
        self.publish = publish
        self.source = source
        self.clock = clock
        self._woken = asyncio.Event()
        self.instance = uuid.uuid4().hex  # the holder's name in a job's lease

    def wake(self) -> None:
        self._woken.set()

    async def run_forever(self) -> None:
        # An outage: the next pass tries again, nothing is lost (all of it is stored).
        await run_passes(self.run_once, self._woken, lambda: self.settings.bulk_poll_s,
                         lambda exc: log.warning("mass-action pass failed; retrying", exc_info=exc))

    async def run_once(self) -> None:
        for job in await self.jobs.running():
            if await self.jobs.claim(job.bulk_id, self.instance, self.clock(), LEASE):
                await self._advance(job)

    async def _advance(self, job: BulkJob) -> None:
        if job.cancel_requested and job.sent < job.total:
            # The leads not sent yet are answered `cancelled` here; those in flight are left out on arrival.
            unsent = await self.jobs.leads_between(job.bulk_id, job.sent, job.total)
            cancelled = [Answer(command_id(job.bulk_id, lead_id), lead_id, rules.CANCELLED) for lead_id in unsent]
            await self.jobs.record({a.command_id: job.bulk_id for a in cancelled}, cancelled, self.clock())
            await self.jobs.mark_sent(job.bulk_id, job.total)
            job = replace(job, sent=job.total)
        answered = await self.jobs.answered(job.bulk_id)
        in_flight = job.sent - answered
        if not job.cancel_requested and job.sent < job.total and in_flight < self.settings.bulk_chunk:
            upto = min(job.total, job.sent + self.settings.bulk_chunk - in_flight)
            wave = await self.jobs.leads_between(job.bulk_id, job.sent, upto)
            await self.publish([self._command(job, lead_id) for lead_id in wave])
            await self.jobs.mark_sent(job.bulk_id, upto)  # after the wave is acknowledged: a crash sends it again
            return
        state = rules.job_state(job.cancel_requested, job.total - answered)
        if state != "running":
            await self.publish([await self._report(job, state, await self.jobs.counts(job.bulk_id))])
            await self.jobs.finish(job.bulk_id, state, self.clock())

    def _command(self, job: BulkJob, lead_id: str) -> Outbound:
        type_name, data = rules.lead_command(job.action, job.params, lead_id)
        message = build_message(
            payload_class(type_name).model_validate(data), source=self.source, subject=lead_id, id=command_id(job.bulk_id, lead_id),
            actorid=job.requested_by, correlationid=job.correlation_id, causationid=job.command_id, time=self.clock(),
        )
        # The job named in an extension attribute, so the batch that applies it records the answer.
        tagged = envelope_class(type_name).model_validate({**message.model_dump(mode="json", exclude_none=True), BULK_ATTRIBUTE: job.bulk_id})
        return Outbound(LEADS_COMMANDS, tagged, key=lead_id)

    async def _report(self, job: BulkJob, state: str, counts: dict[str, int]) -> Outbound:
        refused, _ = await self.jobs.refusals(job.bulk_id, REFUSALS_REPORTED)
        payload = BulkUpdateCompleted(
            bulk_id=job.bulk_id, action=job.action, state=state, requested_by=job.requested_by,
            counts=BulkCounts(total=job.total, **{s: counts[s] for s in rules.FINAL_STATES}),
            refusals=[BulkLeadRefusal(lead_id=i.lead_id, reason_code=i.reason_code or "validation", message=i.message or "")
                      for i in refused],
        )
        message = build_message(
            payload, source=self.source, time=self.clock(), id=uuid5(ID_NAMESPACE, f"{job.bulk_id}\x1fcompleted"),
            correlationid=job.correlation_id, causationid=job.command_id, actorid=job.requested_by,
        )
        return Outbound(LEADS_EVENTS, message, key=job.bulk_id)
