"""The activity handlers as ``create_app`` wires them, on the real database, fed batches without Kafka.

A batch of task commands is read once and stored in bulk, each lead's summary published once per
batch; a redelivery publishes the same records and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.topics import ACTIVITY_COMMANDS, ACTIVITY_EVENTS, DIRECTORY_EVENTS
from services.activity.app import Overrides, create_app
from services.activity.messages import task_id_of
from services.activity.repository import TaskRepository
from services.activity.settings import ActivitySettings
from tests.component.support import built, inbound, lead_card, lead_fact, wire
from tests.integration.leads_helpers import directory_event, payload
from tests.support import command

NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
GRANT = (DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="bob", licence="crm"))


def create(lead_id: str, hours: int, *, actor: str = "bob"):
    data = payload("crm.task.create", lead_id=lead_id, type="call", title=f"Call in {hours} h", assignee_id="bob",
                   start_at=NOW + timedelta(hours=hours - 1), due_at=NOW + timedelta(hours=hours))
    return ACTIVITY_COMMANDS, command(data, actor=actor)


def complete(task_id: str, lead_id: str):
    return ACTIVITY_COMMANDS, command(payload("crm.task.complete", task_id=task_id), actor="bob", subject=lead_id)


def app(settings_for):
    return create_app(settings_for(ActivitySettings, "activity", due_pass_interval_s=0), overrides=Overrides(clock=lambda: NOW))


async def prepared(service):
    await TaskRepository(service.db).ensure_indexes()
    return service.batch_handlers["activity"]


def summaries(out) -> dict[str, tuple]:
    found = {}
    for o in out:
        if o.message.type == "crm.lead.activity-summary":
            data = o.message.data
            assert data.lead_id not in found, f"two summaries of {data.lead_id} in one batch"
            found[data.lead_id] = (data.open_count, data.next_task_id, data.next_due_at)
    return found


async def test_a_batch_of_tasks_is_stored_once_with_one_summary_per_lead(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        leads = ["A1", "A2", "A3"]
        await handle(inbound([GRANT, *(lead_card(lead_id) for lead_id in leads)]))
        creates = [create(lead_id, hours) for hours in range(2, 12) for lead_id in leads]
        first_of_a1 = task_id_of(creates[0][1])  # A1's task due in 2 h, completed in the same batch
        batch = inbound([*creates, complete(first_of_a1, "A1")])
        out = await handle(batch)

        created = [o for o in out if o.message.type == "crm.task.created"]
        assert len(created) == 30 and {o.topic for o in out} == {ACTIVITY_EVENTS}
        assert [o.message.type for o in out if o.message.causationid == batch[-1].message.id][:1] == ["crm.task.completed"]
        shown = summaries(out)
        assert set(shown) == set(leads)
        assert shown["A1"][0] == 9 and shown["A1"][2] == NOW + timedelta(hours=3)  # the completed one is not next
        assert shown["A2"][0] == 10 and shown["A2"][1] == task_id_of(creates[1][1])
        tasks = TaskRepository(service.db)
        assert len((await tasks.search(lead_id="A2", limit=100))[0]) == 10
        assert (await tasks.view(first_of_a1)).status == "done"

        again = await handle(batch)  # the consumer died before committing
        assert wire([o for o in again if o.message.type != "crm.lead.activity-summary"]) == wire(
            [o for o in out if o.message.type != "crm.lead.activity-summary"]
        )
        assert summaries(again) == shown
        assert len((await tasks.search(limit=100))[0]) == 30


async def test_deleting_a_lead_cancels_its_tasks_once_and_restoring_it_reopens_them(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, lead_card("D1"), lead_card("D2")]))
        await handle(inbound([create("D1", 3), create("D1", 5), create("D2", 4)]))

        deleted = inbound([lead_fact("crm.lead.deleted", "D1", 2), lead_card("D2", version=2, event="crm.lead.updated")])
        out = await handle(deleted)
        assert sorted(o.message.type for o in out) == ["crm.lead.activity-summary", "crm.task.cancelled", "crm.task.cancelled"]
        assert summaries(out)["D1"][0] == 0
        again = await handle(deleted)  # redelivered: the same cancellations again, nothing changed twice
        assert wire([o for o in again if o.message.type == "crm.task.cancelled"]) == wire(
            [o for o in out if o.message.type == "crm.task.cancelled"]
        )
        assert [t.version for t in (await TaskRepository(service.db).search(lead_id="D1", limit=10))[0]] == [2, 2]

        restoring = inbound([lead_fact("crm.lead.restored", "D1", 3)])
        restored = await handle(restoring)
        assert sorted(o.message.type for o in restored) == ["crm.lead.activity-summary", "crm.task.updated", "crm.task.updated"]
        assert summaries(restored)["D1"][0] == 2
        again = await handle(restoring)  # redelivered: the lead is live and its tasks follow it, the same records again
        assert wire([o for o in again if o.message.type == "crm.task.updated"]) == wire(
            [o for o in restored if o.message.type == "crm.task.updated"]
        )


async def test_a_lead_s_facts_are_written_apart_from_its_agenda_and_an_agenda_kept_the_old_way_is_rebuilt(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        rebuilt: list[list[str]] = []
        tasks = service.handlers.tasks
        open_of_leads = tasks.open_of_leads

        async def counted(lead_ids):
            if lead_ids := sorted(lead_ids):
                rebuilt.append(lead_ids)
            return await open_of_leads(lead_ids)

        tasks.open_of_leads = counted
        await handle(inbound([GRANT, lead_card("S1"), lead_card("S2"), lead_card("S3")]))
        await handle(inbound([create("S1", 3), create("S1", 5), create("S2", 4), create("S3", 4)]))
        assert rebuilt == []  # leads first projected by this version: their first tasks need no read of tasks
        leads, agendas = service.db["leads"], service.db["agendas"]
        assert "_open" not in await leads.find_one({"_id": "S1"})  # the facts' document holds no agenda
        kept = await agendas.find_one({"_id": "S1"})
        assert sorted(e["due"].replace(tzinfo=UTC) for e in kept["open"].values()) == [NOW + timedelta(hours=3), NOW + timedelta(hours=5)]

        # The lead is qualified: its facts are written, its agenda is not touched.
        await handle(inbound([lead_card("S1", version=2, event="crm.lead.updated", status="qualified", stage_id="qualified")]))
        assert (await leads.find_one({"_id": "S1"}))["status"] == "qualified"
        assert await agendas.find_one({"_id": "S1"}) == kept

        # S2 as a version before the split stored it: its agenda (stale here) inside the lead's document, none
        # apart, and no mark of this version. S3 worked by an instance of that version during a rolling upgrade:
        # its agenda apart misses the task that instance added, its copy in the lead's document has it.
        await agendas.delete_one({"_id": "S2"})
        await leads.update_one({"_id": "S2"}, {"$set": {"_open": {"stale": {"id": "gone", "due": NOW}}}, "$unset": {"_agendas_apart": ""}})
        await leads.update_one({"_id": "S3"}, {"$set": {"_open": {"x": {"id": "added", "due": NOW}}}})
        out = await handle(inbound([create("S2", 6), create("S3", 6)]))
        assert rebuilt == [["S2", "S3"]]
        assert summaries(out)["S2"][:1] == (2,) and summaries(out)["S3"][:1] == (2,)  # from their open tasks
        assert len((await agendas.find_one({"_id": "S2"}))["open"]) == 2
        assert "_open" not in await leads.find_one({"_id": "S2"}) and "_open" not in await leads.find_one({"_id": "S3"})
        await handle(inbound([create("S2", 7)]))
        assert rebuilt == [["S2", "S3"]]  # once


async def test_an_old_agenda_written_by_an_older_instance_during_its_rebuild_is_kept_and_rebuilt_again(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        leads, agendas = service.db["leads"], service.db["agendas"]
        tasks = service.handlers.tasks
        open_of_leads = tasks.open_of_leads
        rebuilds: list[list[str]] = []
        await handle(inbound([GRANT, lead_card("R1")]))
        await handle(inbound([create("R1", 3)]))
        # R1 as an older version keeps it: its agenda in the lead's document, none apart.
        await agendas.delete_one({"_id": "R1"})
        await leads.update_one({"_id": "R1"}, {"$set": {"_open": {"old": {"id": "old", "due": NOW}}}, "$unset": {"_agendas_apart": ""}})

        async def older_instance_writes_meanwhile(lead_ids):
            if lead_ids := sorted(lead_ids):
                rebuilds.append(lead_ids)
            found = await open_of_leads(lead_ids)
            if rebuilds == [["R1"]] and lead_ids:  # after the rebuild read the open tasks: a task it did not see, and its agenda entry
                await leads.update_one({"_id": "R1"}, {"$set": {"_open.late": {"id": "late", "due": NOW}}})
            return found

        tasks.open_of_leads = older_instance_writes_meanwhile
        await handle(inbound([create("R1", 5)]))
        assert "late" in (await leads.find_one({"_id": "R1"}))["_open"]  # not dropped with the agenda it read
        await handle(inbound([create("R1", 6)]))
        assert rebuilds == [["R1"], ["R1"]]  # so the next batch rebuilds it again
        assert "_open" not in await leads.find_one({"_id": "R1"})  # and drops it, unchanged this time
        await handle(inbound([create("R1", 7)]))
        assert rebuilds == [["R1"], ["R1"]]


async def test_a_create_naming_a_stored_task_is_refused_and_a_redelivered_one_replays(settings_for):
    # A create is inserted without a read first (it is most likely new): one that finds its task stored is
    # decided again against it.
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, lead_card("B1")]))
        data = payload("crm.task.create", task_id="T-fixed", lead_id="B1", type="call", title="First", assignee_id="bob",
                       start_at=NOW + timedelta(hours=1), due_at=NOW + timedelta(hours=2))
        first = (ACTIVITY_COMMANDS, command(data, actor="bob"))
        made = await handle(inbound([first]))
        assert [o.message.type for o in made] == ["crm.task.created", "crm.lead.activity-summary"]

        again = await handle(inbound([first, create("B1", 5)]))  # redelivered beside a new one
        assert wire([o for o in again if o.message.causationid == first[1].id]) == wire(made[:1])
        other = (ACTIVITY_COMMANDS, command(data.model_copy(update={"title": "Second"}), actor="bob"))
        refused = await handle(inbound([other]))
        assert [o.message.type for o in refused] == ["crm.command.rejected"]
        assert refused[0].message.data.reason_code.value == "conflict"
        assert (await TaskRepository(service.db).view("T-fixed")).title == "First"
        assert len((await TaskRepository(service.db).search(lead_id="B1", limit=10))[0]) == 2
