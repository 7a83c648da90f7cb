"""Translate contract messages into domain calls and the outcomes back into contract messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from contracts import Envelope
from contracts.topics import QUALIFICATION_EVENTS
from crmkit import access
from crmkit.conflicts import retry_on_conflict
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import PrincipalRepository
from services.qualification import domain as d
from services.qualification.batch import CLOSING_COMMANDS, ClosingBatch, ClosingStores, Placed
from services.qualification.messages import COMMANDS, actor_of, command_rejected, lead_change, refused
from services.qualification.repository import (
    ClosingRepository,
    CompanyRepository,
    DealRepository,
    LeadProjection,
    PipelineProjection,
    ReasonRepository,
)
from services.qualification.settings import QualificationSettings


class QualificationHandlers:
    """The qualification service's message handling: one batch in, the events to publish out."""

    def __init__(
        self,
        settings: QualificationSettings,
        leads: LeadProjection,
        pipelines: PipelineProjection,
        reasons: ReasonRepository,
        closings: ClosingRepository,
        companies: CompanyRepository,
        deals: DealRepository,
        principals: PrincipalRepository,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.leads = leads
        self.pipelines = pipelines
        self.reasons = reasons
        self.closings = closings
        self.companies = companies
        self.deals = deals
        self.principals = principals
        self.stores = ClosingStores(leads, closings, companies, deals, reasons, principals)
        self.source = source
        self.clock = clock
        # Called after each stored step of a qualification with the new state; tests crash here.
        self.after_step: Callable[[str], None] = lambda state: None

    async def on_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Lead and pipeline facts, licences and qualification commands in; public qualification events out."""
        messages = [item.message for item in batch]
        await self.principals.apply([m for m in messages if PrincipalRepository.handles(m.type)])
        await self._project(messages)
        out, wire = await self._commands(messages)
        return [Outbound(QUALIFICATION_EVENTS, m, key=m.subject or m.id, value=wire.get(m.id)) for m in out]

    # --- projections --------------------------------------------------------------------------

    async def _project(self, messages: list[Envelope]) -> None:
        changes = [c for m in messages if (c := lead_change(m)) is not None]
        await self.leads.apply(changes)
        pipelines = []
        for m in messages:
            if m.type in ("crm.pipeline.created", "crm.pipeline.updated"):
                pipelines.append((m.data.pipeline_id, m.data.version, {"name": m.data.name, "deleted": False}))
            elif m.type == "crm.pipeline.deleted":
                pipelines.append((m.data.pipeline_id, m.data.version, {"deleted": True}))
        await self.pipelines.apply(pipelines)
        await self.reasons.seed(p[0] for p in pipelines if not p[2]["deleted"])
        companies = [
            (m.data.company_id, m.data.version, {"name": m.data.name, "inn": m.data.inn})
            for m in messages
            if m.type == "crm.company.upserted"
        ]
        await self.companies.upsert_known(companies)

    # --- commands -----------------------------------------------------------------------------

    async def _commands(self, messages: list[Envelope]) -> tuple[list[Envelope], dict[str, bytes]]:
        """Each command's answer in the order they came, and the record values made for them already; closing
        commands between two reason edits go as one batch."""
        answers: dict[int, list[Envelope]] = {}
        closing = ClosingBatch(self.settings, self.stores, self.source, self.clock(), self.after_step)
        run: list[Placed] = []
        for position, message in enumerate(messages):
            if message.type not in COMMANDS:
                continue
            # A command with no actor, or with a field out of bounds, is answered before anything is read.
            if (refusal := access.screen(message)) is not None:
                answers[position] = refused(message, refusal, self.source)
            elif message.type in CLOSING_COMMANDS:
                run.append((position, message))
            else:  # a reason edit: the disqualifications before it are decided against the list before it
                answers |= await closing.run(run)
                run = []
                answers[position] = await self._edit_reasons(message)
        answers |= await closing.run(run)
        return [e for position in sorted(answers) for e in answers[position]], closing.wire

    async def _actor(self, message: Envelope) -> d.Actor:
        return actor_of(await self.principals.get(message.actorid))

    async def _licence(self, message: Envelope) -> access.Refusal | None:
        principal = await self.principals.get(message.actorid)
        return access.licence_refusal(message, {principal.user_id: principal})

    async def _edit_reasons(self, message: Envelope) -> list[Envelope]:
        data = message.data
        pipeline_id = data.pipeline_id
        if (refusal := await self._licence(message)) is not None:  # before the pipeline is read
            return refused(message, refusal, self.source)
        exists = await self.pipelines.exists(pipeline_id)
        actor = await self._actor(message)
        for _attempt in retry_on_conflict(f"reasons of pipeline {pipeline_id} under command {message.id}"):
            current = await self.reasons.get(pipeline_id) if exists else None
            if current is not None and message.id in current.recent:
                return []  # a redelivery of a change already made
            reasons = current.reasons if current else []
            if message.type == "crm.disqualification-reason.add":
                reason = d.Reason(
                    reason_id=data.reason_id or d.reason_id_for(message.id), text=data.text.strip(), text_ru=data.text_ru
                )
                changed, problems = d.add_reason(actor, pipeline_id, exists, reasons, reason)
            else:
                changed, problems = d.remove_reason(actor, pipeline_id, exists, reasons, data.reason_id)
            if problems:
                return [command_rejected(message, problems, self.source)]
            if await self.reasons.save(current, changed, message.id, self.settings.recent_messages_kept):
                return []
        raise AssertionError("unreachable: retry_on_conflict raises when its attempts run out")
