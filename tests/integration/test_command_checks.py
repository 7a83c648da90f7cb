"""Every command checked the same way on the real stack (issue 15, point 5): actor, licence first, bounded fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import build_message
from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    DIRECTORY_EVENTS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
    dlq_topic,
)
from services.activity.repository import TaskRepository
from services.leads.repository import LeadRepository
from services.qualification.app import create_app as create_qualification
from services.qualification.repository import ClosingRepository, LeadProjection
from services.qualification.settings import QualificationSettings
from tests.integration.leads_helpers import directory_event, grant, payload
from tests.integration.test_activity import activity_ready, lead_card, lead_known, start_activity, task_cmd
from tests.integration.test_leads import leads_stack, rejection_for, send_and_wait
from tests.support import Collector, Producer, command, wait_until

HUGE_TITLE = "x" * 100_000


def anonymous(data, *, subject: str | None = None):
    """A command as a careless (or hostile) producer sends it: no `actorid` at all."""
    message = build_message(data, source="test/anonymous", subject=subject, id=str(uuid.uuid4()))
    assert "actorid" not in message.to_json_bytes().decode()
    return message


async def refusal_of(events, cmd, what: str = "the refusal"):
    found = await wait_until(lambda: rejection_for(events, cmd), what=f"{what} of {cmd.type}")
    return found[0].data


def fields_of(refused) -> set[str]:
    return {e.field for e in refused.errors or []}


def no_dead_letters(records) -> bool:
    return not [r for r in records if r.topic.endswith(".dlq")]


# --- leads --------------------------------------------------------------------------------------


async def test_leads_commands_without_actor_are_not_licensed_not_dead_lettered(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events), Collector(
        endpoints.kafka, isolation.prefix, dlq_topic(LEADS_COMMANDS)
    ) as dlq:
        create = anonymous(payload("crm.lead.create", lead_id="A1", title="no actor"))
        pipeline = anonymous(payload("crm.pipeline.create", pipeline_id="p-anon", name="Anonymous"))
        for cmd in (create, pipeline):
            await producer.send(LEADS_COMMANDS, cmd)
        for cmd in (create, pipeline):
            refused = await refusal_of(events, cmd)
            assert refused.reason_code == "not_licensed" and "actorid" in refused.message
            assert fields_of(refused) == {"actorid"}
        assert no_dead_letters(dlq.got.records)
        assert await LeadRepository(service.db).get("A1") is None
        assert await service.db["pipelines"].count_documents({"_id": "p-anon"}) == 0


async def test_leads_an_unlicensed_actor_learns_nothing_of_existence(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="E1", title="exists"), actor="bob"))
        probes = {
            "existing lead": command(payload("crm.lead.update", lead_id="E1", title="mine now"), actor="mallory"),
            "missing lead": command(payload("crm.lead.update", lead_id="E404", title="mine now"), actor="mallory"),
            "existing lead, create": command(payload("crm.lead.create", lead_id="E1", title="again"), actor="mallory"),
            "existing pipeline": command(payload("crm.pipeline.update", pipeline_id="default", name="x"), actor="mallory"),
            "missing pipeline": command(payload("crm.pipeline.update", pipeline_id="nope", name="x"), actor="mallory"),
        }
        for cmd in probes.values():
            await producer.send(LEADS_COMMANDS, cmd)
        answers = {name: await refusal_of(events, cmd, name) for name, cmd in probes.items()}
        assert {name: a.reason_code.value for name, a in answers.items()} == dict.fromkeys(probes, "not_licensed")
        # The same words whether the lead or pipeline exists or not.
        assert len({a.message for a in answers.values()}) == 1
        assert (await LeadRepository(service.db).get("E1")).title == "exists"


async def test_leads_a_service_name_as_actor_gives_no_rights(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        as_importer = command(payload("crm.lead.create", lead_id="S1", title="as a service"), actor="svc-importer")
        as_leads = command(payload("crm.pipeline.create", pipeline_id="p-svc", name="By a service"), actor="svc-leads")
        for cmd in (as_importer, as_leads):
            await producer.send(LEADS_COMMANDS, cmd)
        for cmd in (as_importer, as_leads):
            assert (await refusal_of(events, cmd)).reason_code == "not_licensed"
        assert await LeadRepository(service.db).get("S1") is None


async def test_leads_fields_out_of_bounds_are_refused_naming_the_field(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        long_title = command(payload("crm.lead.create", lead_id="B1", title=HUGE_TITLE), actor="bob")
        nul_id = command(payload("crm.lead.create", lead_id="B\x002", title="nul in id"), actor="bob")
        nul_email = command(payload("crm.lead.create", lead_id="B3", title="nul in email", contact={"email": "a@b\x00.c"}), actor="bob")
        for cmd in (long_title, nul_id, nul_email):
            await producer.send(LEADS_COMMANDS, cmd)
        expected = {long_title.id: "title", nul_id.id: "lead_id", nul_email.id: "contact.email"}
        for cmd in (long_title, nul_id, nul_email):
            refused = await refusal_of(events, cmd)
            assert refused.reason_code == "validation", refused
            assert fields_of(refused) == {expected[cmd.id]}, refused.errors
            assert expected[cmd.id] in refused.message
        assert "100,000 characters, at most 1,000" in (await refusal_of(events, long_title)).message
        assert await service.db["leads"].count_documents({}) == 0  # none of the three was stored
        # An update is bounded the same way; a good command after them goes through.
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="B4", title="fine"), actor="bob"))
        phone = command(payload("crm.lead.update", lead_id="B4", contact={"phone": "+7 912\x07"}), actor="bob")
        await producer.send(LEADS_COMMANDS, phone)
        assert fields_of(await refusal_of(events, phone)) == {"contact.phone"}
        assert (await repo.get("B4")).version == 1


async def test_leads_a_forged_snapshot_refresh_changes_nothing(settings_for, run_service, endpoints, isolation):
    """`crm.lead.refresh-snapshot` only names a record: the lead takes the record as the directory topic said it."""
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="R1", title="linked", contact={"contact_id": "K9", "name": "Анна"}), actor="bob"))
        forged = command(payload(
            "crm.lead.refresh-snapshot", lead_id="R1", contact={"contact_id": "K9", "name": "Forged", "email": "evil@example.com"},
            record_version=99), actor="svc-leads")
        await producer.send(LEADS_COMMANDS, forged)
        # Same lead, same partition: once this is applied, the forged refresh was handled before it.
        await send_and_wait(producer, events, command(payload("crm.lead.update", lead_id="R1", description="later"), actor="bob"))
        lead = await repo.get("R1")
        assert lead.contact.name == "Анна" and lead.contact.email is None and lead.version == 2
        # The directory's own record does reach the lead.
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.contact.upserted", contact_id="K9", name="Анна Петрова", version=1), key="K9")
        await wait_until(lambda: _contact_name(repo, "R1", "Анна Петрова"), what="the directory's contact on the lead")


async def _contact_name(repo, lead_id, name) -> bool:
    lead = await repo.get(lead_id)
    return lead is not None and lead.contact is not None and lead.contact.name == name


# --- qualification ------------------------------------------------------------------------------


async def test_qualification_commands_checked_before_anything_is_read(settings_for, run_service, endpoints, isolation):
    qualification = await run_service(create_qualification(settings_for(QualificationSettings, "qualification")))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS, dlq_topic(QUALIFICATION_COMMANDS)
    ) as events:
        await grant(producer, "alice", admin=True)
        await producer.send(LEADS_EVENTS, lead_card("Q1"))
        await wait_until(lambda: LeadProjection(qualification.db).get("Q1"), what="lead Q1 projected")

        def qualify(lead_id, actor, **extra):
            data = payload("crm.lead.qualify", lead_id=lead_id, qualification_type="company_only",
                           new_company=extra.pop("new_company", {"name": "ООО Ромашка"}), **extra)
            return command(data, actor=actor) if actor else anonymous(data)

        no_actor = [qualify("Q1", None), anonymous(payload("crm.lead.disqualify", lead_id="Q1", reason_id="no_budget"))]
        oracle = [
            qualify("Q1", "mallory"), qualify("Q404", "mallory"),
            command(payload("crm.lead.disqualify", lead_id="Q1", reason_id="no_budget"), actor="mallory"),
            command(payload("crm.lead.disqualify", lead_id="Q404", reason_id="no_budget"), actor="mallory"),
            command(payload("crm.disqualification-reason.add", pipeline_id="nope", text="x"), actor="mallory"),
        ]
        bounded = qualify("Q1", "alice", new_company={"name": HUGE_TITLE})
        for cmd in [*no_actor, *oracle, bounded]:
            await producer.send(QUALIFICATION_COMMANDS, cmd)
        for cmd in no_actor:
            refused = await refusal_of(events, cmd)
            assert refused.reason_code == "not_licensed" and fields_of(refused) == {"actorid"}
        answers = [await refusal_of(events, cmd) for cmd in oracle]
        assert {a.reason_code.value for a in answers} == {"not_licensed"}
        assert len({a.message for a in answers}) == 1
        refused = await refusal_of(events, bounded)
        assert refused.reason_code == "validation" and fields_of(refused) == {"new_company.name"}
        # A qualify's sender also gets the outcome it waits for on the public topic.
        outcome = await wait_until(
            lambda: [m for m in events.got.of_type("crm.qualification.rejected") if m.data.command_id == no_actor[0].id],
            what="crm.qualification.rejected of the anonymous qualify",
        )
        assert [r.code.value for r in outcome[0].data.reasons] == ["not_licensed"]
        assert outcome[0].id != rejection_for(events, no_actor[0])[0].id  # two events, two ids: neither is deduped away
        assert no_dead_letters(events.got.records)
        assert await ClosingRepository(qualification.db).get("Q1") is None


# --- activity -----------------------------------------------------------------------------------


async def test_activity_commands_checked_before_anything_is_read(settings_for, run_service, endpoints, isolation):
    activity = await start_activity(settings_for, run_service)
    due = datetime.now(UTC) + timedelta(days=2)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS, dlq_topic(ACTIVITY_COMMANDS)
    ) as events:
        await activity_ready(activity, producer, users=("alice",))
        await producer.send(LEADS_EVENTS, lead_card("T1"))
        await lead_known(activity, "T1")
        await producer.send(ACTIVITY_COMMANDS, task_cmd("T1", "task-1", due))
        await wait_until(lambda: events.got.of_type("crm.task.created"), what="task-1 created")

        create = task_cmd("T1", "task-anon", due)
        no_actor = [
            anonymous(create.data, subject="T1"),
            anonymous(payload("crm.task.complete", task_id="task-1"), subject="T1"),
            anonymous(payload("crm.task.type.add", type_id="visit", name="Visit")),
        ]
        oracle = [
            command(payload("crm.task.complete", task_id="task-1"), actor="mallory", subject="T1"),
            command(payload("crm.task.complete", task_id="ghost"), actor="mallory", subject="T1"),
            task_cmd("T1", "m1", due, actor="mallory"),
            task_cmd("T404", "m2", due, actor="mallory"),
        ]
        long_title = command(create.data.model_copy(update={"task_id": "long", "title": HUGE_TITLE}), actor="alice")
        nul_lead = task_cmd("T\x001", "nul", due)
        for cmd in [*no_actor, *oracle, long_title, nul_lead]:
            await producer.send(ACTIVITY_COMMANDS, cmd)
        for cmd in no_actor:
            refused = await refusal_of(events, cmd)
            assert refused.reason_code == "not_licensed" and fields_of(refused) == {"actorid"}
        answers = [await refusal_of(events, cmd) for cmd in oracle]
        assert {a.reason_code.value for a in answers} == {"not_licensed"}
        assert len({a.message for a in answers}) == 1
        assert fields_of(await refusal_of(events, long_title)) == {"title"}
        assert fields_of(await refusal_of(events, nul_lead)) == {"lead_id"}
        assert no_dead_letters(events.got.records)
        assert {t.task_id for t in (await TaskRepository(activity.db).search())[0]} == {"task-1"}


# --- importer (its command checks are its own; the missing actor was a crmkit bug) ---------------


async def test_importer_a_command_without_actor_is_not_licensed(settings_for, run_service, endpoints, isolation, tmp_path):
    from contracts.imports import StartImport
    from contracts.topics import IMPORTS_COMMANDS, IMPORTS_EVENTS
    from services.importer.app import create_app as create_importer
    from services.importer.settings import ImporterSettings

    await run_service(create_importer(settings_for(ImporterSettings, "importer", uploads_dir=str(tmp_path / "uploads"))))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, IMPORTS_EVENTS, dlq_topic(IMPORTS_COMMANDS)
    ) as events:
        start = anonymous(StartImport(import_id="imp-anon", file_uri=str(tmp_path / "leads.csv")), subject="imp-anon")
        await producer.send(IMPORTS_COMMANDS, start)
        assert (await refusal_of(events, start)).reason_code == "not_licensed"
        assert no_dead_letters(events.got.records)
