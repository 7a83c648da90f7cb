"""A mass action's wave redelivered after a crash and a cancel, on the real database: a lead changed before the crash counts changed."""

from __future__ import annotations

from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS
from crmkit.followups import PublishThen
from services.leads.app import create_app
from services.leads.bulk.repository import BulkRepository
from services.leads.bulk.runner import BulkRunner
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from tests.component.support import built, inbound
from tests.integration.leads_helpers import directory_event, payload
from tests.support import command


async def test_a_lead_changed_before_a_crash_counts_changed_when_its_job_is_cancelled(settings_for):
    # Board counters off: counted from the first start-up, which this test does not run (a batch would wait for it).
    async with built(create_app(settings_for(LeadsSettings, "leads", board_counters=False))) as service:
        handlers = service.handlers
        jobs = BulkRepository(service.db)
        await jobs.ensure_indexes()
        await handlers.announce_default_pipeline()
        grant = directory_event("crm.user.licence-granted", user_id="bob", licence="crm")
        creates = [command(payload("crm.lead.create", lead_id=f"B{i}", title=f"Lead {i}"), actor="bob") for i in range(3)]
        await handlers.on_batch(inbound([(DIRECTORY_EVENTS, grant), *((LEADS_COMMANDS, c) for c in creates)]))
        start = command(payload("crm.leads.bulk-update", bulk_id="J", action="move", stage_id="processing",
                                lead_ids=["B0", "B1", "B2"]), actor="bob")
        await handlers.on_batch(inbound([(LEADS_COMMANDS, start)]))

        # The runner sends the wave: one command per lead, as it puts them on the commands topic.
        sent = []

        async def publish(outbound):
            sent.extend(outbound)

        runner = BulkRunner(service.settings, jobs, publish, service.source)
        await runner.run_once()
        wave = [o.message for o in sent]
        assert [m.data.lead_id for m in wave] == ["B0", "B1", "B2"]

        # B0 and B1 are applied and their events published; the process dies before their answers are
        # recorded (the step PublishThen takes after the publish) and before the offsets are committed.
        first = await handlers.on_batch(inbound([(LEADS_COMMANDS, m) for m in wave[:2]]))
        assert isinstance(first, PublishThen)
        first_events = sorted(o.message.id for o in first)
        assert (await jobs.counts("J"))["applied"] == 0

        # The job is cancelled meanwhile (by another instance); then the wave comes again, B2 with it.
        cancel = command(payload("crm.leads.bulk-cancel", bulk_id="J"), actor="bob")
        await handlers.on_batch(inbound([(LEADS_COMMANDS, cancel)]))
        again = await handlers.on_batch(inbound([(LEADS_COMMANDS, m) for m in wave]))
        assert isinstance(again, PublishThen)
        await again.then()

        # B0 and B1 changed before the cancel: counted changed, their same events published again.
        # B2 was not: left alone, counted cancelled.
        assert await jobs.counts("J") == {"applied": 2, "unchanged": 0, "refused": 0, "cancelled": 1}
        assert sorted(o.message.id for o in again) == first_events
        leads = LeadRepository(service.db)
        stages = {i: (await leads.get(i)).stage_id for i in ("B0", "B1", "B2")}
        assert stages == {"B0": "processing", "B1": "processing", "B2": "new"}

        # The runner reports the job cancelled with those counts.
        await runner.run_once()
        done = [o.message.data for o in sent if o.message.type == "crm.leads.bulk-completed"]
        assert [(d.state, d.counts.applied, d.counts.cancelled) for d in done] == [("cancelled", 2, 1)]
