"""Translate import commands and lead events into job changes, row outcomes and the lead projection."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container
from datetime import UTC, datetime

from contracts import Envelope, build_message
from contracts.imports import ImportRowRejected
from contracts.registry import TOPIC_TYPES
from contracts.topics import DIRECTORY_EVENTS, IMPORTS_COMMANDS, IMPORTS_EVENTS, LEADS_EVENTS
from crmkit.access import Refusal, rejection, screen, text_error
from crmkit.messaging import Inbound, Outbound
from crmkit.principals import PrincipalRepository
from services.importer import domain as d
from services.importer.external_ids import ExternalIdProjection, Projected
from services.importer.repository import ImportRepository
from services.importer.row_records import Outcome
from services.importer.sources import display_name
from services.importer.announcements import event_id
from services.importer.views import changes_row_fields, row_fields
from services.importer.worker import JobRunner

_OUTCOME_OF = {"crm.lead.created": "created", "crm.lead.updated": "updated", "crm.command.rejected": "rejected"}
_REJECTION_NAMESPACE = uuid.UUID("3d0c1b6a-5e7f-4a28-b1c9-8e2f0a4d6c57")
# Lead and directory events the importer does nothing with: passed over unparsed (crmkit's ``select``).
# A deleted lead stays known by its external id (a re-import's update of it is the leads service's to refuse).
_LEAD_EVENTS_USED = {*_OUTCOME_OF, "crm.lead.duplicates-found"}
PASSED_OVER = frozenset(
    {t for t in TOPIC_TYPES[LEADS_EVENTS] if t not in _LEAD_EVENTS_USED}
    | {t for t in TOPIC_TYPES[DIRECTORY_EVENTS] if not PrincipalRepository.handles(t)}
) - set(TOPIC_TYPES[IMPORTS_COMMANDS])


class _AllBut(Container[str]):
    """Every message type except ``skipped``: an unknown type is still parsed (and dead-lettered)."""

    def __init__(self, skipped: frozenset[str]) -> None:
        self.skipped = skipped

    def __contains__(self, kind: object) -> bool:
        return kind not in self.skipped


_WANTED = _AllBut(PASSED_OVER)


def job_from_start(message: Envelope) -> d.ImportJob:
    data = message.data
    return d.ImportJob(
        import_id=data.import_id, file_uri=data.file_uri, actor_id=message.actorid,
        format=data.format.value if data.format else None, pipeline_id=data.pipeline_id, stage_id=data.stage_id,
        mapping=data.mapping, dry_run=data.dry_run, encoding=data.encoding, delimiter=data.delimiter,
        sheet=data.sheet, language=data.language, created_at=message.time, file_name=display_name(data.file_uri),
        traceparent=message.traceparent,
    )


class ImporterHandlers:
    """One consumed batch in: jobs recorded, outcomes counted, refusals and row rejections out."""

    def __init__(
        self,
        imports: ImportRepository,
        index: ExternalIdProjection,
        principals: PrincipalRepository,
        runner: JobRunner,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.imports = imports
        self.index = index
        self.principals = principals
        self.runner = runner
        self.source = source
        self.clock = clock

    async def wanted_types(self) -> Container[str]:
        """The types worth parsing: a stage change or a contact update on the topics it reads changes nothing here."""
        return _WANTED

    async def on_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Import commands start, cancel or revert jobs; lead events settle rows and feed the projection."""
        messages = [item.message for item in batch]
        await self.principals.apply([m for m in messages if PrincipalRepository.handles(m.type)])
        out: list[Outbound] = []
        for item in batch:
            if item.topic == IMPORTS_COMMANDS:
                out.extend(await self.on_command(item.message))
        lead_events = [item.message for item in batch if item.topic == LEADS_EVENTS]
        if lead_events:
            out.extend(await self.on_lead_events(lead_events))
        return out

    # --- commands -----------------------------------------------------------------------------

    async def on_command(self, message: Envelope) -> list[Outbound]:
        screened = screen(message)  # no actor, or fields out of bounds: refused before anything is read
        if screened is not None:
            return [self._rejected(message, screened.code, screened.message, screened.errors)]
        principal = await self.principals.get(message.actorid) if message.actorid else None
        licensed = principal is not None and principal.licensed
        # The job is read only for a licensed sender: the refusal of anyone else says nothing about it.
        job = await self.imports.get(message.data.import_id) if licensed else None
        refusal = d.command_refusal(message.type, message.actorid, licensed, licensed and principal.is_admin, job)
        if refusal is not None:
            return [self._rejected(message, *refusal)]
        import_id = message.data.import_id
        if message.type == "crm.import.start":
            await self.imports.create(job_from_start(message))
        elif message.type == "crm.import.cancel":
            await self.imports.request(import_id, cancel=True)
        elif message.type == "crm.import.revert":
            await self.imports.request(import_id, revert=True, revert_actor_id=message.actorid)
        self.runner.wake()
        return []

    def _rejected(self, message: Envelope, code: str, text: str, errors: tuple[tuple[str, str], ...] = ()) -> Outbound:
        refusal = Refusal(code, text, errors)
        envelope = rejection(message, refusal, source=self.source, namespace=_REJECTION_NAMESPACE)
        import_id = message.data.import_id
        # Keyed by the import (its events stay in order), unless its id is itself what was refused.
        key = import_id if text_error("id", import_id) is None else message.id
        return Outbound(IMPORTS_EVENTS, envelope.model_copy(update={"subject": key}), key=key)

    # --- lead events --------------------------------------------------------------------------

    async def on_lead_events(self, messages: list[Envelope]) -> list[Outbound]:
        cards: dict[str, Projected] = {}
        created_by: dict[str, str] = {}
        outcomes: list[Outcome] = []
        duplicates: list[tuple[str, int]] = []
        rejections: list[tuple[Envelope, str, int]] = []
        for message in messages:
            if message.type in ("crm.lead.created", "crm.lead.updated"):
                card = message.data
                if card.external_id and (message.type == "crm.lead.created" or changes_row_fields(card)):
                    cards[card.lead_id] = Projected(card.external_id, row_fields(card), card.version)
                    if message.type == "crm.lead.created" and card.import_id:
                        created_by[card.lead_id] = card.import_id
            ref = d.row_of_correlation(message.correlationid)
            if ref is None or message.causationid != d.command_id(*ref):
                continue
            import_id, row = ref
            if message.type == "crm.lead.duplicates-found":
                duplicates.append(ref)
            elif message.type in _OUTCOME_OF:
                outcomes.append(Outcome(import_id, row, _OUTCOME_OF[message.type], getattr(message.data, "lead_id", None)))
                if message.type == "crm.command.rejected":
                    rejections.append((message, import_id, row))
        await self.index.apply(cards, created_by, self.clock())
        out = await self._row_rejections(rejections)
        await self.imports.rows.record_outcomes(outcomes, duplicates, self.clock())
        if outcomes:
            self.runner.outcomes_arrived({o.import_id for o in outcomes})
        return out

    async def _row_rejections(self, rejections: list[tuple[Envelope, str, int]]) -> list[Outbound]:
        """Rows the leads service refused: into the error report and out as row-rejected events."""
        out: list[Outbound] = []
        jobs: dict[str, d.ImportJob | None] = {}
        for message, import_id, row in rejections:
            if import_id not in jobs:
                jobs[import_id] = await self.imports.get(import_id)
            job = jobs[import_id]
            if job is None:
                continue
            errors = d.rejection_errors(message.data.message, [(e.field, e.message) for e in (message.data.errors or [])], job.columns)
            await self.imports.record_errors(import_id, [(row, column, reason, []) for column, reason in errors])
            for index, (column, reason) in enumerate(errors):
                payload = ImportRowRejected(import_id=import_id, row=row, column=column, reason=reason)
                envelope = build_message(payload, source=self.source, subject=import_id, actorid=job.actor_id,
                                         id=event_id(import_id, "row-refused", row, index), causationid=message.id)
                out.append(Outbound(IMPORTS_EVENTS, envelope, key=import_id))
        return out

