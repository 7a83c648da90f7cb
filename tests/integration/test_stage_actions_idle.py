"""The stage-actions group while no stage has an action, on real Kafka and FerretDB: it fetches nothing, its
offsets follow the log end, and it wakes for an action added, a refusal owed, with one or two instances."""

from __future__ import annotations

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS
from crmkit.lag import LagReader
from services.leads.actions.outbox import ActionRun, Outbox
from services.leads.app import create_app
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import payload
from tests.integration.test_leads import leads_stack, send_and_wait
from tests.integration.test_stage_actions import FAST_RETRIES, _hook, _lead_in, _stages
from tests.integration.webhook_server import webhook_receiver
from tests.support import command, wait_until

IDLE_FAST = dict(FAST_RETRIES, stage_actions_idle_check_s=0.2)


def _read(service) -> float:
    """Records of the events topic the service's consumers read (only the actions group reads that topic)."""
    return service.metrics.consumed.labels(topic=LEADS_EVENTS)._value.get()


def _idle(service) -> bool:
    group = service.settings.group_id + "-actions"
    return service.metrics.idle.labels(group=group)._value.get() == 1


async def _created(producer, events, lead_id):
    await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id=lead_id, title=f"Lead {lead_id}", pipeline_id="sa"), actor="bob"))


async def _pipeline(producer, events, stages, kind="crm.pipeline.create"):
    await send_and_wait(producer, events, command(payload(kind, pipeline_id="sa", name="Actions", stages=stages), actor="alice"))


async def _at_the_end(service) -> bool:
    """Whether the actions group has committed the log end of every partition of the events topic."""
    reader = LagReader(service.settings.kafka_client_options())
    await reader.start()
    try:
        rows = await reader.lag(service.settings.group_id + "-actions", [service.settings.topic(LEADS_EVENTS)])
    finally:
        await reader.stop()
    return bool(rows) and all(row.committed == row.end for row in rows)


async def _idle_at_the_end(*services) -> bool:
    return all(_idle(s) for s in services) and all([await _at_the_end(s) for s in services[:1]])


async def test_with_no_action_anywhere_the_group_reads_nothing_and_commits_the_end(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation, **IDLE_FAST) as (service, producer, events):
        await _pipeline(producer, events, _stages([]))
        await _created(producer, events, "I0")
        await wait_until(lambda: _idle_at_the_end(service), what="the actions group idle, its offsets at the end")
        read = _read(service)
        for i in range(1, 6):
            await _lead_in(producer, events, f"I{i}", "hot")
        # Every lead event since is committed past without being fetched: no lag, nothing read.
        await wait_until(lambda: _at_the_end(service), what="the new events committed past")
        assert _idle(service)
        assert _read(service) == read


async def test_an_action_added_while_idle_runs_for_the_next_entries_at_once_on_this_instance(
    settings_for, run_service, endpoints, isolation,
):
    # An hour between passes: only the pipeline change stored by this instance can wake the group.
    async with webhook_receiver() as hook, leads_stack(
        settings_for, run_service, endpoints, isolation, **dict(FAST_RETRIES, stage_actions_idle_check_s=3600),
    ) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([])), actor="alice"))
        await wait_until(lambda: _idle(service), what="the actions group idle")
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.update", pipeline_id="sa", stages=_stages([_hook(hook.url)])), actor="alice"))
        await _lead_in(producer, events, "W1", "hot")
        got = await wait_until(lambda: "W1" in {d[0].event["subject"] for d in hook.deliveries().values()} and hook.deliveries(),
                               what="the entry after the update delivered")
        assert not _idle(service)
        assert all(d[0].event["data"]["stage_id"] == "hot" for d in got.values())


async def test_a_field_action_refused_after_the_actions_were_removed_is_still_reported(
    settings_for, run_service, endpoints, isolation,
):
    fields = {"action_id": "tag", "kind": "set_fields", "set_fields": {"source": "hot-stage"}}
    async with leads_stack(settings_for, run_service, endpoints, isolation, **IDLE_FAST) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([fields])), actor="alice"))
        await _created(producer, events, "R1")
        # A run the group sent while the stage had the action, still on its way to the write path when the
        # action is removed: recorded before it is sent, as the group does, and sent after the removal.
        outbox = Outbox(service.db)
        late = command(payload("crm.lead.run-stage-action", lead_id="R1", pipeline_id="sa", stage_id="hot", action_id="tag",
                               entered_version=2), actor="crm-stage-actions")
        await outbox.record_runs([ActionRun(late.id, "R1", "sa", "hot", "tag")])
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.update", pipeline_id="sa", stages=_stages([])), actor="alice"))
        await producer.send(LEADS_COMMANDS, late)
        failed = await wait_until(lambda: events.got.of_type("crm.stage-action.failed"), what="the refusal reported")
        assert failed[0].data.action_id == "tag" and failed[0].data.kind == "set_fields" and "not_found" in failed[0].data.reason
        # Answered: nothing is owed any more, and the group goes idle.
        await wait_until(lambda: _idle_at_the_end(service), what="the actions group idle again")
        assert not await outbox.any_open_run()


async def test_a_field_action_applied_closes_its_run(settings_for, run_service, endpoints, isolation):
    fields = {"action_id": "tag", "kind": "set_fields", "set_fields": {"source": "hot-stage"}}
    async with leads_stack(settings_for, run_service, endpoints, isolation, **IDLE_FAST) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([fields])), actor="alice"))
        await _lead_in(producer, events, "F1", "hot")
        await wait_until(lambda: [m for m in events.got.of_type("crm.lead.updated") if m.actorid == "crm-stage-actions"],
                         what="the field action applied")
        outbox = Outbox(service.db)
        await wait_until(lambda: _no_open_run(outbox), what="the run closed by the write path")
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.update", pipeline_id="sa", stages=_stages([])), actor="alice"))
        await wait_until(lambda: _idle_at_the_end(service), what="the actions group idle once the action is removed")


async def _no_open_run(outbox: Outbox) -> bool:
    return not await outbox.any_open_run()


async def test_two_instances_idle_and_wake_through_rebalances(settings_for, run_service, endpoints, isolation):
    async with webhook_receiver() as hook, leads_stack(settings_for, run_service, endpoints, isolation, **IDLE_FAST) as (
        first, producer, events,
    ):
        second = await run_service(create_app(settings_for(LeadsSettings, "leads", **IDLE_FAST)))
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([])), actor="alice"))
        for i in range(6):
            await _lead_in(producer, events, f"B{i}", "hot")
        await wait_until(lambda: _idle_at_the_end(first, second), what="both instances idle, the offsets at the end")
        read = _read(first) + _read(second)
        for i in range(6, 12):
            await _lead_in(producer, events, f"B{i}", "hot")
        await wait_until(lambda: _at_the_end(first), what="the new events committed past")
        assert _read(first) + _read(second) == read

        # An action added on one instance: the other wakes at its next pass; entries on every partition run it.
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.update", pipeline_id="sa", stages=_stages([_hook(hook.url)])), actor="alice"))
        await wait_until(lambda: not _idle(first) and not _idle(second), what="both instances awake")
        wanted = {f"H{i}" for i in range(12)}
        for lead_id in sorted(wanted):
            await _lead_in(producer, events, lead_id, "hot")
        await wait_until(lambda: wanted <= {d[0].event["subject"] for d in hook.deliveries().values()}, what="every entry delivered")

        # One instance leaves (a rebalance): the other takes every partition, and with no action left idles on all.
        await second.stop()
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.update", pipeline_id="sa", stages=_stages([])), actor="alice"))
        await wait_until(lambda: _idle_at_the_end(first), what="the remaining instance idle")
        read = _read(first)
        for i in range(12, 18):
            await _lead_in(producer, events, f"B{i}", "hot")
        await wait_until(lambda: _at_the_end(first), what="the new events committed past on every partition")
        assert _read(first) == read
