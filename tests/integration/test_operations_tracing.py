"""One trace from an upload to a deal: every span of every service and every published message carry it."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.topics import ACTIVITY_EVENTS, IMPORTS_EVENTS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS
from crmkit.principals import PrincipalRepository
from crmkit import tracing
from crmkit.tracing import trace_id_of
from services.activity.app import create_app as create_activity
from services.activity.settings import ActivitySettings
from services.importer.app import create_app as create_importer
from services.importer.settings import ImporterSettings
from services.leads.app import create_app as create_leads
from services.leads.settings import LeadsSettings
from services.qualification.app import create_app as create_qualification
from services.qualification.repository import LeadProjection
from services.qualification.settings import QualificationSettings
from tests.integration.leads_helpers import grant, payload
from tests.support import Collector, Producer, command, wait_until

TOKENS = {"tok-alice": "alice"}


def install_exporter() -> InMemorySpanExporter:
    """The services record their spans through an SDK tracer provider with an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    return exporter


async def test_one_trace_from_an_upload_through_every_service_to_the_deal(settings_for, run_service, endpoints, isolation, tmp_path):
    exporter = install_exporter()
    try:
        leads = await run_service(create_leads(settings_for(LeadsSettings, "leads", duplicate_check=False)))
        importer = await run_service(create_importer(settings_for(
            ImporterSettings, "importer", uploads_dir=str(tmp_path / "uploads"), poll_interval_s=0.2, tokens=TOKENS)))
        await run_service(create_activity(settings_for(ActivitySettings, "activity", due_pass_interval_s=0)))
        qualification = await run_service(create_qualification(settings_for(QualificationSettings, "qualification")))
        topics = (LEADS_COMMANDS, LEADS_EVENTS, IMPORTS_EVENTS, ACTIVITY_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS)
        async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(endpoints.kafka, isolation.prefix, *topics) as bus:
            await grant(producer, "alice", admin=True)
            for service in (leads, importer, qualification):
                principals = PrincipalRepository(service.db, [])
                await wait_until(lambda p=principals: _licensed(p), what=f"alice licensed at {service.name}")
            await wait_until(lambda: bus.got.of_type("crm.pipeline.created"), what="default pipeline")

            body = "Название,Имя,Телефон\r\nTraced request,Анна Смирнова,+79161112233\r\n"
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=importer.asgi()), base_url="http://importer") as http:
                response = await http.post("/imports", headers={"Authorization": "Bearer tok-alice"}, files={"file": ("traced.csv", body)})
            assert response.status_code == 202, response.text
            import_id = response.json()["import_id"]
            upload = [s for s in exporter.get_finished_spans() if s.name == "POST /imports"]
            assert len(upload) == 1
            trace_id = f"{upload[0].context.trace_id:032x}"

            created = await wait_until(lambda: [m for m in bus.got.of_type("crm.lead.created") if m.data.import_id == import_id],
                                       what="the imported lead created")
            lead_id = created[0].data.lead_id
            await wait_until(lambda: LeadProjection(qualification.db).get(lead_id), what="the lead known to qualification")
            await wait_until(lambda: _spans_of(exporter, "activity", lead_id), what="activity handling the lead")
            # The sales manager qualifies it from the card, which carries on the lead's trace.
            qualify = command(payload("crm.lead.qualify", lead_id=lead_id, qualification_type="deal_and_company",
                                      new_company={"name": "ООО Трасса"}, deal_pipeline_id="default"), actor="alice")
            qualify.traceparent = created[0].traceparent
            await producer.send(QUALIFICATION_COMMANDS, qualify)
            deal = await wait_until(lambda: [m for m in bus.got.of_type("crm.deal.created") if m.data.lead_id == lead_id], what="the deal")
            await wait_until(lambda: [m for m in bus.got.of_type("crm.lead.updated") if m.subject == lead_id and m.data.status == "qualified"],
                             what="the lead card qualified")
            await wait_until(lambda: _spans_of(exporter, "importer", lead_id), what="the importer counting the row's outcome")
            await wait_until(lambda: [m for m in bus.got.of_type("crm.import.completed") if m.subject == import_id],
                             timeout=60, what="the import completed")

        published = [m for m in bus.got.messages if m.subject in (lead_id, import_id) or getattr(m.data, "lead_id", None) == lead_id]
        kinds = {m.type for m in published}
        assert {"crm.import.started", "crm.lead.create", "crm.lead.created", "crm.lead.qualify", "crm.deal.created",
                "crm.lead.qualified", "crm.lead.updated", "crm.import.completed"} <= kinds, kinds
        assert {trace_id_of(m.traceparent) for m in published} == {trace_id}, [(m.type, m.traceparent) for m in published]
        assert deal[0].traceparent is not None

        about_the_lead = [s for s in exporter.get_finished_spans() if s.attributes.get("crm.lead_id") == lead_id]
        services = {s.attributes["crm.service"] for s in about_the_lead}
        assert services == {"leads", "importer", "activity", "qualification"}, services
        assert {f"{s.context.trace_id:032x}" for s in about_the_lead} == {trace_id}
    finally:
        tracing.use(None)  # later tests run without recording, as a service without an exporter does


def _spans_of(exporter: InMemorySpanExporter, service: str, lead_id: str) -> list:
    return [s for s in exporter.get_finished_spans()
            if s.attributes.get("crm.service") == service and s.attributes.get("crm.lead_id") == lead_id]


async def _licensed(principals: PrincipalRepository) -> bool:
    return (await principals.get("alice")).licensed
