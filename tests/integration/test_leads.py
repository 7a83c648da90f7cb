"""The leads service on real Kafka and FerretDB: lifecycle rules, refusals, idempotency, read side."""

from __future__ import annotations

import contextlib

import httpx

from contracts.topics import ACTIVITY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_EVENTS
from crmkit.principals import PrincipalRepository
from services.leads.app import Overrides, create_app
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import grant, payload
from tests.support import Collector, Producer, command, wait_until

TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-eve": "eve"}


@contextlib.asynccontextmanager
async def leads_stack(settings_for, run_service, endpoints, isolation, app_overrides=None, **overrides):
    settings = settings_for(LeadsSettings, "leads", tokens=TOKENS, **overrides)
    service = await run_service(create_app(settings, overrides=app_overrides))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, LEADS_EVENTS
    ) as events:
        await grant(producer, "alice", admin=True)
        await grant(producer, "bob")
        await wait_until(lambda: events.got.of_type("crm.pipeline.created"), what="default pipeline")
        # The grants travel on another topic than the commands: a command fetched before them would be
        # refused (not licensed), so the tests start once the service has stored both.
        principals = PrincipalRepository(service.db, settings.service_principals)

        async def granted() -> bool:
            alice, bob = await principals.get("alice"), await principals.get("bob")
            return alice.licensed and alice.is_admin and bob.licensed

        await wait_until(granted, what="alice's and bob's licences stored")
        yield service, producer, events


def rejection_for(events, cmd):
    return [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == cmd.id]


async def send_and_wait(producer, events, cmd, *, topic=LEADS_COMMANDS, what="the command's effect"):
    """Send a command and wait until some event is caused by it."""
    await producer.send(topic, cmd)
    return await wait_until(lambda: [m for m in events.got.messages if m.causationid == cmd.id], what=what)


async def expect_rejected(producer, events, cmd, code):
    await producer.send(LEADS_COMMANDS, cmd)
    found = await wait_until(lambda: rejection_for(events, cmd), what=f"rejection {code} of {cmd.type}")
    assert found[0].data.reason_code == code, found[0].data
    assert found[0].data.message
    return found[0]


async def test_lead_lifecycle_and_refusals(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        # Pipelines: only admins create; forward-only mode refuses a move back.
        await expect_rejected(producer, events, command(payload("crm.pipeline.create", pipeline_id="p2", name="Partners"), actor="bob"), "forbidden")
        await send_and_wait(producer, events, command(payload("crm.pipeline.create", pipeline_id="fwd", name="Forward", transition_mode="forward_only", stages=[
            {"stage_id": "n", "name": "New", "status": "new"},
            {"stage_id": "a", "name": "Call", "status": "in_progress"},
            {"stage_id": "b", "name": "Meet", "status": "in_progress"},
            {"stage_id": "q", "name": "Won", "status": "qualified"},
            {"stage_id": "u", "name": "Lost", "status": "unqualified"},
        ]), actor="alice"))
        await expect_rejected(producer, events, command(payload("crm.pipeline.delete", pipeline_id="default"), actor="alice"), "forbidden")
        await expect_rejected(producer, events, command(payload("crm.pipeline.update", pipeline_id="fwd", stages=[
            {"stage_id": "n", "name": "New", "status": "new"},
            {"stage_id": "a", "name": "Call", "status": "in_progress"},
            {"stage_id": "q", "name": "Won", "status": "qualified"},
        ]), actor="alice"), "invalid_state")

        # Create: default pipeline, first stage, responsible defaults to the actor.
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="L1", title="Website form"), actor="bob"))
        lead = await repo.get("L1")
        assert (lead.pipeline_id, lead.stage_id, lead.status, lead.responsible_id, lead.version) == ("default", "new", "new", "bob", 1)
        await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="L-bad", title="  "), actor="bob"), "validation")
        await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="L-bad", title="x", pipeline_id="nope"), actor="bob"), "not_found")

        # Assigning moves New → Processing.
        await send_and_wait(producer, events, command(payload("crm.lead.assign", lead_id="L1", responsible_id="carol"), actor="bob"))
        lead = await repo.get("L1")
        assert (lead.responsible_id, lead.stage_id, lead.status) == ("carol", "processing", "in_progress")
        assert [h.stage_id for h in lead.status_history] == ["new", "processing"]
        stage_changed = [m for m in events.got.of_type("crm.lead.stage-changed") if m.subject == "L1"]
        assert stage_changed[-1].data.from_status == "new" and stage_changed[-1].data.to_status == "in_progress"

        # A move to a stage of another pipeline, or to a final stage, is refused.
        await expect_rejected(producer, events, command(payload("crm.lead.move", lead_id="L1", stage_id="a"), actor="bob"), "invalid_transition")
        await expect_rejected(producer, events, command(payload("crm.lead.move", lead_id="L1", stage_id="qualified"), actor="bob"), "invalid_transition")

        # Change pipeline into a forward-only one, then a backward move is refused.
        await send_and_wait(producer, events, command(payload("crm.lead.change-pipeline", lead_id="L1", pipeline_id="fwd", stage_id="b"), actor="bob"))
        await expect_rejected(producer, events, command(payload("crm.lead.move", lead_id="L1", stage_id="a"), actor="bob"), "invalid_transition")
        await expect_rejected(producer, events, command(payload("crm.pipeline.delete", pipeline_id="fwd"), actor="alice"), "invalid_state")

        # Soft delete and restore.
        await send_and_wait(producer, events, command(payload("crm.lead.delete", lead_id="L1"), actor="bob"))
        assert (await repo.get("L1")).deleted
        await send_and_wait(producer, events, command(payload("crm.lead.restore", lead_id="L1"), actor="bob"))
        assert not (await repo.get("L1")).deleted

        # Qualified by the qualification service: locked against changes until an admin reopens it.
        from contracts import build_message, payload_class

        qualified = build_message(
            payload_class("crm.lead.qualified").model_validate(
                {"lead_id": "L1", "qualification_type": "deal_and_company", "company_id": "C1", "deal_id": "D1"}
            ),
            source="crm/qualification",
        )
        await send_and_wait(producer, events, qualified, topic=QUALIFICATION_EVENTS)
        lead = await repo.get("L1")
        assert (lead.status, lead.stage_id, lead.qualified_deal_id, lead.qualified_company_id) == ("qualified", "q", "D1", "C1")
        await expect_rejected(producer, events, command(payload("crm.lead.update", lead_id="L1", title="changed"), actor="bob"), "invalid_state")
        await expect_rejected(producer, events, command(payload("crm.lead.reopen", lead_id="L1"), actor="bob"), "forbidden")
        await send_and_wait(producer, events, command(payload("crm.lead.reopen", lead_id="L1"), actor="alice"))
        lead = await repo.get("L1")
        assert lead.status == "in_progress" and not lead.locked
        versions = [m.data.version for m in events.got.of_type("crm.lead.updated") if m.subject == "L1"]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        assert lead.version == max(versions)


async def test_unlicensed_actor_is_refused(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="X", title="t"), actor="eve"), "not_licensed")
        assert await LeadRepository(service.db).get("X") is None


async def test_same_create_and_move_twice_apply_once(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        create = command(payload("crm.lead.create", external_id="ext-1", title="Twice"), actor="bob", source="ext/form")
        await producer.send(LEADS_COMMANDS, create)
        await producer.send(LEADS_COMMANDS, create)
        move = command(payload("crm.lead.move", lead_id="placeholder", stage_id="processing"), actor="bob")
        created = await wait_until(lambda: events.got.of_type("crm.lead.created"), what="created")
        lead_id = created[0].data.lead_id
        move = command(payload("crm.lead.move", lead_id=lead_id, stage_id="processing"), actor="bob", id=move.id)
        await producer.send(LEADS_COMMANDS, move)
        await producer.send(LEADS_COMMANDS, move)
        # A retried create with a new message id but the same source + external id makes no second lead.
        retry = command(payload("crm.lead.create", external_id="ext-1", title="Twice"), actor="bob", source="ext/form")
        await expect_rejected(producer, events, retry, "conflict")
        lead = await LeadRepository(service.db).get(lead_id)
        assert lead.stage_id == "processing"
        assert [h.stage_id for h in lead.status_history] == ["new", "processing"]
        ids = lambda t: {m.id for m in events.got.of_type(t) if m.subject == lead_id}  # noqa: E731
        assert len(ids("crm.lead.created")) == 1
        assert len(ids("crm.lead.stage-changed")) == 1
        assert await service.db["leads"].count_documents({}) == 1


class Crash(BaseException):
    """Stands for the process dying: escapes every handler, so nothing is committed."""


async def test_event_owed_after_a_crash_between_write_and_publish(settings_for, run_service, endpoints, isolation):
    settings = settings_for(LeadsSettings, "leads", tokens=TOKENS)
    first = await run_service(create_app(settings))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, LEADS_EVENTS
    ) as events:
        await grant(producer, "bob")
        await wait_until(lambda: events.got.of_type("crm.pipeline.created"), what="default pipeline")
        real_publish = first.bus.publish
        crashed = []

        async def publish_then_die(outbound):
            if any(o.message.type == "crm.lead.created" for o in outbound):
                crashed.append(True)
                raise Crash()
            await real_publish(outbound)

        first.bus.publish = publish_then_die
        cmd = command(payload("crm.lead.create", lead_id="L-crash", title="Stored, not yet announced"), actor="bob")
        await producer.send(LEADS_COMMANDS, cmd)
        await wait_until(lambda: crashed, what="the crash at the seam")
        assert (await LeadRepository(first.db).get("L-crash")) is not None  # stored...
        assert not events.got.of_type("crm.lead.created")  # ...but never published
        with contextlib.suppress(BaseException):
            await first.stop()
        second = await run_service(create_app(settings))
        created = await wait_until(lambda: events.got.of_type("crm.lead.created"), timeout=60, what="the owed event")
        assert created[0].data.lead_id == "L-crash"
        assert created[0].causationid == cmd.id
        assert (await LeadRepository(second.db).get("L-crash")).version == 1


async def test_activity_summary_and_read_side(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        for i in range(5):
            await producer.send(LEADS_COMMANDS, command(payload(
                "crm.lead.create", lead_id=f"R{i}", title=f"Read side {i}", source="web" if i % 2 else "phone",
                contact={"name": f"Пётр {i}", "email": f"p{i}@example.com"},
            ), actor="bob"))
        await wait_until(lambda: len(events.got.of_type("crm.lead.created")) >= 5, what="five leads")
        from contracts import build_message, payload_class

        summary = build_message(payload_class("crm.lead.activity-summary").model_validate(
            {"lead_id": "R1", "next_due_at": "2030-01-01T10:00:00Z", "next_task_id": "T1", "open_count": 2, "overdue_count": 0, "state": "on_time"}
        ), source="crm/activity")
        await send_and_wait(producer, events, summary, topic=ACTIVITY_EVENTS)

        transport = httpx.ASGITransport(app=service.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            assert (await http.get("/leads/R1")).status_code == 401
            assert (await http.get("/leads/R1", headers={"Authorization": "Bearer nope"})).status_code == 401
            assert (await http.get("/leads/R1", headers={"Authorization": "Bearer tok-eve"})).status_code == 403
            auth = {"Authorization": "Bearer tok-bob"}
            card = (await http.get("/leads/R1", headers=auth)).json()
            assert card["title"] == "Read side 1" and card["days_in_status"] == 0
            assert card["last_activity"]["task_id"] == "T1" and card["last_activity"]["state"] == "on_time"
            other = (await http.get("/leads/R2", headers=auth)).json()
            assert other["last_activity"]["at"] == other["data_changed_at"].replace("+00:00", "Z") or other["last_activity"]["at"]
            assert (await http.get("/leads/none", headers=auth)).status_code == 404
            web = (await http.get("/leads", params={"source": "web"}, headers=auth)).json()
            assert sorted(i["lead_id"] for i in web["items"]) == ["R1", "R3"]
            text = (await http.get("/leads", params={"q": "пётр 4"}, headers=auth)).json()
            assert [i["lead_id"] for i in text["items"]] == ["R4"]
            seen, cursor = [], None
            while True:
                params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = (await http.get("/leads", params=params, headers=auth)).json()
                seen += [i["lead_id"] for i in page["items"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert sorted(seen) == [f"R{i}" for i in range(5)]
            pipelines = (await http.get("/pipelines", headers=auth)).json()["items"]
            assert pipelines[0]["pipeline_id"] == "default"
            board = (await http.get("/pipelines/default/board", headers=auth)).json()
            new_column = next(s for s in board["stages"] if s["stage_id"] == "new")
            assert new_column["count"] == 5 and len(new_column["leads"]) == 5
            assert (await http.get("/leads", params={"limit": "0"}, headers=auth)).status_code == 400
            assert (await http.get("/leads", params={"include_deleted": "maybe"}, headers=auth)).status_code == 400
            assert (await http.get("/leads", params={"include_deleted": "yes"}, headers=auth)).status_code == 200


async def test_contact_renamed_upstream_updates_every_linked_lead(settings_for, run_service, endpoints, isolation):
    from contracts.topics import DIRECTORY_EVENTS
    from tests.integration.leads_helpers import directory_event

    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        # Linked before the contact exists upstream: the card fills in when it arrives.
        for i in range(3):
            await producer.send(LEADS_COMMANDS, command(payload(
                "crm.lead.create", lead_id=f"C{i}", title=f"Linked {i}", contact={"contact_id": "K1"}), actor="bob"))
        await wait_until(lambda: len(events.got.of_type("crm.lead.created")) >= 3, what="three leads")
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.contact.upserted", contact_id="K1", name="Анна", phone="+79120000000", version=2), key="K1")
        await wait_until(lambda: len({m.subject for m in events.got.of_type("crm.lead.updated") if m.data.contact and m.data.contact.name == "Анна"}) == 3, what="snapshots filled")
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.contact.upserted", contact_id="K1", name="Old name", version=1), key="K1")
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.contact.upserted", contact_id="K1", name="Анна Петрова", version=3), key="K1")
        await wait_until(lambda: len({m.subject for m in events.got.of_type("crm.lead.updated") if m.data.contact and m.data.contact.name == "Анна Петрова"}) == 3, what="all three renamed")
        renamed = [m for m in events.got.of_type("crm.lead.updated") if m.data.contact and m.data.contact.name == "Анна Петрова"]
        assert sorted(m.subject for m in renamed) == ["C0", "C1", "C2"]  # one update per lead
        assert not [m for m in events.got.of_type("crm.lead.updated") if m.data.contact and m.data.contact.name == "Old name"]
        for i in range(3):
            assert (await repo.get(f"C{i}")).contact.name == "Анна Петрова"


async def test_deleted_lead_restored_after_its_pipeline_was_deleted(settings_for, run_service, endpoints, isolation):
    """A restored lead goes live on a live pipeline: the default one, at the stage of its status."""
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        await send_and_wait(producer, events, command(payload("crm.pipeline.create", pipeline_id="tmp", name="Temporary", stages=[
            {"stage_id": "t-new", "name": "New", "status": "new"},
            {"stage_id": "t-call", "name": "Call", "status": "in_progress"},
            {"stage_id": "t-won", "name": "Won", "status": "qualified"},
            {"stage_id": "t-lost", "name": "Lost", "status": "unqualified"},
        ]), actor="alice"))
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="LR", title="Old form", pipeline_id="tmp"), actor="bob"))
        await send_and_wait(producer, events, command(payload("crm.lead.move", lead_id="LR", stage_id="t-call"), actor="bob"))
        await send_and_wait(producer, events, command(payload("crm.lead.delete", lead_id="LR"), actor="bob"))
        # The pipeline holds no live lead any more, so it may be deleted.
        await send_and_wait(producer, events, command(payload("crm.pipeline.delete", pipeline_id="tmp"), actor="alice"))
        assert events.got.of_type("crm.pipeline.deleted")

        restore = command(payload("crm.lead.restore", lead_id="LR"), actor="bob")
        await send_and_wait(producer, events, restore)
        assert not rejection_for(events, restore), rejection_for(events, restore)[0].data
        lead = await repo.get("LR")
        assert not lead.deleted
        assert (lead.pipeline_id, lead.stage_id, lead.status) == ("default", "processing", "in_progress")
        moved = [m for m in events.got.of_type("crm.lead.stage-changed") if m.causationid == restore.id]
        assert [(m.data.from_pipeline_id, m.data.from_stage_id, m.data.pipeline_id, m.data.to_stage_id) for m in moved] == [
            ("tmp", "t-call", "default", "processing")
        ]
        # A lead may still not be created in, or moved to, the deleted pipeline.
        await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="LR2", title="x", pipeline_id="tmp"), actor="bob"), "not_found")
        await expect_rejected(producer, events, command(payload("crm.lead.change-pipeline", lead_id="LR", pipeline_id="tmp"), actor="bob"), "not_found")


async def test_events_carry_the_time_of_the_injected_clock(settings_for, run_service, endpoints, isolation):
    """Every event a command causes is stamped by the service's clock, the card events included."""
    from datetime import UTC, datetime

    fixed = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    clocked = Overrides(clock=lambda: fixed)
    async with leads_stack(settings_for, run_service, endpoints, isolation, clocked) as (service, producer, events):
        create = command(payload("crm.lead.create", lead_id="LT", title="Clocked"), actor="bob")
        await send_and_wait(producer, events, create)
        move = command(payload("crm.lead.move", lead_id="LT", stage_id="processing"), actor="bob")
        await send_and_wait(producer, events, move)
        caused = [m for m in events.got.messages if m.causationid in (create.id, move.id)]
        assert {m.type for m in caused} >= {"crm.lead.created", "crm.lead.stage-changed", "crm.lead.updated"}
        assert {m.time for m in caused} == {fixed}
        assert (await LeadRepository(service.db).get("LT")).updated_at == fixed
