"""Which actions a lead's stage entry owes: read from the events topic, turned into field commands and owed webhooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from contracts import Envelope, build_message
from contracts.actions import RunStageAction, StageActionFailed
from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from crmkit.followups import PublishThen
from crmkit.ids import uuid5
from crmkit.messaging import Inbound, Outbound
from services.leads import domain as d
from services.leads.actions.outbox import ActionRun, Delivery, Outbox
from services.leads.actions.views import card_of, parse_event
from services.leads.messages import ID_NAMESPACE
from services.leads.repository import LeadRepository, PipelineRepository

WEBHOOK_TYPE = "crm.lead.stage-entered"
_ENTRIES = frozenset({"crm.lead.created", "crm.lead.stage-changed"})
_REFUSED = "crm.command.rejected"
# What a batch is read for while some stage has actions: the entries, the cards they entered with, refusals.
_WITH_ACTIONS = _ENTRIES | {"crm.lead.updated", _REFUSED}
_WITHOUT_ACTIONS = frozenset({_REFUSED})


@dataclass(frozen=True)
class Entry:
    """A lead entering a stage, as an event of the topic says."""

    event: Envelope
    lead_id: str
    pipeline_id: str
    stage_id: str
    version: int


def endpoint_of(url: str) -> str:
    """What per-endpoint concurrency counts by: scheme, host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def webhook_body(entry: Entry, action: d.StageAction, delivery_id: str, card: dict[str, Any]) -> str:
    """The CloudEvent (structured JSON) a webhook posts; fixed once, so every retry posts the same bytes."""
    return json.dumps({
        "specversion": "1.0",
        "id": delivery_id,
        "type": WEBHOOK_TYPE,
        "source": "crm/leads",
        "subject": entry.lead_id,
        "time": entry.event.time.isoformat(),
        "datacontenttype": "application/json",
        "correlationid": entry.event.correlationid or entry.event.id,
        "causationid": entry.event.id,
        "data": {"pipeline_id": entry.pipeline_id, "stage_id": entry.stage_id, "action_id": action.action_id, "lead": card},
    }, ensure_ascii=False, separators=(",", ":"))


def action_id_for(entry: Entry, action: d.StageAction) -> str:
    """The id of one action's run for one entry: a redelivered entry event repeats it, so it acts once."""
    return uuid5(ID_NAMESPACE, f"{entry.event.id}\x1fstage-action\x1f{action.action_id}")


class StageActionRunner:
    """Consumes the leads events topic in a group of its own: a webhook outage never slows the write path."""

    def __init__(
        self, pipelines: PipelineRepository, leads: LeadRepository, outbox: Outbox, source: str,
        wake: Callable[[], None] = lambda: None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pipelines = pipelines
        self.leads = leads
        self.outbox = outbox
        self.source = source
        self.wake = wake
        self.clock = clock
        self._pipelines: dict[str, d.Pipeline] | None = None  # read by ``wanted_types`` for the batch after it

    async def wanted_types(self) -> frozenset[str]:
        """The event types the next batch is read for: only refusals while no stage has actions.

        Asked before the batch is parsed (crmkit's ``select``): every event of the write path comes
        through this group, and parsing each one cost the leads service ~80 µs of CPU per create
        (bench_leads, 20,000 creates, 319 against 237 µs with this consumer off) where no pipeline
        has a stage action. The pipelines read here are those the batch's entries are matched with."""
        self._pipelines = await self.pipelines.all()
        return _WITH_ACTIONS if _has_actions(self._pipelines) else _WITHOUT_ACTIONS

    async def may_idle(self) -> bool:
        """Whether the group may stop fetching the events topic (crmkit/idling.py ``IdleWhile``), read fresh.

        It may while no stage of any pipeline has an action and no field action sent is unanswered:
        then no event on the topic now needs this consumer. An entry event already there was written
        by the write path when the pipelines read here had no actions, so it owes none (as for a consumer
        that keeps up and read the pipelines at that moment); a refusal already there answers a run
        closed since, reported already. Fetching and passing over every event cost the leads service
        58-75 µs of CPU per create and Kafka 5-14 µs per lead (bench_leads, 20,000 creates, one node,
        three pairs with LEADS_STAGE_ACTIONS_IDLE_CHECK_S=0 against 2; lane 12 had 17 and, on three
        nodes, 30 µs; README, Benchmarks)."""
        return not _has_actions(await self.pipelines.all()) and not await self.outbox.any_open_run()

    # How this consumer reads a record (crmkit's ``parse``): entries as a narrow view (views.py).
    parse = staticmethod(parse_event)

    async def on_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Lead entries in: run-stage-action commands out, webhooks owed in the outbox; refused field actions reported."""
        pipelines, self._pipelines = self._pipelines, None
        messages = [item.message for item in batch if item.topic == LEADS_EVENTS]
        entries = [_entry(m) for m in messages if m.type in _ENTRIES]
        refusals = [m for m in messages if m.type == _REFUSED and m.data.command_type == RunStageAction.TYPE]
        out: list[Outbound] = []
        if entries:
            out += await self._run(entries, messages, pipelines if pipelines is not None else await self.pipelines.all())
        if not refusals:
            return out
        out += await self._report_refusals(refusals)
        # Closed once their failures are on the bus: a run left open keeps the group reading (may_idle).
        refused = [m.data.command_id for m in refusals]
        return PublishThen(out, then=lambda: self.outbox.close_runs(refused))

    async def _run(self, entries: list[Entry], messages: list[Envelope], pipelines: dict[str, d.Pipeline]) -> list[Outbound]:
        owed = [(entry, actions) for entry in entries if (actions := d.entered(pipelines.get(entry.pipeline_id), entry.stage_id))]
        if not owed:
            return []
        cards = _Cards(messages)
        out: list[Outbound] = []
        runs: list[ActionRun] = []
        deliveries: list[Delivery] = []
        for entry, actions in owed:
            for action in actions:
                run_id = action_id_for(entry, action)
                if action.kind == "set_fields":
                    runs.append(ActionRun(run_id, entry.lead_id, entry.pipeline_id, entry.stage_id, action.action_id))
                    out.append(Outbound(LEADS_COMMANDS, self._command(entry, action, run_id), key=entry.lead_id))
                    continue
                card = cards.get((entry.lead_id, entry.version)) or await self._card(entry.lead_id)
                if card is None:
                    continue  # the lead is gone from the store (never: leads are soft-deleted)
                deliveries.append(Delivery(
                    run_id, entry.lead_id, entry.pipeline_id, entry.stage_id, action.action_id,
                    endpoint_of(action.url or ""), action.url or "", action.secret or "", webhook_body(entry, action, run_id, card),
                ))
        # Stored before the offsets are committed: a crash here redelivers the entries, which add nothing twice.
        await self.outbox.record_runs(runs)
        await self.outbox.add(deliveries, self.clock())
        if deliveries:
            self.wake()
        return out

    def _command(self, entry: Entry, action: d.StageAction, run_id: str) -> Envelope:
        payload = RunStageAction(
            lead_id=entry.lead_id, pipeline_id=entry.pipeline_id, stage_id=entry.stage_id,
            action_id=action.action_id, entered_version=entry.version,
        )
        return build_message(
            payload, source=self.source, id=run_id, actorid=d.STAGE_ACTIONS_ACTOR.user_id,
            correlationid=entry.event.correlationid or entry.event.id, causationid=entry.event.id,
            traceparent=entry.event.traceparent, tracestate=entry.event.tracestate,
        )

    async def _card(self, lead_id: str) -> dict[str, Any] | None:
        # The entry's own card event came in another batch: the card as stored now stands in for it.
        lead = await self.leads.get(lead_id)
        return lead.model_dump(mode="json") if lead is not None else None

    async def _report_refusals(self, refusals: list[Envelope]) -> list[Outbound]:
        runs = await self.outbox.runs(m.data.command_id for m in refusals)
        out = []
        for message in refusals:
            run = runs.get(message.data.command_id)
            if run is None:
                continue
            failed = StageActionFailed(
                lead_id=run.lead_id, pipeline_id=run.pipeline_id, stage_id=run.stage_id, action_id=run.action_id,
                kind="set_fields", reason=f"the field update was refused ({message.data.reason_code}): {message.data.message}",
            )
            event = build_message(
                failed, source=self.source, id=uuid5(ID_NAMESPACE, f"{message.id}\x1fstage-action-failed"),
                correlationid=message.correlationid, causationid=message.id,
            )
            out.append(Outbound(LEADS_EVENTS, event, key=run.lead_id))
        return out


def _has_actions(pipelines: dict[str, d.Pipeline]) -> bool:
    return any(stage.on_enter for pipeline in pipelines.values() for stage in pipeline.stages)


def _entry(message: Envelope) -> Entry:
    data = message.data
    if message.type == "crm.lead.created":
        return Entry(message, data.lead_id, data.pipeline_id, data.stage_id, data.version)
    return Entry(message, data.lead_id, data.pipeline_id, data.to_stage_id, data.version)


class _Cards:
    """The cards the batch's events carry, by (lead id, version): the card as the lead entered its stage.

    Made only for a lead a webhook is owed for: dumping every card event's card cost this consumer
    about a fifth of its CPU, while most pipelines have no webhook at all.
    """

    def __init__(self, messages: list[Envelope]) -> None:
        self._events = {
            (m.data.lead_id, m.data.version): m for m in messages if m.type in ("crm.lead.created", "crm.lead.updated")
        }

    def get(self, key: tuple[str, int]) -> dict[str, Any] | None:
        event = self._events.get(key)
        return card_of(event) if event is not None else None
