"""DLQ per consumer group on the real stack: who parked a record, and a replay that only that group applies."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid

from typer.testing import CliRunner

from contracts import parse_message
from contracts.examples import EXAMPLES
from contracts.topics import DLQ_GROUP, DLQ_REASON_CODE, DLQ_SERVICE, LEADS_EVENTS, dlq_topic
from crmctl.cli import app as crm
from crmctl.dlq import Filter, replay_records, summary
from services.activity.app import create_app
from services.activity.handlers import ActivityHandlers
from services.activity.projection import LeadProjection
from services.activity.settings import ActivitySettings
from tests.integration.test_operations_metrics import scrape, value
from tests.support import Collector, Producer, headers_of, kafka_options, wait_until


def lead_created(lead_id: str):
    record = copy.deepcopy(EXAMPLES["crm.lead.created"])
    record.update(id=str(uuid.uuid4()), subject=lead_id)
    record["data"]["lead_id"] = lead_id
    return parse_message(LEADS_EVENTS, json.dumps(record))


async def test_a_record_parked_by_two_groups_is_replayed_to_one_and_only_that_one_applies_it(
    settings_for, run_service, endpoints, isolation, monkeypatch
):
    # Two consumer groups read crm.leads.events.v1 (two activity deployments, each with its own database).
    first = await run_service(create_app(settings_for(ActivitySettings, "act_a", due_pass_interval_s=0)))
    second = await run_service(create_app(settings_for(ActivitySettings, "act_b", due_pass_interval_s=0)))
    group_a, group_b = isolation.group("act_a"), isolation.group("act_b")
    original = ActivityHandlers.on_lead_facts

    async def buggy(self, facts):
        if any(message.subject == "BAD" for _, message in facts):
            raise RuntimeError("a bug that this lead's card trips")
        return await original(self, facts)

    monkeypatch.setattr(ActivityHandlers, "on_lead_facts", buggy)
    dlq_name = isolation.prefix + dlq_topic(LEADS_EVENTS)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(endpoints.kafka, isolation.prefix, dlq_topic(LEADS_EVENTS)) as dlq:
        await producer.send(LEADS_EVENTS, lead_created("BAD"))
        await producer.send(LEADS_EVENTS, lead_created("GOOD"))
        await wait_until(lambda: len(dlq.got.records) >= 2, what="the bad record parked by both groups")
        for service in (first, second):
            await wait_until(lambda: LeadProjection(service.db).get("GOOD"), what="the good record applied by each group")
        parked = {headers_of(r)[DLQ_GROUP]: headers_of(r) for r in dlq.got.records}
        assert set(parked) == {group_a, group_b} and len(dlq.got.records) == 2
        assert {h[DLQ_SERVICE] for h in parked.values()} == {"activity"}
        assert {h[DLQ_REASON_CODE] for h in parked.values()} == {"handler_error"}

        rows = await summary(kafka_options(endpoints.kafka), [dlq_name])
        assert rows[0]["records"] == 2
        assert sorted((b["group"], b["reason_code"], b["records"]) for b in rows[0]["by"]) == [
            (group_a, "handler_error", 1), (group_b, "handler_error", 1)]

        shown = await asyncio.to_thread(CliRunner().invoke, crm, ["dlq", "show", dlq_name, "--group", group_b, "--bootstrap", endpoints.kafka])
        assert shown.exit_code == 0, shown.output
        sample = json.loads(shown.stdout)
        assert [(r["group"], r["service"], r["message"]["type"], r["message"]["subject"]) for r in sample] == [
            (group_b, "activity", "crm.lead.created", "BAD")]
        assert "a bug that this lead's card trips" in sample[0]["reason"]
        if endpoints.origin == "local stack":  # `crm status` looks at the local stack only
            status = await asyncio.to_thread(CliRunner().invoke, crm, ["status", "--json"])
            assert status.exit_code == 0, status.output
            activity_row = next(r for r in json.loads(status.stdout)["components"] if r["component"] == "activity")
            assert activity_row["dlq"] >= 2  # the status counts the DLQ records each service parked

        monkeypatch.setattr(ActivityHandlers, "on_lead_facts", original)  # the fix is deployed
        dry = await replay_records(kafka_options(endpoints.kafka), dlq_name, Filter(group=group_a), dry_run=True)
        assert dry["chosen"] == 1 and dry["to"] == [{"topic": isolation.prefix + LEADS_EVENTS, "group": group_a, "records": 1}]
        report = await replay_records(kafka_options(endpoints.kafka), dlq_name, Filter(group=group_a))
        assert report["chosen"] == 1 and report["records"] == 2

        await wait_until(lambda: LeadProjection(first.db).get("BAD"), what="group A applying the replayed record")

        async def skipped_by_b():
            return value(await scrape(second), "crm_dlq_replays_total", group=group_b, outcome="skipped") == 1

        await wait_until(skipped_by_b, what="group B meeting the replay and skipping it")
        assert await LeadProjection(second.db).get("BAD") is None
        assert value(await scrape(first), "crm_dlq_replays_total", group=group_a, outcome="applied") == 1
        assert len(dlq.got.records) == 2  # applied, so parked nowhere again
