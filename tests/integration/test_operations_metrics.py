"""Operations on the real stack: /metrics counts exactly what was sent, and consumer lag rises and falls."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS, dlq_topic
from crmctl.cli import app as crm
from crmkit.messaging import Inbound
from crmkit.service import Service
from crmkit.settings import ServiceSettings
from services.leads.app import create_app
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import grant, payload
from tests.support import Collector, Producer, command, wait_until


async def scrape(service: Service) -> dict[tuple[str, frozenset], float]:
    """GET /metrics through the service's own HTTP app, as Prometheus reads it: {(sample, labels): value}."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://svc") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def conforms(document: dict, path: str, status: str, body) -> None:
    """Validate an answer against the schema the OpenAPI document gives for it (its $refs resolved in the document)."""
    from jsonschema import Draft202012Validator

    schema = document["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and wanted <= l)


async def test_metrics_count_creates_rejections_and_poison_records_exactly(settings_for, run_service, endpoints, isolation):
    service = await run_service(create_app(settings_for(LeadsSettings, "leads", lag_interval_s=0.2, tokens={"t-alice": "alice"})))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, \
            Collector(endpoints.kafka, isolation.prefix, LEADS_EVENTS, dlq_topic(LEADS_COMMANDS)) as seen:
        await grant(producer, "alice")
        await wait_until(lambda: seen.got.of_type("crm.pipeline.created"), what="default pipeline announced")
        creates = [command(payload("crm.lead.create", lead_id=f"M{i}", title=f"Lead {i}")) for i in range(5)]
        unlicensed = [command(payload("crm.lead.create", lead_id=f"X{i}", title="no"), actor="mallory") for i in range(3)]
        missing = [command(payload("crm.lead.move", lead_id="nowhere", stage_id="processing")) for _ in range(2)]
        await producer.send_many(LEADS_COMMANDS, creates + unlicensed + missing)
        for i in range(4):
            await producer.send_raw(LEADS_COMMANDS, b"{not json" + bytes([i]), key=b"poison")
        await wait_until(lambda: len(seen.got.of_type("crm.command.rejected")) >= 5 and len(seen.got.of_type("crm.lead.created")) >= 5
                         and len([r for r in seen.got.records if r.topic.endswith(".dlq")]) >= 4, what="every command answered")

        async def counted():
            samples = await scrape(service)
            return samples if value(samples, "crm_published_total", type="crm.command.rejected") >= 5 else None

        samples = await wait_until(counted, what="rejections published and counted")
        assert value(samples, "crm_commands_rejected_total", type="crm.lead.create", reason_code="not_licensed") == 3
        assert value(samples, "crm_commands_rejected_total", type="crm.lead.move", reason_code="not_found") == 2
        assert value(samples, "crm_commands_rejected_total") == 5
        assert value(samples, "crm_dead_lettered_total", topic=LEADS_COMMANDS, reason="invalid_message",
                     group=isolation.group("leads")) == 4
        assert value(samples, "crm_published_total", type="crm.lead.created") == 5
        assert value(samples, "crm_handled_total", type="crm.lead.create") == 8
        assert value(samples, "crm_handled_total", type="crm.lead.move") == 2
        assert value(samples, "crm_handler_seconds_total", type="crm.lead.create") > 0
        assert value(samples, "crm_consumed_total", topic=LEADS_COMMANDS) == 10  # poison is never "consumed"
        assert value(samples, "process_resident_memory_bytes") > 0
        assert value(samples, "process_open_fds") > 0

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://svc") as client:
            headers = {"Authorization": "Bearer t-alice"}
            ok = [await client.get(f"/leads/M{i}", headers=headers) for i in range(3)]
            missing_lead = await client.get("/leads/none-such", headers=headers)
            pipelines = await client.get("/pipelines", headers=headers)
            document = (await client.get("/openapi.json")).json()
        assert [r.status_code for r in ok] == [200, 200, 200] and missing_lead.status_code == 404
        # The answers follow the schemas the service publishes for them.
        conforms(document, "/leads/{lead_id}", "200", ok[0].json())
        conforms(document, "/leads/{lead_id}", "404", missing_lead.json())
        conforms(document, "/pipelines", "200", pipelines.json())
        samples = await scrape(service)
        assert value(samples, "crm_http_requests_total", route="/leads/{lead_id}", method="GET", status="200") == 3
        assert value(samples, "crm_http_requests_total", route="/leads/{lead_id}", method="GET", status="404") == 1
        assert value(samples, "crm_http_request_seconds_count", route="/leads/{lead_id}", method="GET") == 4

        async def caught_up():
            s = await scrape(service)
            lag = [v for (n, l), v in s.items() if n == "crm_consumer_lag" and ("topic", LEADS_COMMANDS) in l]
            return lag and sum(lag) == 0

        await wait_until(caught_up, what="the leads group's lag on its commands topic read and at 0")

        # `crm tail` decodes the topic through the contracts and filters by type and lead.
        tailed = await asyncio.to_thread(CliRunner().invoke, crm, [
            "tail", isolation.prefix + LEADS_EVENTS, "--from-beginning", "--type", "crm.lead.created", "--lead", "M3",
            "--count", "1", "--bootstrap", endpoints.kafka])
        assert tailed.exit_code == 0, tailed.output
        shown = [json.loads(line) for line in tailed.stdout.splitlines()]
        assert [(m["type"], m["subject"], m["data"]["title"]) for m in shown] == [("crm.lead.created", "M3", "Lead 3")]
        assert shown[0]["traceparent"]


def _recording_service(settings: ServiceSettings) -> tuple[Service, list[Inbound]]:
    seen: list[Inbound] = []
    service = Service(settings, name="recorder", description="records what it reads", publishes=())

    async def record(batch: list[Inbound]):
        seen.extend(batch)
        return []

    service.consume([LEADS_COMMANDS], record, title="recorder")
    return service, seen


async def test_consumer_lag_reaches_n_while_the_consumer_is_stopped_and_falls_to_zero(settings_for, run_service, endpoints, isolation):
    service, seen = _recording_service(settings_for(ServiceSettings, "lagging", lag_interval_s=0.2))
    await run_service(service)

    async def lag() -> float | None:
        samples = await scrape(service)
        rows = [v for (n, l), v in samples.items() if n == "crm_consumer_lag" and ("topic", LEADS_COMMANDS) in l]
        return sum(rows) if rows else None

    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        await producer.send(LEADS_COMMANDS, command(payload("crm.lead.create", lead_id="first", title="t")))
        await wait_until(lambda: len(seen) == 1, what="the first record read")
        await wait_until(lambda: _is(lag(), 0), what="lag 0 once the first record is committed")

        await service.broker.stop()  # the consumer stops; the service (and its lag monitor) runs on
        n = 37
        await producer.send_many(LEADS_COMMANDS, [command(payload("crm.lead.create", lead_id=f"L{i}", title="t")) for i in range(n)])
        await wait_until(lambda: _is(lag(), n), what=f"lag {n} while the consumer is stopped")
        assert len(seen) == 1
        # `crm lag` reads the same from the brokers.
        listed = await asyncio.to_thread(CliRunner().invoke, crm, [
            "lag", "--json", "--group", isolation.group("lagging"), "--bootstrap", endpoints.kafka])
        assert listed.exit_code == 0, listed.output
        rows = json.loads(listed.stdout)
        assert sum(r["lag"] for r in rows if r["topic"] == isolation.prefix + LEADS_COMMANDS) == n

        await service.broker.start()
        await wait_until(lambda: len(seen) == 1 + n, what="the stopped consumer catching up")
        await wait_until(lambda: _is(lag(), 0), what="lag back to 0")


async def _is(awaitable, expected: float) -> bool:
    return (await awaitable) == expected


async def test_each_other_service_counts_its_rejections_and_poison_records_exactly(settings_for, run_service, endpoints, isolation, tmp_path):
    from contracts.examples import EXAMPLES
    from contracts.topics import ACTIVITY_COMMANDS, IMPORTS_COMMANDS, QUALIFICATION_COMMANDS
    from services.activity.app import create_app as create_activity
    from services.activity.settings import ActivitySettings
    from services.importer.app import create_app as create_importer
    from services.importer.settings import ImporterSettings
    from services.qualification.app import create_app as create_qualification
    from services.qualification.settings import QualificationSettings

    cases = {  # service: (its commands topic, a command type, how many refused, how many poison records)
        "qualification": (QUALIFICATION_COMMANDS, "crm.lead.qualify", 3, 2),
        "activity": (ACTIVITY_COMMANDS, "crm.task.create", 4, 1),
        "importer": (IMPORTS_COMMANDS, "crm.import.start", 2, 3),
    }
    services = {
        "qualification": await run_service(create_qualification(settings_for(QualificationSettings, "qualification"))),
        "activity": await run_service(create_activity(settings_for(ActivitySettings, "activity", due_pass_interval_s=0))),
        "importer": await run_service(create_importer(settings_for(
            ImporterSettings, "importer", uploads_dir=str(tmp_path / "up"), file_roots=[str(tmp_path)]))),
    }
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        for name, (topic, kind, refused, poison) in cases.items():
            for i in range(refused):  # mallory holds no licence: each is refused not_licensed
                data = dict(EXAMPLES[kind]["data"])
                for field in ("task_id", "import_id"):
                    if field in data:
                        data[field] = f"{name}-{i}"
                await producer.send(topic, command(payload(kind, **data), actor="mallory"))
            for i in range(poison):
                await producer.send_raw(topic, b"\x00not a message" + bytes([i]), key=b"poison")
    for name, (topic, kind, refused, poison) in cases.items():
        async def counted(service=services[name], refused=refused, poison=poison, topic=topic):
            samples = await scrape(service)
            done = (value(samples, "crm_commands_rejected_total") >= refused
                    and value(samples, "crm_dead_lettered_total", topic=topic) >= poison)
            return samples if done else None

        samples = await wait_until(counted, timeout=60, what=f"{name}'s refusals and poison counted")
        assert value(samples, "crm_commands_rejected_total", type=kind) == refused, name
        assert value(samples, "crm_commands_rejected_total") == refused, name
        if name != "qualification":  # a qualify's refusal lists every reason; its first here is the unknown lead
            assert value(samples, "crm_commands_rejected_total", type=kind, reason_code="not_licensed") == refused, name
        assert value(samples, "crm_dead_lettered_total", topic=topic, reason="invalid_message") == poison, name
        assert value(samples, "crm_handled_total", type=kind) == refused, name
        refusal = "crm.qualification.rejected" if name == "qualification" else "crm.command.rejected"  # as the contract has it
        assert value(samples, "crm_published_total", type=refusal) == refused, name
