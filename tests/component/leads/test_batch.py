"""The leads handlers on the real database, without Kafka: one batch in, the records owed out.

The handlers are built from the real repositories as ``create_app`` builds them, and fed batches as
the consumer would feed them, so a test sees exactly what a batch stores and publishes, a
redelivery included.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS
from crmkit.messaging import Inbound
from crmkit.mongo import is_ferretdb, make_client
from crmkit.principals import PrincipalRepository
from services.leads.handlers import LeadsHandlers
from services.leads.index import LeadIndex
from services.leads.repository import DirectoryRepository, LeadRepository, PipelineRepository
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import directory_event, payload
from tests.support import command


@contextlib.asynccontextmanager
async def leads_handlers(settings_for, name: str = "leads", clock=None, **overrides):
    settings = settings_for(LeadsSettings, name, **overrides)
    client = make_client(settings.mongodb_url)
    try:
        db = client[settings.database]
        leads = LeadRepository(db)
        ferretdb = await is_ferretdb(db)
        await leads.ensure_indexes(ferretdb=ferretdb)
        leads.strict_versions = not ferretdb
        leads.ferretdb = ferretdb
        pipelines = PipelineRepository(db)
        handlers = LeadsHandlers(
            settings, leads, pipelines, DirectoryRepository(db), PrincipalRepository(db, settings.service_principals),
            LeadIndex(), source="crm/leads", **({"clock": clock} if clock else {}),
        )
        await handlers.announce_default_pipeline()
        yield handlers, leads
    finally:
        await client.drop_database(settings.database)
        await client.close()


def inbound(messages) -> list[Inbound]:
    return [Inbound(topic, 0, offset, message) for offset, (topic, message) in enumerate(messages)]


def per_key(records):
    """Each record key's (message id, value) in order: Kafka keeps order per key (the lead), not across leads."""
    keyed: dict[str, list] = {}
    for o in records:
        keyed.setdefault(o.key, []).append((o.message.id, o.value or o.message.to_json_bytes()))
    return keyed


async def test_a_batch_stores_once_and_a_redelivery_publishes_the_same_records(settings_for):
    async with leads_handlers(settings_for) as (handlers, leads):
        grant = directory_event("crm.user.licence-granted", user_id="bob", licence="crm")
        first = command(payload("crm.lead.create", lead_id="C1", title="Form", contact={"name": "Ann Lee", "email": "ann@example.com"}), actor="bob")
        second = command(payload("crm.lead.create", lead_id="C2", title="Call", contact={"name": "Ann Lee", "email": "ANN@example.com"}), actor="bob")
        move = command(payload("crm.lead.move", lead_id="C1", stage_id="processing"), actor="bob")
        batch = inbound([(DIRECTORY_EVENTS, grant), (LEADS_COMMANDS, first), (LEADS_COMMANDS, second), (LEADS_COMMANDS, move)])

        out = await handlers.on_batch(batch)
        assert {o.topic for o in out} == {LEADS_EVENTS}
        by_cause = {c.id: [o.message.type for o in out if o.message.causationid == c.id] for c in (first, second, move)}
        # C2's create was its only message: its duplicates are part of its creation (version 1).
        assert by_cause[second.id] == ["crm.lead.created", "crm.lead.duplicates-found"]
        created = next(o.message for o in out if o.message.causationid == second.id and o.message.type == "crm.lead.created")
        assert [m.lead_id for m in created.data.duplicates] == ["C1"] and created.data.version == 1
        assert by_cause[move.id] == ["crm.lead.stage-changed", "crm.lead.updated"]
        # C1 was moved in the same batch: its duplicates (C2) are a change of their own, the next version.
        assert by_cause[first.id] == ["crm.lead.created", "crm.lead.duplicates-found", "crm.lead.updated"]
        stored = {lead_id: await leads.get(lead_id) for lead_id in ("C1", "C2")}
        assert (stored["C1"].stage_id, stored["C1"].version, stored["C2"].version) == ("processing", 3, 1)
        assert [m.lead_id for m in stored["C1"].duplicates] == ["C2"]

        again = await handlers.on_batch(batch)  # the consumer died before committing: the same batch
        assert per_key(again) == per_key(out)
        assert {lead_id: (await leads.get(lead_id)).version for lead_id in ("C1", "C2")} == {"C1": 3, "C2": 1}


async def test_a_batch_worked_in_concurrent_chunks_stores_and_publishes_what_one_unit_of_work_does(settings_for):
    now = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    grant = directory_event("crm.user.licence-granted", user_id="bob", licence="crm")
    creates = [command(payload("crm.lead.create", lead_id=f"K{i}", title=f"Lead {i}",
                               contact={"name": f"Person {i}", "email": f"p{i}@example.com"}), actor="bob") for i in range(7)]
    move = command(payload("crm.lead.move", lead_id="K3", stage_id="processing"), actor="bob")
    batch = inbound([(DIRECTORY_EVENTS, grant), *((LEADS_COMMANDS, m) for m in [*creates, move])])
    seen = {}
    for name, chunk in (("leads_whole", 500), ("leads_chunked", 2)):
        async with leads_handlers(settings_for, name, clock=lambda: now, write_chunk=chunk) as (handlers, leads):
            real_save, saves = leads.save, []

            async def save(writes, changes=None, real_save=real_save, saves=saves):
                saves.append(sorted(w.lead.lead_id for w in writes))
                return await real_save(writes, changes)

            leads.save = save
            out = await handlers.on_batch(batch)
            stored = await leads.get_many(f"K{i}" for i in range(7))
            documents = {lead_id: (s.lead.model_dump(), [(r.message_id, [e if isinstance(e, str) else e.value() for e in r.events])
                                                          for r in s.recent]) for lead_id, s in stored.items()}
            seen[name] = (per_key(out), documents, saves)
    whole, chunked = seen["leads_whole"], seen["leads_chunked"]
    assert whole[2] == [[f"K{i}" for i in range(7)]]  # one unit of work, one write
    assert sorted(chunked[2]) == [["K0", "K1"], ["K2", "K3"], ["K4", "K5"], ["K6"]]  # four chunks, each written on its own
    assert chunked[0] == whole[0] and chunked[1] == whole[1]
    assert len(whole[1]) == 7 and whole[1]["K3"][0]["stage_id"] == "processing"


async def test_refusals_are_decided_before_anything_is_stored(settings_for):
    async with leads_handlers(settings_for) as (handlers, leads):
        grant = directory_event("crm.user.licence-granted", user_id="bob", licence="crm")
        unknown = command(payload("crm.lead.move", lead_id="nobody", stage_id="processing"), actor="bob")
        unlicensed = command(payload("crm.lead.create", lead_id="U1", title="x"), actor="eve")
        nowhere = command(payload("crm.lead.create", lead_id="U2", title="x", pipeline_id="gone"), actor="bob")
        out = await handlers.on_batch(inbound([(DIRECTORY_EVENTS, grant), *((LEADS_COMMANDS, m) for m in (unknown, unlicensed, nowhere))]))
        codes = {o.message.data.command_id: o.message.data.reason_code.value for o in out if o.message.type == "crm.command.rejected"}
        assert codes == {unknown.id: "not_found", unlicensed.id: "not_licensed", nowhere.id: "not_found"}
        assert await leads.get("U1") is None and await leads.get("U2") is None


async def _merge_racing_another_writer(settings_for, raced: str):
    """M1 merges M2 while another writer changes ``raced`` between the batch's read and its write (as the
    owner of that lead's partition may, on another instance): the batch's write of that lead loses the
    race and is applied again."""
    from services.leads.repository import LeadWrite

    async with leads_handlers(settings_for) as (handlers, leads):
        leads.strict_versions = True  # as the service runs: a replace names the version it read
        grant = directory_event("crm.user.licence-granted", user_id="bob", licence="crm")
        await handlers.on_batch(inbound([(DIRECTORY_EVENTS, grant), *((LEADS_COMMANDS, command(m, actor="bob")) for m in (
            payload("crm.lead.create", lead_id="M1", title="Survivor", contact={"name": "Ann Lee"}),
            payload("crm.lead.create", lead_id="M2", title="Other", description="wants 3 routers", contact={"name": "Bo Chen"}),
        ))]))
        real_save, raced_once = leads.save, []

        async def save(writes, changes=None):
            if not raced_once and any(w.lead.lead_id == raced for w in writes):
                raced_once.append(raced)
                stored = (await leads.get_many([raced]))[raced]
                lead = stored.lead.model_copy(update={"title": f"{stored.lead.title} (edited elsewhere)", "version": stored.version + 1})
                assert await real_save([LeadWrite(lead, stored.recent, stored.version)]) == set()
            return await real_save(writes, changes)

        leads.save = save
        merge = command(payload("crm.lead.merge", lead_id="M1", other_lead_id="M2", fields={}), actor="bob")
        out = await handlers.on_batch(inbound([(LEADS_COMMANDS, merge)]))
        assert raced_once == [raced]
        leads.save = real_save
        return out, await leads.get("M1"), await leads.get("M2"), merge


async def test_a_merge_whose_other_lead_lost_a_race_still_merges_it_away(settings_for):
    out, survivor, other, merge = await _merge_racing_another_writer(settings_for, "M2")
    assert (other.merged_into, other.deleted, other.title) == ("M1", True, "Other (edited elsewhere)")
    assert survivor.description == "wants 3 routers"
    types = [(o.message.subject, o.message.type) for o in out if o.message.causationid == merge.id]
    assert types.count(("M1", "crm.lead.merged")) == 1 and ("M2", "crm.lead.deleted") in types


async def test_a_merge_whose_surviving_lead_lost_a_race_still_folds_the_other_in(settings_for):
    out, survivor, other, merge = await _merge_racing_another_writer(settings_for, "M1")
    assert (survivor.title, survivor.description) == ("Survivor (edited elsewhere)", "wants 3 routers")
    assert (other.merged_into, other.deleted) == ("M1", True)
    types = [(o.message.subject, o.message.type) for o in out if o.message.causationid == merge.id]
    assert types.count(("M1", "crm.lead.merged")) == 1 and types.count(("M2", "crm.lead.deleted")) == 1
