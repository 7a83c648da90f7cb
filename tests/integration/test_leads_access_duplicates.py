"""Duplicates and the licence gate on the real stack (issue 4)."""

from __future__ import annotations

from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS
from services.leads.repository import LeadRepository
from tests.integration.leads_helpers import directory_event, payload
from tests.integration.test_leads import expect_rejected, leads_stack, rejection_for, send_and_wait
from tests.support import command, wait_until


async def test_duplicates_found_by_normalized_phone_email_and_name(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="D1", title="First",
            contact={"name": "Иван Петров", "phone": "8 (912) 345-67-89", "email": "  Ivan.Petrov@Example.COM "}), actor="bob"))
        # Same phone in the +7 form, same e-mail in another case: a strong match, found on create.
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="D2", title="Second",
            contact={"name": "Петров Иван", "phone": "+79123456789", "email": "ivan.petrov@example.com"}), actor="bob"))
        # Nothing in common: no match.
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="D3", title="Third", contact={"name": "Someone Else", "phone": "+79990001122"}), actor="bob"))
        found = await wait_until(lambda: [m for m in events.got.of_type("crm.lead.duplicates-found") if m.subject == "D2"], what="duplicates-found")
        match = found[0].data.matches[0]
        assert match.lead_id == "D1"
        assert set(match.matched_on) == {"email", "phone", "name"} and match.score == 1.0
        assert [m.lead_id for m in (await repo.get("D2")).duplicates] == ["D1"]
        # Found on creation, the duplicates are part of it: one version, the card published once with them.
        d2 = [m for m in events.got.messages if m.subject == "D2"]
        assert [m.type for m in d2] == ["crm.lead.created", "crm.lead.duplicates-found"]
        assert d2[0].data.version == 1 and [m.lead_id for m in d2[0].data.duplicates] == ["D1"]
        assert d2[1].data.version == 1 and (await repo.get("D2")).version == 1
        assert (await repo.get("D3")).duplicates == []
        assert not [m for m in events.got.of_type("crm.lead.duplicates-found") if m.subject in ("D1", "D3")]
        # Link it as a duplicate, then dismiss a match on the other lead.
        await send_and_wait(producer, events, command(payload("crm.lead.mark-duplicate", lead_id="D2", original_lead_id="D1"), actor="bob"))
        assert (await repo.get("D2")).duplicate_of == "D1"
        # Merge field by field: the survivor takes the other's title; the other is merged away.
        await send_and_wait(producer, events, command(payload("crm.lead.merge", lead_id="D1", other_lead_id="D2", fields={"title": "other"}), actor="bob"))
        survivor, merged = await repo.get("D1"), await repo.get("D2")
        assert survivor.title == "Second"
        assert merged.merged_into == "D1" and merged.deleted
        assert [m for m in events.got.of_type("crm.lead.merged") if m.subject == "D1"][0].data.merged_lead_id == "D2"


async def test_licence_gate(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        # Never granted.
        await expect_rejected(producer, events, command(payload("crm.lead.create", lead_id="N1", title="x"), actor="nobody"), "not_licensed")
        # Granted, works; revoked, refused.
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id="carol", licence="crm"), key="carol")
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="N2", title="by carol"), actor="carol"))
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-revoked", user_id="carol", licence="crm"), key="carol")
        principals = service.db["principals"]
        await wait_until(lambda: _revoked(principals, "carol"), what="the revocation to be recorded")
        await expect_rejected(producer, events, command(payload("crm.lead.update", lead_id="N2", title="after revoke"), actor="carol"), "not_licensed")
        # An administrator-only action by a licensed non-admin.
        await expect_rejected(producer, events, command(payload("crm.lead.reopen", lead_id="N2"), actor="bob"), "forbidden")
        await expect_rejected(producer, events, command(payload("crm.pipeline.create", name="Mine"), actor="bob"), "forbidden")
        assert await repo.get("N1") is None
        assert (await repo.get("N2")).title == "by carol"
        assert await service.db["pipelines"].count_documents({}) == 1


async def _revoked(principals, user_id: str) -> bool:
    doc = await principals.find_one({"_id": user_id})
    return doc is not None and "crm" not in (doc.get("licences") or [])


async def test_a_lead_too_large_to_publish_is_refused_and_the_rest_goes_on(settings_for, run_service, endpoints, isolation):
    """A valid create whose card would not fit a Kafka record is refused with a reason; the partition is not stuck."""
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        huge = command(payload("crm.lead.create", lead_id="BIG", title="Huge", description="x" * 2_500_000), actor="bob")
        await producer.send(LEADS_COMMANDS, huge, key="BIG")
        after = command(payload("crm.lead.create", lead_id="BIG", title="Small now"), actor="bob")
        await send_and_wait(producer, events, after)
        refused = rejection_for(events, huge)
        assert refused and refused[0].data.reason_code == "validation"
        assert "description" in refused[0].data.message or any(e.field == "description" for e in refused[0].data.errors or [])
        stored = await repo.get("BIG")
        assert stored is not None and stored.title == "Small now" and stored.version == 1


async def test_a_number_from_a_form_and_the_same_from_an_import_are_duplicates(settings_for, run_service, endpoints, isolation):
    # A web form sends the number as typed; the importer sends it normalised (+7...). One rule keys both:
    # before, '495 123 45 67' was keyed 4951234567 and '+74951234567' 74951234567, and no match was found.
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        repo = LeadRepository(service.db)
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="P1", title="From the form", contact={"name": "Анна", "phone": "495 123 45 67"}), actor="bob"))
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="P2", title="From the import", contact={"name": "Ольга", "phone": "+74951234567"},
            import_id="imp-1", import_row=2), actor="bob"))
        found = await wait_until(lambda: [m for m in events.got.of_type("crm.lead.duplicates-found") if m.subject == "P2"],
                                 what="the form's lead found as a duplicate of the imported one")
        assert [(m.lead_id, m.matched_on) for m in found[0].data.matches] == [("P1", ["phone"])]
        assert [m.lead_id for m in (await repo.get("P2")).duplicates] == ["P1"]
