"""The qualification handlers as ``create_app`` wires them, on the real database, fed batches without Kafka.

A batch of qualifications is read once and stored in bulk; a redelivery publishes the same records
and stores nothing twice, also after a crash between the bulk writes and the publishing.
"""

from __future__ import annotations

from contracts.topics import DIRECTORY_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from services.qualification.app import Overrides, create_app
from services.qualification.repository import ClosingRepository, CompanyRepository, DealRepository, ensure_indexes
from services.qualification.settings import QualificationSettings
from tests.component.support import built, inbound, lead_card, wire
from tests.integration.leads_helpers import directory_event, payload
from tests.support import command


class SimulatedCrash(SystemExit):
    """Stands for the process dying between the bulk writes and the publishing."""


def qualify(lead_id: str, *, actor: str = "bob", id: str | None = None):
    data = payload("crm.lead.qualify", lead_id=lead_id, qualification_type="deal_and_company", deal_pipeline_id="default",
                   new_company={"name": f"ООО {lead_id}", "inn": "7701234567"})
    return QUALIFICATION_COMMANDS, command(data, actor=actor, id=id)


def app(settings_for, *, after_step=None):
    return create_app(settings_for(QualificationSettings, "qualification"), overrides=Overrides(after_step=after_step))


async def prepared(service):
    await ensure_indexes(service.db)
    return service.batch_handlers["qualification"]


GRANT = (DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="bob", licence="crm"))
LEADS = [f"Q{i:03d}" for i in range(40)]


async def stored_counts(db) -> tuple[int, int, int, int]:
    done = sum([(await ClosingRepository(db).get(d["_id"])).closing.state == "done" async for d in db["closings"].find({}, {"_id": 1})])
    return (await db["closings"].count_documents({}), done, await DealRepository(db).count(),
            await db["companies"].count_documents({"origin": "qualification"}))


async def test_a_batch_of_qualifications_is_stored_once_and_a_redelivery_publishes_the_same_records(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, *(lead_card(lead_id) for lead_id in LEADS)]))
        commands = [qualify(lead_id) for lead_id in LEADS]
        out = await handle(inbound(commands))

        assert {o.topic for o in out} == {QUALIFICATION_EVENTS}
        for lead_id in LEADS:  # each lead's events in order, keyed by the lead
            mine = [o for o in out if o.message.subject == lead_id]
            assert [o.message.type for o in mine] == ["crm.company.created", "crm.deal.created", "crm.lead.qualified"]
            assert {o.key_bytes() for o in mine} == {lead_id.encode()}
        assert await stored_counts(service.db) == (40, 40, 40, 40)

        again = await handle(inbound(commands))  # the consumer died before committing
        assert wire(again) == wire(out)
        assert await stored_counts(service.db) == (40, 40, 40, 40)


async def test_a_crash_after_the_bulk_writes_publishes_the_same_events_once_on_redelivery(settings_for):
    def crash_after_deals(state: str) -> None:
        if state == "deal_created":
            raise SimulatedCrash("killed between storing the deals and marking the processes done")

    commands = [qualify(lead_id) for lead_id in LEADS[:10]]
    async with built(app(settings_for, after_step=crash_after_deals)) as first:
        handle = await prepared(first)
        await handle(inbound([GRANT, *(lead_card(lead_id) for lead_id in LEADS[:10])]))
        try:
            await handle(inbound(commands))
        except SimulatedCrash:
            pass
        else:
            raise AssertionError("the crash hook did not run")
        # Everything was stored but nothing marked done (and nothing published: the handler never returned).
        assert await stored_counts(first.db) == (10, 0, 10, 10)
        owed = {lead_id: (await ClosingRepository(first.db).get(lead_id)).outbox for lead_id in LEADS[:10]}

        second = app(settings_for)  # the restarted process, on the same database
        try:
            out = await (await prepared(second))(inbound(commands))
        finally:
            await second.mongo.close()
        assert await stored_counts(first.db) == (10, 10, 10, 10)
        for lead_id in LEADS[:10]:  # exactly the events the process owed, once each
            published = [o.message.to_json_bytes().decode() for o in out if o.message.subject == lead_id]
            assert sorted(published) == sorted(owed[lead_id])


async def test_commands_for_one_lead_in_one_batch_are_decided_in_order(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, lead_card("L1"), lead_card("L2")]))
        first, twice, other = qualify("L1"), qualify("L2"), qualify("L1")
        out = await handle(inbound([first, twice, twice, other]))

        by_cause = {}
        for o in out:
            by_cause.setdefault(o.message.causationid, []).append(o)
        # The same command delivered twice in a batch answers twice with identical records.
        l2 = [o for o in out if o.message.subject == "L2"]
        assert [o.message.type for o in l2] == ["crm.company.created", "crm.deal.created", "crm.lead.qualified"] * 2
        assert wire(l2[:3]) == wire(l2[3:])
        # A second, different qualify of L1 is decided against what the first stored: refused, nothing made.
        refused = by_cause[other[1].id]
        assert [o.message.type for o in refused] == ["crm.qualification.rejected"]
        assert [r.code.value for r in refused[0].message.data.reasons] == ["invalid_state"]
        assert await DealRepository(service.db).count(lead_id="L1") == 1
        assert await CompanyRepository(service.db).get(by_cause[first[1].id][0].message.data.company_id) is not None


async def test_refused_commands_store_nothing(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, lead_card("L1")]))
        unlicensed, unknown = qualify("L1", actor="mallory"), qualify("nobody")
        out = await handle(inbound([unlicensed, unknown]))
        kinds = {(o.message.type, getattr(o.message.data, "command_id", None)) for o in out}
        assert kinds == {
            ("crm.command.rejected", unlicensed[1].id), ("crm.qualification.rejected", unlicensed[1].id),
            ("crm.qualification.rejected", unknown[1].id),
        }
        assert await stored_counts(service.db) == (0, 0, 0, 0)


async def test_a_stale_lead_fact_beside_new_ones_is_passed_over_and_the_new_ones_are_kept(settings_for):
    # An older card's upsert collides with the newer stored one (E11000 of that statement only, as on
    # MongoDB): the rest of the bulk is written and the batch goes on.
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([lead_card("S1", version=3, title="Newest"), lead_card("S2", version=1, title="Second")]))
        await handle(inbound([lead_card("S1", version=2, title="Older", event="crm.lead.updated"),
                              lead_card("S2", version=2, title="Second, renamed", event="crm.lead.updated"),
                              lead_card("S3", version=1, title="Third")]))
        titles = {d["_id"]: (d["version"], d["title"]) async for d in service.db["leads"].find({})}
        assert titles == {"S1": (3, "Newest"), "S2": (2, "Second, renamed"), "S3": (1, "Third")}


async def test_a_process_stored_before_the_blob_is_resumed_and_replayed_as_it_owes(settings_for):
    # A process written by the version before (the closing's fields and ``_outbox`` in the document), left
    # half way: the redelivered command finishes it and publishes what it owed; a later redelivery the same.
    commands = [qualify(lead_id) for lead_id in LEADS[:3]]
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, *(lead_card(lead_id) for lead_id in LEADS[:3])]))
        out = await handle(inbound(commands))
        closings = ClosingRepository(service.db)
        for lead_id in LEADS[:3]:
            stored = await closings.get(lead_id)
            old = {**stored.closing.model_dump(), "state": "company_created", "_id": lead_id, "_outbox": stored.outbox}
            await service.db["closings"].replace_one({"_id": lead_id}, old)
        await service.db["closings_done"].delete_many({})
        await service.db["deals"].delete_many({})
        assert await stored_counts(service.db) == (3, 0, 0, 3)

        resumed = await handle(inbound(commands))
        assert wire(resumed) == wire(out)
        assert await stored_counts(service.db) == (3, 3, 3, 3)
        assert wire(await handle(inbound(commands))) == wire(out)


async def test_a_lead_copy_stored_before_the_blob_plans_its_deal_and_its_next_card_replaces_it(settings_for):
    async with built(app(settings_for)) as service:
        handle = await prepared(service)
        await handle(inbound([GRANT, *(lead_card(lead_id) for lead_id in ("N1", "N2", "N3"))]))
        # N1 and N3 as an earlier version stored them: the card's nested fields as fields of the document.
        for lead_id in ("N1", "N3"):
            stored = await service.db["leads"].find_one({"_id": lead_id})
            old = {k: v for k, v in stored.items() if k != "blob"} | {"contact": {"name": "Old"}, "products": [{"product_id": "p-old"}]}
            await service.db["leads"].replace_one({"_id": lead_id}, old)
        # The next card of N2 and of N3 (another contact) replaces what their copies keep.
        await handle(inbound([lead_card(lead_id, version=2, event="crm.lead.updated", contact={"name": "New"}) for lead_id in ("N2", "N3")]))

        out = await handle(inbound([qualify(lead_id) for lead_id in ("N1", "N2", "N3")]))
        deals = {o.message.data.lead_id: o.message.data for o in out if o.message.type == "crm.deal.created"}
        assert {lead_id: (deal.contact.name, [p.product_id for p in deal.products]) for lead_id, deal in deals.items()} == {
            "N1": ("Old", ["p-old"]), "N2": ("New", ["p-router-x200"]), "N3": ("New", ["p-router-x200"]),
        }
