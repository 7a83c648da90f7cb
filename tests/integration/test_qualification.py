"""Qualification on real Kafka and FerretDB, beside the real leads service: deals, replays, a crash, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmctl.deals import watch_deals
from crmkit.principals import PrincipalRepository
from services.leads.app import create_app as create_leads
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from services.qualification.app import Overrides, create_app as create_qualification
from services.qualification.domain import deal_id_for
from services.qualification.repository import ClosingRepository, CompanyRepository, DealRepository, LeadProjection
from services.qualification.settings import QualificationSettings
from tests.integration.leads_helpers import grant, payload
from tests.support import Collector, Producer, command, wait_until

TOKENS = {"tok-alice": "alice"}


class SimulatedCrash(SystemExit):
    """Stands for the process dying: not an error the runtime handles, so nothing is committed."""


async def start_both(settings_for, run_service):
    leads = await run_service(create_leads(settings_for(LeadsSettings, "leads")))
    qualification = await run_service(
        create_qualification(settings_for(QualificationSettings, "qualification", tokens=TOKENS))
    )
    return leads, qualification


async def grant_all(producer: Producer, *services) -> None:
    """Alice is an administrator, bob a licensed manager; mallory holds nothing."""
    await grant(producer, "alice", admin=True)
    await grant(producer, "bob")

    async def granted() -> bool:
        for service in services:
            repo = PrincipalRepository(service.db, [])
            if not ((await repo.get("alice")).is_admin and (await repo.get("bob")).licensed):
                return False
        return True

    await wait_until(granted, what="licences and roles projected")


async def create_lead(producer: Producer, qualification, lead_id: str, **fields) -> None:
    fields.setdefault("title", f"Request {lead_id}")
    await producer.send(LEADS_COMMANDS, command(payload("crm.lead.create", lead_id=lead_id, **fields), actor="alice"))
    projection = LeadProjection(qualification.db)
    await wait_until(lambda: projection.get(lead_id), what=f"lead {lead_id} projected by qualification")


def qualify(lead_id: str, *, actor: str = "alice", id: str | None = None, **fields):
    fields.setdefault("qualification_type", "deal_and_company")
    fields.setdefault("new_company", {"name": "ООО Ромашка", "inn": "7701234567"})
    fields.setdefault("deal_pipeline_id", "default")
    return command(payload("crm.lead.qualify", lead_id=lead_id, **fields), actor=actor, id=id)


def distinct(events: Collector, type_name: str, lead_id: str) -> list:
    return list({m.id: m for m in events.got.of_type(type_name) if m.subject == lead_id}.values())


async def lead_status(leads, lead_id: str, status: str):
    lead = await LeadRepository(leads.db).get(lead_id)
    return lead if lead is not None and lead.status == status else None


RICH_LEAD = dict(
    title="Website request: 3 licences",
    contact={"name": "Иван Петров", "phone": "+79123456789", "email": "ivan@example.com"},
    products=[{"product_id": "p-crm", "quantity": 3, "options": {"edition": "pro"}}],
    source="website",
    utm_source="yandex",
    utm_medium="cpc",
    utm_campaign="spring-2025",
)


async def test_qualify_into_a_new_company_and_a_deal(settings_for, run_service, endpoints, isolation):
    leads, qualification = await start_both(settings_for, run_service)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS, LEADS_EVENTS
    ) as events:
        await grant_all(producer, leads, qualification)
        await create_lead(producer, qualification, "L1", responsible_id="bob", **RICH_LEAD)
        await producer.send(QUALIFICATION_COMMANDS, qualify("L1", industry="IT", segment="smb"))

        lead = await wait_until(lambda: lead_status(leads, "L1", "qualified"), what="lead qualified in the leads service")
        await wait_until(lambda: distinct(events, "crm.lead.qualified", "L1"), what="crm.lead.qualified collected")
        deal_id = deal_id_for("L1")
        assert lead.qualified_deal_id == deal_id
        company = distinct(events, "crm.company.created", "L1")
        deals = distinct(events, "crm.deal.created", "L1")
        qualified = distinct(events, "crm.lead.qualified", "L1")
        assert (len(company), len(deals), len(qualified)) == (1, 1, 1)
        assert lead.qualified_company_id == company[0].data.company_id == deals[0].data.company_id
        assert company[0].data.name == "ООО Ромашка" and company[0].data.industry == "IT"
        deal = deals[0].data
        assert deal.deal_id == deal_id and deal.title == RICH_LEAD["title"] and deal.responsible_id == "bob"
        assert (deal.contact.name, deal.contact.email) == ("Иван Петров", "ivan@example.com")
        assert [(p.product_id, p.quantity, p.options) for p in deal.products] == [("p-crm", 3, {"edition": "pro"})]
        assert (deal.source, deal.utm_source, deal.utm_medium, deal.utm_campaign) == (
            "website", "yandex", "cpc", "spring-2025"
        )
        # Published in order on one partition, keyed by the lead.
        records = [r for r in events.got.records if r.topic.endswith(QUALIFICATION_EVENTS) and r.key == b"L1"]
        assert len({r.partition for r in records}) == 1
        order = [m.type for m in events.got.messages if m.subject == "L1" and m.source == "crm/qualification"]
        assert order == ["crm.company.created", "crm.deal.created", "crm.lead.qualified"]

        # The lead is locked now.
        update = command(payload("crm.lead.update", lead_id="L1", title="Changed"), actor="alice")
        await producer.send(LEADS_COMMANDS, update)
        refused = await wait_until(
            lambda: [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == update.id],
            what="update of a qualified lead refused",
        )
        assert refused[0].data.reason_code.value == "invalid_state"

        transport = httpx.ASGITransport(app=qualification.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://qualification") as http:
            auth = {"Authorization": "Bearer tok-alice"}
            got = await http.get(f"/deals/{deal_id}", headers=auth)
            assert got.status_code == 200 and got.json()["utm_campaign"] == "spring-2025"
            listed = await http.get("/deals", params={"lead_id": "L1"}, headers=auth)
            assert [d["deal_id"] for d in listed.json()["items"]] == [deal_id]
            assert (await http.get("/deals/nope", headers=auth)).status_code == 404
            assert (await http.get(f"/deals/{deal_id}")).status_code == 401


async def test_the_example_consumer_prints_each_deal_once(settings_for, run_service, endpoints, isolation, capsys):
    leads, qualification = await start_both(settings_for, run_service)
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        await grant_all(producer, leads, qualification)
        await create_lead(producer, qualification, "L1", responsible_id="bob", **RICH_LEAD)
        once = qualify("L1")
        await producer.send(QUALIFICATION_COMMANDS, once)
        await producer.send(QUALIFICATION_COMMANDS, once)  # the deal is published twice, same id
        await wait_until(lambda: lead_status(leads, "L1", "qualified"), what="lead qualified")
    watcher = asyncio.create_task(watch_deals(endpoints.kafka_settings(), isolation.prefix, True, None))
    printed: list[str] = []

    def lines() -> list[str]:
        printed.extend(line for line in capsys.readouterr().out.splitlines() if line.startswith("deal "))
        return printed

    try:
        await wait_until(lines, what="the deal printed")
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
    lines()
    assert len(printed) == 1
    assert deal_id_for("L1") in printed[0] and "lead L1" in printed[0] and "responsible bob" in printed[0]


async def test_the_same_qualify_twice_makes_one_deal(settings_for, run_service, endpoints, isolation):
    leads, qualification = await start_both(settings_for, run_service)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS
    ) as events:
        await grant_all(producer, leads, qualification)
        await create_lead(producer, qualification, "L1", **RICH_LEAD)
        once = qualify("L1")
        await producer.send(QUALIFICATION_COMMANDS, once)
        await producer.send(QUALIFICATION_COMMANDS, once)
        # The redelivery republishes the very same events (same ids); consumers dedupe on the id.
        await wait_until(lambda: len(events.got.of_type("crm.lead.qualified")) == 2, what="both deliveries handled")
        await wait_until(lambda: lead_status(leads, "L1", "qualified"), what="lead qualified")
        for type_name in ("crm.company.created", "crm.deal.created", "crm.lead.qualified"):
            copies = [m for m in events.got.of_type(type_name)]
            assert len(copies) == 2 and len({m.to_json_bytes() for m in copies}) == 1, type_name
        assert await DealRepository(qualification.db).count(lead_id="L1") == 1
        assert await CompanyRepository(qualification.db).get(copies[0].data.company_id) is not None

        # Another qualify of the same lead (a new command) is refused: it is already qualified.
        again = qualify("L1", new_company={"name": "Other"})
        await producer.send(QUALIFICATION_COMMANDS, again)
        rejected = await wait_until(
            lambda: [m for m in events.got.of_type("crm.qualification.rejected") if m.data.command_id == again.id],
            what="second qualification refused",
        )
        assert [r.code.value for r in rejected[0].data.reasons] == ["invalid_state"]
        assert await DealRepository(qualification.db).count(lead_id="L1") == 1


async def test_a_crash_after_the_deal_resumes_on_redelivery(settings_for, run_service, endpoints, isolation):
    leads = await run_service(create_leads(settings_for(LeadsSettings, "leads")))
    settings = settings_for(QualificationSettings, "qualification")

    def crash_after_deal(state: str) -> None:
        if state == "deal_created":
            raise SimulatedCrash("killed between storing the deal and publishing crm.lead.qualified")

    first = await run_service(create_qualification(settings, overrides=Overrides(after_step=crash_after_deal)))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS
    ) as events:
        await grant_all(producer, leads, first)
        await create_lead(producer, first, "L1", **RICH_LEAD)
        await producer.send(QUALIFICATION_COMMANDS, qualify("L1"))
        closings = ClosingRepository(first.db)

        async def stuck_after_deal():
            stored = await closings.get("L1")
            deal_stored = await DealRepository(first.db).count(lead_id="L1") == 1
            return stored is not None and deal_stored and stored.closing.state != "done"

        await wait_until(stuck_after_deal, what="the first instance to die after storing the deal")
        assert await DealRepository(first.db).count(lead_id="L1") == 1
        assert not events.got.of_type("crm.lead.qualified")
        await first.stop()

        second = await run_service(create_qualification(settings))  # same database, same group
        await wait_until(lambda: lead_status(leads, "L1", "qualified"), what="lead qualified after the restart")
        assert await DealRepository(second.db).count(lead_id="L1") == 1
        assert (await closings_of(second, "L1")).closing.state == "done"
        for type_name in ("crm.company.created", "crm.deal.created", "crm.lead.qualified"):
            assert len({m.id for m in events.got.of_type(type_name)}) == 1, type_name


async def closings_of(service, lead_id: str):
    return await ClosingRepository(service.db).get(lead_id)


async def test_refusals_change_nothing_and_a_listed_reason_disqualifies(settings_for, run_service, endpoints, isolation):
    leads, qualification = await start_both(settings_for, run_service)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS
    ) as events:
        await grant_all(producer, leads, qualification)
        await create_lead(producer, qualification, "L2", **RICH_LEAD)
        before = await LeadRepository(leads.db).get("L2")

        unknown = qualify("nope")
        no_pipeline = qualify("L2", deal_pipeline_id=None)
        unlicensed = qualify("L2", actor="mallory")
        everything = qualify("L2", actor="mallory", deal_pipeline_id="retail", company_id="co-unknown")
        for cmd in (unknown, no_pipeline, unlicensed, everything):
            await producer.send(QUALIFICATION_COMMANDS, cmd)
        free_text = command(payload("crm.lead.disqualify", lead_id="L2", reason_id="they were rude"), actor="alice")
        await producer.send(QUALIFICATION_COMMANDS, free_text)

        def reasons_of(cmd):
            found = [m for m in events.got.of_type("crm.qualification.rejected") if m.data.command_id == cmd.id]
            return [(r.code.value, r.field) for r in found[0].data.reasons] if found else None

        await wait_until(lambda: all(reasons_of(c) for c in (unknown, no_pipeline, unlicensed, everything)), what="refusals")
        assert reasons_of(unknown) == [("not_found", "lead_id")]
        assert reasons_of(no_pipeline) == [("validation", "deal_pipeline_id")]
        assert reasons_of(unlicensed) == [("not_licensed", None)]
        # The licence comes first: an unlicensed actor learns nothing of the company or the pipelines.
        assert reasons_of(everything) == [("not_licensed", None)]
        refused = await wait_until(
            lambda: [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == free_text.id],
            what="free-text reason refused",
        )
        assert refused[0].data.reason_code.value == "validation" and refused[0].subject == "L2"
        for reason_id in ("no_contact", "lost_interest", "no_budget", "competitor", "duplicate"):
            assert reason_id in refused[0].data.message
        # Nothing changed anywhere.
        assert await DealRepository(qualification.db).count() == 0
        assert await ClosingRepository(qualification.db).get("L2") is None
        assert (await LeadRepository(leads.db).get("L2")).version == before.version
        assert not [m for m in events.got.messages if m.type in ("crm.company.created", "crm.deal.created", "crm.lead.qualified")]

        # A reason from the list closes the lead, with its text.
        good = command(payload("crm.lead.disqualify", lead_id="L2", reason_id="no_budget", comment="Frozen till Q3"), actor="bob")
        await producer.send(QUALIFICATION_COMMANDS, good)
        lead = await wait_until(lambda: lead_status(leads, "L2", "unqualified"), what="lead disqualified")
        assert (lead.disqualification_reason_id, lead.disqualification_reason, lead.disqualification_comment) == (
            "no_budget", "No budget", "Frozen till Q3"
        )
        assert len(events.got.of_type("crm.lead.disqualified")) == 1


async def test_administrators_edit_the_reason_list(settings_for, run_service, endpoints, isolation):
    leads, qualification = await start_both(settings_for, run_service)
    transport = httpx.ASGITransport(app=qualification.asgi())
    auth = {"Authorization": "Bearer tok-alice"}
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS
    ) as events, httpx.AsyncClient(transport=transport, base_url="http://qualification") as http:
        await grant_all(producer, leads, qualification)

        async def reason_ids() -> list[str] | None:
            got = await http.get("/pipelines/default/disqualification-reasons", headers=auth)
            return [r["reason_id"] for r in got.json()["items"]] if got.status_code == 200 else None

        await wait_until(reason_ids, what="default pipeline seen with its default reasons")
        assert await reason_ids() == ["no_contact", "lost_interest", "no_budget", "competitor", "duplicate"]
        assert (await http.get("/pipelines/nope/disqualification-reasons", headers=auth)).status_code == 404

        def add(actor: str):
            return command(
                payload("crm.disqualification-reason.add", pipeline_id="default", reason_id="too_small", text="Too small", text_ru="Слишком мал"),
                actor=actor,
                id=str(uuid.uuid4()),
            )

        by_manager, by_stranger, by_admin = add("bob"), add("mallory"), add("alice")
        remove = command(payload("crm.disqualification-reason.remove", pipeline_id="default", reason_id="duplicate"), actor="alice")
        for cmd in (by_manager, by_stranger, by_admin, by_admin, remove):
            await producer.send(QUALIFICATION_COMMANDS, cmd)

        def code_for(cmd):
            found = [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == cmd.id]
            return found[0].data.reason_code.value if found else None

        await wait_until(lambda: code_for(by_manager) and code_for(by_stranger), what="non-admins refused")
        assert (code_for(by_manager), code_for(by_stranger)) == ("forbidden", "not_licensed")
        await wait_until(
            lambda: reason_ids_are(reason_ids, ["no_contact", "lost_interest", "no_budget", "competitor", "too_small"]),
            what="reason added once and another removed",
        )
        assert code_for(by_admin) is None and code_for(remove) is None


async def reason_ids_are(reason_ids, expected: list[str]) -> bool:
    return await reason_ids() == expected


async def test_a_reopened_lead_is_qualified_again_into_a_new_deal(settings_for, run_service, endpoints, isolation):
    # Deal and company ids came from the lead id alone, and the finished first process blocked any
    # other: a lead an administrator reopened could never be qualified again.
    leads, qualification = await start_both(settings_for, run_service)
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, QUALIFICATION_EVENTS, LEADS_EVENTS
    ) as events:
        await grant_all(producer, leads, qualification)
        await create_lead(producer, qualification, "RQ1", responsible_id="bob", **RICH_LEAD)
        await producer.send(QUALIFICATION_COMMANDS, qualify("RQ1"))
        first = await wait_until(lambda: lead_status(leads, "RQ1", "qualified"), what="first qualification applied")
        await producer.send(LEADS_COMMANDS, command(payload("crm.lead.reopen", lead_id="RQ1"), actor="alice"))
        await wait_until(lambda: lead_status(leads, "RQ1", "in_progress"), what="lead reopened")
        projection = LeadProjection(qualification.db)
        await wait_until(lambda: _projected_open(projection, "RQ1"), what="the reopen seen by qualification")

        again = qualify("RQ1", new_company={"name": "ООО Лютик"})
        await producer.send(QUALIFICATION_COMMANDS, again)
        second = await wait_until(lambda: _requalified(leads, "RQ1", first.qualified_deal_id), what="second qualification applied")
        assert second.qualified_deal_id != first.qualified_deal_id
        assert second.qualified_company_id != first.qualified_company_id
        deals, _ = await DealRepository(qualification.db).list(lead_id="RQ1", limit=10)
        assert {d.deal_id for d in deals} == {first.qualified_deal_id, second.qualified_deal_id}  # the first deal's history kept
        assert len(distinct(events, "crm.lead.qualified", "RQ1")) == 2
        assert not [m for m in events.got.of_type("crm.qualification.rejected") if m.data.command_id == again.id]
        # The lead is closed again: a third qualification without a reopen is refused.
        third = qualify("RQ1")
        await producer.send(QUALIFICATION_COMMANDS, third)
        refused = await wait_until(lambda: [m for m in events.got.of_type("crm.qualification.rejected") if m.data.command_id == third.id],
                                   what="third qualification refused")
        assert refused[0].data.reasons[0].code.value == "invalid_state"


async def _projected_open(projection, lead_id):
    lead = await projection.get(lead_id)
    return lead is not None and lead.status == "in_progress" and lead.closed_version is not None


async def _requalified(leads, lead_id, first_deal_id):
    lead = await LeadRepository(leads.db).get(lead_id)
    return lead if lead is not None and lead.status == "qualified" and lead.qualified_deal_id != first_deal_id else None
